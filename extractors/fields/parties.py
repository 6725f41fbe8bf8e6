"""Who issued the invoice and who is billed: names and the address lines under them.

The customer hangs off a label ("Bill to", "Rechnungsempfänger", "Factuuradres"). The vendor is
named by a label ("Sold by") when there is one, else it is the most prominent name at the top of the
first page: large or bold type, a legal-form suffix (GmbH, B.V., Ltd), address lines below it, or the
first part of a DIN 5008 sender line ("QualityHosting AG - Uferweg 40-42 - D-63571 Gelnhausen").
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from docroute.schemas.values import Word

from .labels import OTHER, LabelHit
from .lines import Phrase, Row, fold, word_confidence
from .regions import below, right_of

TITLE_WORDS = frozenset({
    "invoice", "tax", "receipt", "payment", "bill", "copy", "original", "duplicate", "credit", "note", "statement",
    "rechnung", "quittung", "gutschrift", "kopie", "facture", "avoir", "recu", "factuur", "creditnota",
    "bon", "pro", "forma", "proforma", "retail", "invoices/bill", "invoices", "summary",
})
LEGAL_FORMS = frozenset({
    "inc", "inc.", "llc", "ltd", "ltd.", "limited", "corp", "corp.", "co", "co.", "plc", "gmbh", "ag", "kg", "ug", "e.k.",
    "bv", "b.v.", "nv", "n.v.", "vof", "sa", "s.a.", "sas", "sarl", "sàrl", "eurl", "sprl", "srl", "spa", "s.p.a.",
    "oy", "ab", "as", "a/s", "aps", "pvt", "pvt.", "llp", "lp", "gbr", "ohg", "se", "s.l.", "sl",
})
MAX_ADDRESS_LINES = 5


@dataclass(frozen=True)
class Party:
    name: str
    name_words: tuple[Word, ...]
    address: str | None
    address_words: tuple[Word, ...]
    quality: float  # how the name was found: 1.0 for a clear label, less for heuristics
    page_number: int
    rows: frozenset[tuple[int, int]]  # rows the block occupies


def _clean_name(text: str) -> str:
    return text.strip().strip(",;:").strip()


def _is_contact(phrase: Phrase) -> bool:
    t = phrase.text.casefold()
    return "@" in t or "www." in t or "http" in t


def _starts_with_label(row: Row, p_idx: int, hits_at) -> bool:
    return any(h.phrase == p_idx and h.start == 0 for h in hits_at.get((row.page_number, row.index), ()))


def _address_below(rows: Sequence[Row], anchor: Phrase, start_row: int, hits_at,
                   stop_rows: frozenset[tuple[int, int]] = frozenset()) -> list[Phrase]:
    """Phrases under ``anchor`` aligned with it (left or right edge), one per row, without wide gaps."""
    out: list[Phrase] = []
    last = anchor
    for row in rows[start_row + 1:]:
        if row.bbox.y0 - last.bbox.y1 > 1.2 * max(last.height, 1.0):
            if row.bbox.y0 > last.bbox.y1:
                break
        if (row.page_number, row.index) in stop_rows:
            break
        match = None
        for p_idx, phrase in enumerate(row.phrases):
            b = phrase.bbox
            tol = max(4.0, 0.6 * anchor.height)
            if abs(b.x0 - anchor.bbox.x0) <= tol or abs(b.x1 - anchor.bbox.x1) <= tol:
                match = (p_idx, phrase)
                break
        if match is None:
            if row.bbox.y0 - last.bbox.y1 > 0.5 * max(last.height, 1.0):
                break
            continue
        p_idx, phrase = match
        if _starts_with_label(row, p_idx, hits_at) or _is_contact(phrase):
            break
        if sum(c.isalpha() or c.isdigit() for c in phrase.text) < 3:
            break
        out.append(phrase)
        last = phrase
        if len(out) >= MAX_ADDRESS_LINES:
            break
    return out


def _strip_leading_label(phrase: Phrase, row: Row, p_idx: int, hits_at) -> tuple[Word, ...]:
    words = phrase.words
    for h in hits_at.get((row.page_number, row.index), ()):
        if h.phrase == p_idx and h.start == 0 and h.field == OTHER:  # "ATTN: Jane Doe"
            words = words[h.end:]
    return tuple(words)


def labeled_block(rows_at: dict[int, Sequence[Row]], hits: Sequence[LabelHit], hits_at, field: str
                  ) -> Party | None:
    """The name and address under (or beside) the best label of ``field`` ("Bill to", "Ship to")."""
    cands = sorted((h for h in hits if h.field == field and h.start == 0),
                   key=lambda h: (-h.score, h.page_number, h.row.index))
    for hit in cands:
        rows = rows_at[hit.page_number]
        row_hits = hits_at.get((hit.page_number, hit.row.index), ())
        region = right_of(hit, row_hits)
        if region and sum(c.isalpha() for w in region.words for c in w.text) >= 2:
            name_words = region.words
            start = hit.row.index
            quality = hit.score
        else:
            region = below(hit, rows, hits_at, max_rows=1)
            if region is None:
                continue
            row = next(r for r in rows if region.words[0] in r.words)
            p_idx = next(i for i, p in enumerate(row.phrases) if region.words[0] in p.words)
            name_words = _strip_leading_label(row.phrases[p_idx], row, p_idx, hits_at)
            start = row.index
            quality = hit.score * 0.95
        name = _clean_name(" ".join(w.text for w in name_words))
        if not _plausible_name(name, len(name_words)):
            continue
        anchor = Phrase(tuple(name_words), hit.page_number)
        lines = _address_below(rows, anchor, start, hits_at)
        addr_words = tuple(w for p in lines for w in p.words)
        address = ", ".join(_clean_name(p.text) for p in lines) or None
        occupied = {(hit.page_number, hit.row.index), (hit.page_number, start)}
        occupied |= {(hit.page_number, r.index) for r in rows for p in lines if p.words[0] in r.words}
        return Party(name, tuple(name_words), address, addr_words, quality, hit.page_number, frozenset(occupied))
    return None


def _plausible_name(name: str, n_words: int) -> bool:
    letters = sum(c.isalpha() for c in name)
    digits = sum(c.isdigit() for c in name)
    sentence = name.endswith((".", "!", "?")) and n_words > 4
    return letters >= 2 and digits <= letters and n_words <= 8 and not sentence


def _size(words: Sequence[Word]) -> float:
    """Font size; for OCR words (glyph heights vary with the letters) the median of the phrase."""
    sizes = [w.size for w in words if w.size]
    if not sizes:
        sizes = [w.bbox.height * 0.8 for w in words]
    return statistics.median(sizes) if any(w.source == "ocr" for w in words) else max(sizes)


def _ocr_noise(words: Sequence[Word]) -> bool:
    """Logos and rules read by OCR: low confidence, or stray symbols around a few letters."""
    if word_confidence(words) < 0.6:
        return True
    if max(sum(c.isalpha() for c in w.text) for w in words) < 3:
        return True  # "N VV": no real word in it
    text = "".join(w.text for w in words)
    odd = sum(not (c.isalnum() or c in "&.,'-()/+") for c in text)
    return odd > 0 and (len(words) == 1 or odd * 4 >= len(text) - odd)


def _without_titles(words: Sequence[Word]) -> tuple[Word, ...]:
    words = list(words)
    while words and fold(words[-1].text).strip(".:,") in TITLE_WORDS:
        words.pop()
    while words and fold(words[0].text).strip(".:,") in TITLE_WORDS:
        words.pop(0)
    return tuple(words)


def _sender_parts(phrase: Phrase) -> list[tuple[Word, ...]] | None:
    """"Name AG - Street 1 - 12345 City" -> [name words, street words, city words]."""
    parts: list[list[Word]] = [[]]
    for w in phrase.words:
        if w.text in {"-", "–", "|", "·", "•"}:
            parts.append([])
        else:
            parts[-1].append(w)
    parts = [p for p in parts if p]
    if len(parts) < 3 or not any(any(c.isdigit() for w in p for c in w.text) for p in parts[1:]):
        return None
    return [tuple(p) for p in parts]


def vendor(rows_at: dict[int, Sequence[Row]], first_page: int, hits: Sequence[LabelHit], hits_at,
           page_height: float, exclude_rows: frozenset[tuple[int, int]], exclude_words: frozenset[int]
           ) -> Party | None:
    labeled = _labeled_vendor(hits, hits_at)
    if labeled:
        return labeled
    rows = rows_at.get(first_page) or ()
    if not rows:
        return None
    limit = 0.45 * page_height
    sizes = [_size(p.words) for r in rows if r.bbox.y0 < limit for p in r.phrases]
    max_size = max(sizes, default=1.0) or 1.0
    body = statistics.median(sizes) if sizes else 1.0
    best: tuple[float, Party] | None = None
    for row in rows:
        if row.bbox.y0 >= limit:
            break
        if (row.page_number, row.index) in exclude_rows:
            continue
        row_hits = hits_at.get((row.page_number, row.index), ())
        if len({h.phrase for h in row_hits if h.start == 0}) >= 2:
            continue  # a row of field captions ("Check In  Check Out  Rooms"), not a letterhead
        for p_idx, phrase in enumerate(row.phrases):
            if _starts_with_label(row, p_idx, hits_at) and not _title_label(row, p_idx, hits_at):
                continue
            if any(id(w) in exclude_words for w in phrase.words) or _is_contact(phrase):
                continue
            sender = _sender_parts(phrase)
            words = sender[0] if sender else _without_titles(phrase.words)
            if not words or len(words) > 7:
                continue
            text = _clean_name(" ".join(w.text for w in words))
            letters = sum(c.isalpha() for c in text)
            digits = sum(c.isdigit() for c in text)
            if letters < 2 or digits > 0.3 * letters:
                continue
            legal = fold(words[-1].text).strip(",") in LEGAL_FORMS
            size = _size(words)
            bold = any(w.bold for w in words)
            if _ocr_noise(words):
                continue
            if len(words) == 1 and (letters < 3 or words[0].confidence < 0.8 or not text[0].isalnum() or not (
                    legal or bold or size >= 1.15 * body or text.isupper())):
                continue  # a lone ordinary word ("Rooms") is a heading or a value, not a company
            lines = ([Phrase(p, row.page_number) for p in sender[1:]] if sender
                     else _address_below(rows, Phrase(tuple(words), row.page_number), row.index, hits_at, exclude_rows))
            has_address = any(any(c.isdigit() for c in p.text) for p in lines)
            sentence = text.endswith((".", "!", "?")) and len(words) >= 3 and not legal
            score = (0.45 * size / max_size + 0.3 * (1 - row.bbox.y0 / limit)
                     + 0.15 * bold + 0.25 * legal + 0.15 * has_address + 0.3 * bool(sender)
                     - 0.4 * sentence)
            if best is None or score > best[0]:
                addr_words = tuple(w for p in lines for w in p.words) if has_address else ()
                address = ", ".join(_clean_name(p.text) for p in lines) if has_address else None
                quality = min(0.9, 0.45 + 0.4 * score)
                best = (score, Party(text, tuple(words), address, addr_words, quality, first_page, frozenset()))
    return best[1] if best else None


def _title_label(row: Row, p_idx: int, hits_at) -> bool:
    """A phrase whose leading "label" is only a document title ("Amazon Web Services Invoice" is not one)."""
    phrase = row.phrases[p_idx]
    return all(fold(w.text).strip(".:,#") in TITLE_WORDS for w in phrase.words)


def _labeled_vendor(hits, hits_at) -> Party | None:
    for hit in sorted((h for h in hits if h.field == "vendor" and h.weight >= 0.9), key=lambda h: -h.score):
        region = right_of(hit, hits_at.get((hit.page_number, hit.row.index), ()))
        words = region.words if region else ()
        text = _clean_name(" ".join(w.text for w in words))
        if text and sum(c.isalpha() for c in text) >= 2 and not text.startswith("("):
            return Party(text, tuple(words), None, (), hit.score * 0.9, hit.page_number, frozenset())
    return None
