"""The invoice rules: parsed pages in, one FieldValue per Invoice field found.

The schema-driven engine (``generic``) with the invoice's own lexicon and rules. Shared with it: the
document reading (``generic.read_document``: rows, labels, number/date conventions), the value
candidates of the dates (``generic.candidates``), regions, label matching, candidates and their
FieldValue (``common``), the parsers. Invoice-specific: the invoice number (an identifier, not the start
of a date), the fallback invoice date, subtotal/tax/total chosen together preferring amounts that add
up (and an unlabelled total), the currency, vendor and customer blocks (``parties``) and the item table
(``line_items``).
"""

from __future__ import annotations

import itertools
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from docroute.schemas.values import BBox, FieldValue, ParsedPage, Word

from . import line_items as li
from . import parties
from .amounts import NumberStyle, find_amounts, numeric_core
from .common import FALLBACK, Candidate, clean_id, order_of, to_field, valid_id
from .conventions import currency_votes
from .currency import currency_code
from .dates import find_dates
from .generic import candidates, read_document
from .labels import INVOICE_LEXICON, OTHER, PAYEE, SHIP_TO, LabelHit
from .lines import Row, fold, words_source
from .regions import BELOW, below, right_of
from .schema_labels import DATE, FieldSpec

AMOUNT_FIELDS = ("subtotal", "tax_total", "total")
PAID = "paid"  # the lexicon's labels of a prepayment or credit (labels.py)
_field, _order = to_field, order_of


@dataclass(frozen=True)
class _Doc:
    pages: tuple[ParsedPage, ...]
    rows: tuple[tuple[Row, ...], ...]
    rows_at: dict[int, tuple[Row, ...]]
    hits: tuple[LabelHit, ...]
    hits_at: dict
    style: NumberStyle
    table: li.Table

    @property
    def first_page(self) -> int:
        return self.pages[0].page_number

    def regions(self, hit: LabelHit):
        """The places a label's value may be: right of it, then below it."""
        right = right_of(hit, self.hits_at.get((hit.page_number, hit.row.index), ()))
        if right is not None:
            yield right
        down = below(hit, self.rows_at[hit.page_number], self.hits_at)
        if down is not None:
            yield down


# --------------------------------------------------------------------------- identifiers
_clean_id, _valid_id = clean_id, valid_id


def _invoice_number(doc: _Doc) -> tuple[Candidate, LabelHit] | None:
    best: tuple[float, Candidate, LabelHit] | None = None
    for hit in doc.hits:
        if hit.field != "invoice_number":
            continue
        for region in doc.regions(hit):
            words = [w for w in region.words if _clean_id(w.text)]
            if not words:
                continue
            first = words[0]
            text = _clean_id(first.text)
            dates = find_dates(words[:3], doc.style)
            if not _valid_id(text) or (dates and dates[0].words[0] is first):
                continue  # not an identifier, or the start of a date
            page_factor = 1.0 if region.page_number == doc.first_page else 0.95
            quality = hit.score * region.position * page_factor
            cand = Candidate(text, (words[0],), quality, region.page_number, _order(words[:1], region.page_number))
            if best is None or quality > best[0] + 1e-9:
                best = (quality, cand, hit)
            break
    return (best[1], best[2]) if best else None


# --------------------------------------------------------------------------- dates
def _date_candidates(doc: _Doc, field: str) -> list[Candidate]:
    """The engine's candidates (generic.candidates) for a date field, in the invoice's regions."""
    return candidates(FieldSpec(field, DATE, ()), doc.hits, doc.regions, doc.style, first_page=doc.first_page)


def _best(cands: Sequence[Candidate]) -> Candidate | None:
    return max(cands, key=lambda c: (c.quality, -c.order[0], -c.order[1]), default=None)


def _fallback_invoice_date(doc: _Doc, number_hit: LabelHit | None, taken: set[int]) -> Candidate | None:
    """No dated label: the date beside the invoice number, else the first free date on page 1."""
    if number_hit is not None:
        region = right_of(number_hit, doc.hits_at.get((number_hit.page_number, number_hit.row.index), ()))
        if region:
            for d in find_dates(region.words, doc.style):
                return Candidate(d.value, d.words, FALLBACK * d.clean, region.page_number,
                                 _order(d.words, region.page_number))
    for row in doc.rows[0] if doc.rows else ():
        row_hits = doc.hits_at.get((row.page_number, row.index), ())
        if any(h.field in (OTHER, "due_date") for h in row_hits):
            continue
        for d in find_dates(row.words, doc.style):
            if not any(id(w) in taken for w in d.words):
                return Candidate(d.value, d.words, 0.5 * FALLBACK * d.clean, row.page_number,
                                 _order(d.words, row.page_number))
    return None


# --------------------------------------------------------------------------- amounts
def _amount_candidates(doc: _Doc, field: str) -> list[Candidate]:
    out = []
    for hit in doc.hits:
        if hit.field != field or (hit.page_number, hit.row.index) in doc.table.header_rows:
            continue
        for region in doc.regions(hit):
            amounts = find_amounts(region.words, doc.style)
            if hit.weight < 0.8:  # a weak label ("Net 30 days") needs an amount that looks like money
                amounts = [a for a in amounts if a.clean == 1.0]
            if not amounts:
                continue
            a = amounts[0] if region.position == BELOW else amounts[-1]
            quality = hit.score * region.position * a.clean
            out.append(Candidate(a.value, a.words, quality, region.page_number, _order(a.words, region.page_number)))
            break
    return out


def _pooled(cands: Sequence[Candidate], limit: int = 4) -> list[Candidate]:
    """One candidate per value: the best placed one, a little stronger for each repeat."""
    by_value: dict[Decimal, list[Candidate]] = {}
    for c in cands:
        by_value.setdefault(c.value, []).append(c)
    pooled = []
    for group in by_value.values():
        top = max(group, key=lambda c: (c.quality, c.order[0], c.order[1]))
        bonus = min(0.1, 0.04 * (len(group) - 1))
        pooled.append((top.quality + bonus, top))
    pooled.sort(key=lambda t: -t[0])
    return [c for _, c in pooled[:limit]]


def _choose_amounts(doc: _Doc, items_sum: Decimal | None, due_as_total: bool) -> dict[str, Candidate]:
    """Pick subtotal, tax and total together, preferring sets that add up.

    ``due_as_total``: no total label is printed and nothing paid or credited, so the amounts labelled
    as due (not 0: a balance of 0 says everything was paid) are the total's candidates."""
    options = {f: _pooled(_amount_candidates(doc, f)) for f in AMOUNT_FIELDS}
    if due_as_total and not options["total"]:
        options["total"] = [c for c in _pooled(_amount_candidates(doc, "amount_due")) if c.value != 0]
    best: tuple[float, dict[str, Candidate]] | None = None
    for sub, tax, total in itertools.product(*([None, *options[f]] for f in AMOUNT_FIELDS)):
        chosen = {f: c for f, c in zip(AMOUNT_FIELDS, (sub, tax, total), strict=True) if c is not None}
        score = sum(c.quality for c in chosen.values())
        values = {f: c.value for f, c in chosen.items()}
        if {"subtotal", "tax_total", "total"} <= values.keys():
            if values["subtotal"] + values["tax_total"] == values["total"]:
                score += 1.0
            elif values["tax_total"] != 0:
                score -= 0.3
        if "total" in values:
            if "subtotal" in values and values["subtotal"] > values["total"]:
                score -= 1.0
            if "tax_total" in values and abs(values["tax_total"]) >= abs(values["total"]) and values["total"]:
                score -= 1.0
        if items_sum is not None:
            if values.get("subtotal") == items_sum:
                score += 0.3
            elif "subtotal" not in values and "tax_total" not in values and values.get("total") == items_sum:
                score += 0.2
        if best is None or score > best[0] + 1e-9:
            best = (score, chosen)
    return best[1] if best else {}


def _amount_due(doc: _Doc) -> Candidate | None:
    """The amount still to pay: the best labelled one. One more than the total (arrears brought forward,
    or a wrong pick) is kept: validation flags it (``amount_due_exceeds_total``)."""
    cands = _pooled(_amount_candidates(doc, "amount_due"))
    return cands[0] if cands else None


def _unlabeled_total(doc: _Doc, chosen: dict[str, Candidate]) -> Candidate | None:
    """No total label was read (OCR lost it): the last amount printed under the subtotal, in its column.

    The amount must be larger than the subtotal (and equal subtotal + tax when the tax is known).
    """
    sub = chosen.get("subtotal")
    if sub is None or not sub.words:
        return None
    rows = doc.rows_at[sub.page_number]
    right = max(w.bbox.x1 for w in sub.words)
    height = max(w.bbox.height for w in sub.words)
    sub_row = next((r for r in rows if sub.words[0] in r.words), None)
    if sub_row is None:
        return None
    last, found = sub_row, None
    for row in rows[sub_row.index + 1:]:
        if row.bbox.y0 - last.bbox.y1 > 4 * height:
            break
        amounts = [a for a in find_amounts(row.words, doc.style) if abs(max(w.bbox.x1 for w in a.words) - right) < 2 * height]
        if not amounts:
            continue
        found, last = amounts[-1], row
    if found is None or found.value <= sub.value:
        return None
    tax = chosen.get("tax_total")
    if tax is not None and sub.value + tax.value != found.value:
        return None
    return Candidate(found.value, found.words, FALLBACK * 0.8 * found.clean, sub.page_number,
                     _order(found.words, sub.page_number))


# --------------------------------------------------------------------------- currency
def _currency(doc: _Doc, total: Candidate | None) -> Candidate | None:
    words = [w for p in doc.pages for w in p.words]
    if total is not None:
        for w in total.words:
            code = currency_code(w.text) if numeric_core(w.text) is None else None
            code = code or _glued_code(w.text)
            if code:
                return Candidate(code, (w,), 1.0, total.page_number, total.order)
    code = doc.style.currency
    if code is None:
        return None
    votes = currency_votes(words, doc.style.decimal)
    share = votes[code] / sum(votes.values()) if votes else 0.5
    evidence = next((w for w in words if currency_code(w.text.strip(":()")) == code or _glued_code(w.text) == code),
                    None)
    page = next((p.page_number for p in doc.pages if evidence in p.words), 1) if evidence else 1
    ev = (evidence,) if evidence else ()
    return Candidate(code, ev, 0.6 + 0.3 * share, page, _order(ev, page))


def _glued_code(text: str) -> str | None:
    for c in text:
        if not (c.isdigit() or c in ".,-() "):
            code = currency_code(c)
            if code:
                return code
    return None


# --------------------------------------------------------------------------- line items
def _line_items(doc: _Doc) -> FieldValue | None:
    items = doc.table.items
    if not items:
        return None
    rows = []
    confs = []
    words: list[Word] = []
    for item in items:
        rows.append({
            "description": item.description.value.strip() if item.description else None,
            "quantity": item.quantity.value if item.quantity else None,
            "unit_price": item.unit_price.value if item.unit_price else None,
            "amount": item.amount.value if item.amount else None,
        })
        for cell in (item.description, item.quantity, item.unit_price, item.amount):
            if cell is not None:
                confs.append(cell.confidence)
        words.extend(item.words)
    first_page = items[0].page_number
    on_first = [w for it in items if it.page_number == first_page for w in it.words]
    derived = any(it.derived for it in items)
    return FieldValue(
        name="line_items", value=rows, confidence=round(statistics.fmean(confs), 4) if confs else 0.0,
        source="derived" if derived else words_source(words), page_number=first_page,
        bbox=BBox.enclosing([w.bbox for w in on_first]) if on_first else None,
        raw_text="\n".join(" ".join(w.text for w in it.words) for it in items),
    )


# --------------------------------------------------------------------------- entry point
def extract_invoice(pages: Sequence[ParsedPage], *, languages: tuple[str, ...] = ("en", "de", "fr", "nl")
                    ) -> dict[str, FieldValue]:
    """Invoice fields found on the pages, each with its confidence, source, page, bbox and printed text."""
    view = read_document(pages, INVOICE_LEXICON, languages)  # the schema-driven extractor's first half
    if view is None:
        return {}
    pages, rows, hits, hits_at, style = view.pages, view.rows, view.hits, view.hits_at, view.style
    table = li.read_table(rows, hits_at, style)
    doc = _Doc(pages, rows, view.rows_at, hits, hits_at, style, table)
    out: dict[str, FieldValue] = {}

    number = _invoice_number(doc)
    if number:
        out["invoice_number"] = _field("invoice_number", number[0])
    due = _best(_date_candidates(doc, "due_date"))
    inv_date = _best(_date_candidates(doc, "invoice_date"))
    if due and inv_date and due.words == inv_date.words:
        due = None if inv_date.quality >= due.quality else due
        inv_date = inv_date if due is None else None
    if inv_date is None:
        taken = {id(w) for w in due.words} if due else set()
        inv_date = _fallback_invoice_date(doc, number[1] if number else None, taken)
    if inv_date:
        out["invoice_date"] = _field("invoice_date", inv_date)
    if due:
        out["due_date"] = _field("due_date", due)

    items_sum = None
    if table.items and all(it.amount is not None for it in table.items):
        items_sum = sum((it.amount.value for it in table.items), Decimal(0))
    # only an amount due printed and nothing paid or credited: it is the grand total too
    amounts = _choose_amounts(doc, items_sum, due_as_total=not any(h.field == PAID for h in doc.hits))
    due = _amount_due(doc)
    if due is not None:
        amounts["amount_due"] = due
    if "total" not in amounts:
        total = _unlabeled_total(doc, amounts)
        if total is not None:
            amounts["total"] = total
    for name in (*AMOUNT_FIELDS, "amount_due"):
        if name in amounts:
            out[name] = _field(name, amounts[name])
    cur = _currency(doc, amounts.get("total"))
    if cur:
        out["currency"] = _field("currency", cur)

    cust = parties.labeled_block(doc.rows_at, hits, hits_at, "customer")
    ship = parties.labeled_block(doc.rows_at, hits, hits_at, SHIP_TO)
    if cust:
        out["customer_name"] = _party_field("customer_name", cust, cust.name, cust.name_words, cust.quality)
        if cust.address:
            out["customer_address"] = _party_field("customer_address", cust, cust.address, cust.address_words,
                                                   cust.quality)
    blocks = [b for b in (cust, ship) if b is not None]
    exclude_rows = set(table.rows) | set(table.header_rows) | {r for b in blocks for r in b.rows}
    exclude_words = frozenset(id(w) for b in blocks for w in b.name_words + b.address_words)
    vend = parties.vendor(doc.rows_at, pages[0].page_number, hits, hits_at, pages[0].height,
                          frozenset(exclude_rows), exclude_words)
    payee = _payee(doc)
    if payee is not None and (vend is None or fold(payee.value) not in fold(vend.name)):
        out["vendor_name"] = _field("vendor_name", payee)  # the account holder printed as a line of its own
        vend = None
    if vend:
        out["vendor_name"] = _party_field("vendor_name", vend, vend.name, vend.name_words, vend.quality)
        if vend.address:
            out["vendor_address"] = _party_field("vendor_address", vend, vend.address, vend.address_words,
                                                 vend.quality * 0.95)
    items = _line_items(doc)
    if items:
        out["line_items"] = items
    return out


def _payee(doc: _Doc) -> Candidate | None:
    """The bank account holder's name (right of "Account holder", "Kontoinhaber", "Titulaire du compte"
    ...) when the same name is also printed as a row of its own (a letterhead or footer line): then it
    is the vendor's name, whoever the top block names."""
    for hit in doc.hits:
        if hit.field != PAYEE:
            continue
        region = right_of(hit, doc.hits_at.get((hit.page_number, hit.row.index), ()))
        if region is None:
            continue
        name = re.sub(r"^\W+|\W+$", "", " ".join(w.text for w in region.words))  # dashes, colons, bullets
        if len(name) < 3 or any(c.isdigit() for c in name):
            continue
        for row in (r for rows in doc.rows for r in rows):
            if row is not hit.row and fold(row.text.strip()) == fold(name):
                words = row.words
                return Candidate(name, words, hit.score * 0.9, row.page_number, _order(words, row.page_number))
    return None


def _party_field(name: str, party: parties.Party, value: str, words: Sequence[Word], quality: float
                 ) -> FieldValue:
    page = party.page_number
    return _field(name, Candidate(value.strip(), tuple(words), quality, page, _order(words, page)))
