"""Receipt fields: merchant, its address, the date and the total payable, read off a till receipt.

A till receipt is one long column: the merchant (its legal entity: a line with a company form such as
SDN BHD, GmbH or Ltd wins over a bare brand), the address lines below it until a phone, tax-id or date
line, then items, then the totals block. The total is the amount payable as opposed to what else the
block prints (subtotal, tax, rounding, cash, change): candidates come from the payable labels, and
``cash - change`` confirms one when both are printed. Dates are read in the common printed forms, day
first, with the usual OCR confusions repaired (O/0, l/1, S/5) and an implausible year (2078 for 2018)
repaired or refused. Labels live in ``receipt_labels.toml``.

Used for documents classified ``receipt`` (extractors/doctype.py): its fields take the place of the
invoice extractor's vendor, address, date and total where it finds them.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path

from docroute.extractors.doctype import fold
from docroute.extractors.lines import visual_lines
from docroute.schemas import BBox, FieldValue, ParsedPage, Word

LABELS = Path(__file__).with_name("receipt_labels.toml")
HEAD_LINES = 10  # the merchant is among the first lines
MIN_NAME_CONFIDENCE = 0.5  # OCR's mean word confidence under which a header line is noise (a logo)
ADDRESS_LINES = 5
_AMOUNT = re.compile(r"(?<![\d.,])-?(?:RM|EUR|\$|€)?\s?(\d{1,3}(?:[.,]\d{3})*|\d+)([.,])\s?(\d{2})(?![\d])")
_DIGITISH = str.maketrans({"O": "0", "o": "0", "D": "0", "l": "1", "I": "1", "|": "1", "S": "5", "B": "8", "Z": "2"})
_MONTHS = {m: i for i, ms in enumerate((
    ("jan", "januar", "janvier", "janv"), ("feb", "februar", "fev", "fevr"), ("mar", "marz", "mrz", "mars"),
    ("apr", "april", "avr"), ("may", "mai"), ("jun", "juni", "juin"), ("jul", "juli", "juil"),
    ("aug", "august", "aout"), ("sep", "sept", "september"), ("oct", "okt", "oktober"), ("nov", "november"),
    ("dec", "dez", "dezember")), start=1) for m in ms}
_NUMERIC_DATE = re.compile(r"(?<![\dA-Za-z])([0-9OolIS]{1,4})\s?[/.\-]\s?([0-9OolIS]{1,2})\s?[/.\-]\s?([0-9OolIS]{2,4})(?![\d])")
# a registration number in brackets, e.g. (867388-U), (Co. No. 113825-W), {S19537-X): not part of a name
_REG_NUMBER = re.compile(r"\s*[({]\s*(?:co\.?\s*no\.?\s*)?[^)}]*\d{4,}[^)}]*[)}]?\s*$", re.I)
_TIME = re.compile(r"\b\d{1,2}:\d{2}(?::\d{2})?\b")
_NAMED_DATE = re.compile(r"(?<![\d])(\d{1,2})[\s.\-]*([A-Za-z]{3,9})[\s.,\-]*(\d{2,4})(?![\d])")


@cache
def labels() -> dict[str, dict[str, tuple[str, ...]]]:
    data = tomllib.loads(LABELS.read_text(encoding="utf-8"))
    return {k: {kk: tuple(fold(v).strip() for v in vs) for kk, vs in d.items()} for k, d in data.items()}


@dataclass(frozen=True)
class Line:
    words: tuple[Word, ...]

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)

    @property
    def folded(self) -> str:
        return fold(self.text)

    @property
    def bbox(self) -> BBox:
        return BBox.enclosing([w.bbox for w in self.words])

    @property
    def confidence(self) -> float:
        return sum(w.confidence for w in self.words) / len(self.words)

    @property
    def wordlike(self) -> bool:
        """Read as words, not as noise: most of its letters in words of three letters or more."""
        long = sum(len(w.text) for w in self.words if sum(c.isalpha() for c in w.text) >= 3)
        return long >= 0.6 * sum(len(w.text) for w in self.words) and self.confidence >= MIN_NAME_CONFIDENCE


def _has(folded: str, phrases: Sequence[str]) -> str | None:
    return next((p for p in phrases if f" {p} " in folded), None)


def _starts(folded: str, phrases: Sequence[str]) -> bool:
    return any(folded.startswith(f" {p} ") for p in phrases)


def _lines(page: ParsedPage) -> list[Line]:
    return [Line(tuple(sorted(ws, key=lambda w: w.bbox.x0))) for ws in visual_lines(page.words, grow=True)]


def _field(name: str, value, conf: float, page: ParsedPage, lines: Sequence[Line]) -> FieldValue:
    return FieldValue(name=name, value=value, confidence=round(conf, 3), source="ocr" if not page.has_text_layer
                      else "layout", page_number=page.page_number, bbox=BBox.enclosing([ln.bbox for ln in lines]),
                      raw_text=" | ".join(ln.text for ln in lines))


def _letters(text: str) -> int:
    return sum(c.isalpha() for c in text)


def _vendor(lines: Sequence[Line], page: ParsedPage) -> tuple[FieldValue | None, int]:
    """The merchant line and its index (the address follows it)."""
    lab = labels()
    head = []
    for i, ln in enumerate(lines[:HEAD_LINES]):
        f = ln.folded
        if _starts(f, lab["address"]["stops"]) and i > 0:
            break
        if ln.wordlike and _letters(ln.text) >= 0.5 * len(ln.text.replace(" ", "")) \
                and not _has(f, lab["vendor"]["titles"]):
            head.append(i)
    if not head:
        return None, -1
    legal = [i for i in head if _has(lines[i].folded, lab["vendor"]["company_forms"])]
    i = legal[0] if legal else head[0]
    used = [lines[i]]
    if legal and i - 1 in head and _letters(_without_forms(lines[i].folded)) < 6:
        used.insert(0, lines[i - 1])  # "SINNATHAMBY HOLDINGS" above "SDN. BHD": one name on two lines
    name = _REG_NUMBER.sub("", " ".join(ln.text for ln in used)).strip(" .,:;")
    return _field("vendor_name", name, 0.7 if legal else 0.5, page, used), i


def _without_forms(folded: str) -> str:
    for form in sorted(labels()["vendor"]["company_forms"], key=len, reverse=True):
        folded = folded.replace(f" {form} ", " ")
    return re.sub(r"\b[a-z]\b", " ", folded)  # (M), single letters


def _address(lines: Sequence[Line], start: int, page: ParsedPage) -> FieldValue | None:
    lab = labels()
    block = []
    for ln in lines[start + 1:start + 1 + ADDRESS_LINES + 2]:
        f = ln.folded
        if _starts(f, lab["address"]["stops"]) or _has(f, lab["address"]["anywhere"]) \
                or _has(f, lab["total"]["payable"]):
            break
        text = _REG_NUMBER.sub("", re.sub(r"^\s*[({][^)}]*\d{4,}[^)}]*[)}]\s*", "", ln.text)).strip()
        compact = text.replace(" ", "")
        if not compact or (re.fullmatch(r"[\dA-Z][\dA-Z\-]{3,}\.?", compact) and _letters(compact) <= 2):
            continue  # a registration number such as 867388-U
        if _NUMERIC_DATE.search(text) or _NAMED_DATE.search(text):
            if block:
                break
            continue  # the date printed between the merchant and its address
        block.append(ln)
        if len(block) == ADDRESS_LINES:
            break
    if not block:
        return None
    text = " ".join(_REG_NUMBER.sub("", re.sub(r"^\s*[({][^)}]*\d{4,}[^)}]*[)}]\s*", "", ln.text)) for ln in block)
    return _field("vendor_address", text.strip(), 0.5, page, block)


def _digits(text: str) -> str:
    return text.translate(_DIGITISH)


def _plausible_year(year: int) -> tuple[int, bool] | None:
    """The year, or a repair of one OCR confusion (2078 -> 2018), and whether it was repaired."""
    this = date.today().year
    if 2000 <= year <= this + 1:
        return year, False
    text = str(year)
    for wrong, right in (("7", "1"), ("8", "0"), ("9", "0"), ("3", "1"), ("6", "0")):
        for k in range(len(text)):
            if text[k] == wrong:
                fixed = int(text[:k] + right + text[k + 1:])
                if 2000 <= fixed <= this + 1:
                    return fixed, True
    return None


def _date_from(text: str) -> tuple[date, bool] | None:
    for m in _NUMERIC_DATE.finditer(text):
        a, b, c = (_digits(g) for g in m.groups())
        if not (a.isdigit() and b.isdigit() and c.isdigit()):
            continue
        if len(a) == 4:
            y, mo, d = int(a), int(b), int(c)
        else:
            d, mo, y = int(a), int(b), int(c)
            if mo > 12 >= d:
                d, mo = mo, d  # month first, as printed in the US
        y = y + 2000 if y < 100 else y
        fixed = _plausible_year(y)
        if fixed and 1 <= mo <= 12 and 1 <= d <= 31:
            try:
                return date(fixed[0], mo, d), fixed[1]
            except ValueError:
                continue
    for m in _NAMED_DATE.finditer(text):
        month = _MONTHS.get(fold(m.group(2)).strip()[:5]) or _MONTHS.get(fold(m.group(2)).strip()[:3])
        if month is None:
            continue
        y = int(m.group(3))
        fixed = _plausible_year(y + 2000 if y < 100 else y)
        if fixed:
            try:
                return date(fixed[0], month, int(m.group(1))), fixed[1]
            except ValueError:
                continue
    return None


def _date(lines: Sequence[Line], page: ParsedPage) -> FieldValue | None:
    found = [(i, hit) for i, ln in enumerate(lines) if (hit := _date_from(ln.text))]
    if not found:
        return None

    def rank(item):
        i, (_, repaired) = item
        labelled = bool(_has(lines[i].folded, labels()["date"]["labels"]))
        timed = bool(_TIME.search(lines[i].text))  # a till prints the date with the time
        return (-(2 * labelled + timed) + repaired, i)

    i, (value, repaired) = min(found, key=rank)
    sure = _has(lines[i].folded, labels()["date"]["labels"]) or _TIME.search(lines[i].text)
    conf = (0.8 if sure else 0.6) - (0.3 if repaired else 0.0)
    return _field("invoice_date", value, conf, page, [lines[i]])


def _amounts(text: str) -> list[Decimal]:
    out = []
    for m in _AMOUNT.finditer(text):
        whole = re.sub(r"[.,\s]", "", m.group(1))
        try:
            out.append(Decimal(f"{whole}.{m.group(3)}"))
        except InvalidOperation:
            continue
    return out


def _line_amount(lines: Sequence[Line], i: int) -> tuple[Decimal, list[Line]] | None:
    """The amount a label line prints: its rightmost amount, else the next line's first."""
    amounts = _amounts(_digits_in_amounts(lines[i].text))
    if amounts:
        return amounts[-1], [lines[i]]
    if i + 1 < len(lines) and (nxt := _amounts(_digits_in_amounts(lines[i + 1].text))):
        return nxt[0], [lines[i], lines[i + 1]]
    return None


def _digits_in_amounts(text: str) -> str:
    """OCR confusions inside number-like tokens only (S.90 -> 5.90), never in words."""
    return re.sub(r"\b[0-9OolIS$]*[.,][0-9OolIS]{2}\b", lambda m: _digits(m.group(0)), text)


def _total(lines: Sequence[Line], page: ParsedPage) -> FieldValue | None:
    lab = labels()["total"]
    candidates: list[tuple[int, Decimal, list[Line]]] = []  # (priority, amount, lines)
    cash = change = None
    for i, ln in enumerate(lines):
        f = ln.folded
        if (label := _has(f, lab["payable"])) and not _starts(f, lab["not_total"]) and not _has(f, lab["excluding"]):
            if hit := _line_amount(lines, i):
                candidates.append((lab["payable"].index(label), hit[0], hit[1]))
        elif _starts(f, lab["cash"]) and (hit := _line_amount(lines, i)):
            cash = hit[0]
        elif _starts(f, lab["change"]) and (hit := _line_amount(lines, i)):
            change = hit[0]
    if cash is not None and change is not None:
        paid = cash - change
        for _, value, where in candidates:
            if value == paid:
                return _field("total", value, 0.9, page, where)
    if not candidates:
        return None
    best = min(candidates, key=lambda c: (c[0], -c[1]))
    return _field("total", best[1], 0.7, page, best[2])


def extract_receipt(pages: Sequence[ParsedPage]) -> dict[str, FieldValue]:
    """The merchant, its address, the date and the total payable of a receipt (its first page)."""
    if not pages or not pages[0].words:
        return {}
    page = pages[0]
    lines = _lines(page)
    found: dict[str, FieldValue] = {}
    vendor, at = _vendor(lines, page)
    if vendor:
        found["vendor_name"] = vendor
        if address := _address(lines, at, page):
            found["vendor_address"] = address
    for fv in (_date(lines, page), _total(lines, page)):
        if fv:
            found[fv.name] = fv
    return found
