"""Line items: find the item table's header row, take its columns, read the rows below it.

A header row is a row whose words are mostly column names (description, qty, unit price, amount...).
Each header word gives a column; a data row's phrases go to the column they overlap (or the nearest).
A row with a price or amount is an item; a row with text in the description column only continues
the item above (a wrapped description); a totals label or a wide vertical gap ends the table. The
table continues on the next page under a repeated header, or without one if it was not closed.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from rapidfuzz import fuzz, process

from docroute.schemas.values import BBox, Word

from .amounts import NumberStyle, find_amounts, parse_amount
from .labels import LabelHit, norm_token
from .lines import Row, word_confidence

DESCRIPTION, QUANTITY, UNIT_PRICE, AMOUNT, OTHER_COLUMN = "description", "quantity", "unit_price", "amount", "other"
_NUMERIC = (QUANTITY, UNIT_PRICE, AMOUNT)
_TOTAL_FIELDS = ("total", "subtotal", "tax_total", "amount_due")

COLUMN_LEXICON: dict[str, tuple[tuple[str, float], ...]] = {
    DESCRIPTION: (
        ("description", 1.0), ("item description", 1.0), ("omschrijving", 1.0), ("beschreibung", 1.0),
        ("bezeichnung", 1.0), ("artikelbezeichnung", 1.0), ("designation", 1.0), ("libelle", 1.0),
        ("product name", 1.0), ("leistung", 0.8), ("item", 0.8), ("items", 0.8), ("article", 0.8),
        ("artikel", 0.8), ("product", 0.8), ("produkt", 0.8), ("produit", 0.8), ("title", 0.75),
        ("service", 0.7), ("services", 0.7), ("details", 0.7), ("particulars", 0.9),
    ),
    QUANTITY: (
        ("qty", 1.0), ("quantity", 1.0), ("menge", 1.0), ("anzahl", 1.0), ("aantal", 1.0),
        ("hoeveelheid", 1.0), ("quantite", 1.0), ("qte", 1.0), ("nombre", 0.9), ("units", 0.8),
        ("hours", 0.8), ("hrs", 0.8), ("stk", 0.8), ("pcs", 0.8), ("qty.", 1.0),
    ),
    UNIT_PRICE: (
        ("unit price", 1.0), ("price", 0.9), ("rate", 0.9), ("unit cost", 1.0), ("price per unit", 1.0),
        ("prix unitaire", 1.0), ("prix", 0.9), ("p.u", 1.0), ("p.u. ht", 1.0), ("pu ht", 1.0),
        ("einzelpreis", 1.0), ("preis", 0.9), ("e-preis", 1.0), ("stuckpreis", 1.0),
        ("prijs", 0.9), ("prijs per stuk", 1.0), ("eenheidsprijs", 1.0), ("stukprijs", 1.0), ("tarif", 0.8),
    ),
    AMOUNT: (
        ("amount", 1.0), ("total", 0.9), ("line total", 1.0), ("betrag", 1.0),
        ("gesamt", 0.9), ("gesamtpreis", 1.0), ("montant", 1.0), ("montant ht", 1.0), ("bedrag", 1.0),
        ("totaal", 0.9), ("prijs incl. btw", 1.0), ("net amount", 1.0), ("ext. price", 1.0),
        ("extended", 0.9), ("summe", 0.8), ("montant ttc", 1.0),
    ),
    OTHER_COLUMN: (
        ("tax", 1.0), ("vat", 1.0), ("btw", 1.0), ("tva", 1.0), ("mwst", 1.0), ("disc", 1.0),
        ("discount", 1.0), ("rabatt", 1.0), ("taxes", 1.0), ("pos", 1.0), ("no", 1.0),
        ("#", 1.0), ("code", 1.0), ("sku", 1.0), ("tax(%)", 1.0), ("tax (%)", 1.0), ("unit", 1.0), ("uom", 1.0),
        ("%", 1.0), ("vat %", 1.0), ("btw %", 1.0), ("tva %", 1.0), ("% tva", 1.0), ("ref", 1.0),
        ("remise", 1.0), ("korting", 1.0), ("ohne", 0.5), ("mwst.", 1.0),
    ),
}


def _column_table() -> dict[int, dict[str, tuple[str, float]]]:
    """n tokens -> column name -> (role, weight)."""
    out: dict[int, dict[str, tuple[str, float]]] = {}
    for role, names in COLUMN_LEXICON.items():
        for name, weight in names:
            key = " ".join(norm_token(t) for t in name.split())
            out.setdefault(len(key.split()), {})[key] = (role, weight)
    return out


_COLUMN_TABLE = _column_table()  # built once from constants; never mutated
_MAX_COLUMN_TOKENS = max(_COLUMN_TABLE)

DERIVED = 0.7  # confidence factor of a cell computed from the other cells of its row
# A gap between table rows wider than this many row heights ends the table.
GAP_ROWS = 3.2


@dataclass(frozen=True)
class Column:
    role: str
    weight: float
    x0: float
    x1: float

    @property
    def cx(self) -> float:
        return (self.x0 + self.x1) / 2


@dataclass(frozen=True)
class Cell:
    value: object
    words: tuple[Word, ...]
    confidence: float


@dataclass(frozen=True)
class Item:
    description: Cell | None
    quantity: Cell | None
    unit_price: Cell | None
    amount: Cell | None
    page_number: int
    derived: bool = False

    @property
    def words(self) -> tuple[Word, ...]:
        return tuple(w for c in (self.description, self.quantity, self.unit_price, self.amount) if c for w in c.words)


@dataclass(frozen=True)
class Table:
    items: tuple[Item, ...]
    header_rows: frozenset[tuple[int, int]]  # (page_number, row index)
    rows: frozenset[tuple[int, int]]  # every row read as part of the table


def _column_match(candidate: str, n: int) -> tuple[str, float] | None:
    table = _COLUMN_TABLE.get(n)
    if not table:
        return None
    if candidate in table:
        return table[candidate]
    if len(candidate) < 5:
        return None
    best = process.extractOne(candidate, table.keys(), scorer=fuzz.ratio, score_cutoff=88)
    return table[best[0]] if best else None


def header_columns(row: Row) -> list[Column] | None:
    """The columns named by a header row, or None when the row is not a table header."""
    if any(ch.isdigit() for w in row.words for ch in w.text if w.text not in {"%"}):
        return None  # a header names its columns without digits (decided first: it is the cheap test)
    columns: list[Column] = []
    matched = total = 0
    for phrase in row.phrases:
        tokens = [(i, norm_token(w.text)) for i, w in enumerate(phrase.words)]
        tokens = [(i, t) for i, t in tokens if t] or [(i, w.text) for i, w in enumerate(phrase.words)]
        total += len(tokens)
        k = 0
        while k < len(tokens):
            for n in range(min(_MAX_COLUMN_TOKENS, len(tokens) - k), 0, -1):
                hit = _column_match(" ".join(t for _, t in tokens[k:k + n]), n)
                if hit:
                    words = phrase.words[tokens[k][0]:tokens[k + n - 1][0] + 1]
                    box = BBox.enclosing([w.bbox for w in words])
                    columns.append(Column(hit[0], hit[1], box.x0, box.x1))
                    matched += n
                    k += n
                    break
            else:
                k += 1
    roles = {c.role for c in columns}
    if (
        len(columns) < 3 or matched < 0.6 * total or DESCRIPTION not in roles
        or not roles & {UNIT_PRICE, AMOUNT}
    ):
        return None
    columns.sort(key=lambda c: c.x0)
    return _keep_best_description(columns)


def _keep_best_description(columns: list[Column]) -> list[Column]:
    """Several description-like columns ("Artikel", "Omschrijving"): the strongest names the text."""
    descs = [c for c in columns if c.role == DESCRIPTION]
    if len(descs) <= 1:
        return columns
    best = max(descs, key=lambda c: (c.weight, -c.x0))
    return [c if c.role != DESCRIPTION or c is best else Column(OTHER_COLUMN, c.weight, c.x0, c.x1) for c in columns]


def _assign(row: Row, columns: Sequence[Column]) -> dict[int, list[Word]]:
    """Column index -> the row's words in that column."""
    out: dict[int, list[Word]] = {}
    desc_idx = next((i for i, c in enumerate(columns) if c.role == DESCRIPTION), None)
    for phrase in row.phrases:
        b = phrase.bbox
        if desc_idx is not None and _is_text(phrase.words):
            # left-aligned text starting in the description column is description, however far it runs
            nxt = columns[desc_idx + 1].x0 if desc_idx + 1 < len(columns) else float("inf")
            start, mid = columns[desc_idx].x0, (columns[desc_idx].x0 + nxt) / 2
            if start - 20 <= b.x0 <= max(mid, columns[desc_idx].x1):
                out.setdefault(desc_idx, []).extend(phrase.words)
                continue
        overlaps = [i for i, c in enumerate(columns) if min(b.x1, c.x1) - max(b.x0, c.x0) > 1.0]
        if len(overlaps) == 1:
            out.setdefault(overlaps[0], []).extend(phrase.words)
            continue
        for w in phrase.words:
            i = _nearest(w.bbox, columns, overlaps)
            out.setdefault(i, []).append(w)
    return out


assign_columns = _assign  # shared with the schema-driven table reader (tables.py)


def _nearest(box: BBox, columns: Sequence[Column], among: Sequence[int]) -> int:
    pool = among or range(len(columns))

    def dist(i: int) -> float:
        c = columns[i]
        if c.x0 <= box.cx <= c.x1:
            return 0.0
        return min(abs(box.cx - c.x0), abs(box.cx - c.x1), abs(box.x1 - c.x1))

    return min(pool, key=dist)


def _is_text(words: Sequence[Word]) -> bool:
    letters = sum(ch.isalpha() for w in words for ch in w.text)
    digits = sum(ch.isdigit() for w in words for ch in w.text)
    return letters > digits


def _money_cell(words: Sequence[Word], style: NumberStyle) -> Cell | None:
    amounts = find_amounts(words, style)
    if not amounts:
        return None
    a = amounts[-1] if len(amounts) == 1 else amounts[0]
    return Cell(a.value, a.words, word_confidence(a.words) * a.clean)


def _quantity_cell(words: Sequence[Word], style: NumberStyle) -> Cell | None:
    for w in words:
        parsed = parse_amount(w.text, style)
        if parsed is not None and parsed[1] is None:
            return Cell(parsed[0], (w,), word_confidence([w]))
    return None


@dataclass
class _Reader:
    """State of one table read across pages (local to one ``read_table`` call)."""

    style: NumberStyle
    columns: list[Column] | None = None
    closed: bool = False
    pitch: float | None = None
    leads: list[float] = field(default_factory=list)  # vertical gaps seen between table rows


def _parse_row(cells: dict[int, list[Word]], columns: Sequence[Column], style: NumberStyle):
    by_role: dict[str, list[Word]] = {}
    for i, words in cells.items():
        by_role.setdefault(columns[i].role, []).extend(words)
    desc_words = tuple(sorted(by_role.get(DESCRIPTION, []), key=lambda w: w.bbox.x0))
    amount = _money_cell(by_role.get(AMOUNT, []), style)
    unit = _money_cell(by_role.get(UNIT_PRICE, []), style)
    qty = _quantity_cell(by_role.get(QUANTITY, []), style)
    numeric_words = [w for r in _NUMERIC for w in by_role.get(r, [])]
    return desc_words, qty, unit, amount, numeric_words


def _is_totals_row(row: Row, hits: Sequence[LabelHit], style: NumberStyle) -> bool:
    starts = [h for h in hits if h.field in _TOTAL_FIELDS and h.start == 0]
    return bool(starts) and bool(find_amounts(row.words, style))


def read_table(pages_rows: Sequence[Sequence[Row]], hits: dict[tuple[int, int], list[LabelHit]],
               style: NumberStyle) -> Table:
    reader = _Reader(style)
    items: list[Item] = []
    header_rows: set[tuple[int, int]] = set()
    table_rows: set[tuple[int, int]] = set()
    for rows in pages_rows:
        if reader.closed:
            break
        _read_page(rows, hits, reader, items, header_rows, table_rows)
    return Table(tuple(items), frozenset(header_rows), frozenset(table_rows))


def _read_page(rows, hits, reader: _Reader, items: list[Item], header_rows: set, table_rows: set) -> None:
    style = reader.style
    started = False
    prev: Row | None = None
    last_item: int | None = None  # index in ``items`` of the item that a wrapped line would extend
    skipped = 0
    for i, row in enumerate(rows):
        key = (row.page_number, row.index)
        cols = header_columns(row)
        if cols:
            reader.columns, started, prev, last_item, skipped = cols, True, row, None, 0
            header_rows.add(key)
            continue
        if reader.columns is None:
            continue
        row_hits = hits.get(key, ())
        totals = _is_totals_row(row, row_hits, style)
        cells = _assign(row, reader.columns)
        desc, qty, unit, amount, numeric_words = _parse_row(cells, reader.columns, style)
        if not started:
            if not items or reader.closed:
                continue
            # a page without a repeated header: the table resumes at its first complete item row
            if not (desc and amount and (qty or unit)) or totals:
                continue
            started = True
        if prev is not None and _gap_too_wide(prev, row, reader):
            return
        has_money = any(a.clean == 1.0 for a in find_amounts(row.words, style))
        only_desc = all(reader.columns[c].role == DESCRIPTION for c in cells)
        gap = row.bbox.y0 - prev.bbox.y1 if prev is not None else 0.0
        if totals:
            table_rows.add(key)
            if not _items_follow(rows, i + 1, hits, reader):
                reader.closed = True
                return
            prev, last_item, skipped = row, None, 0
            continue
        if amount or unit:
            items.append(_make_item(desc, qty, unit, amount, row.page_number))
            if prev is not None:
                pitch = row.bbox.cy - prev.bbox.cy
                reader.pitch = pitch if reader.pitch is None else min(reader.pitch, pitch)
            last_item, skipped = len(items) - 1, 0
            table_rows.add(key)
        elif desc and only_desc and not has_money and last_item is not None and _wrap_gap(gap, reader):
            # a wrapped description: no numbers in the number columns
            items[last_item] = _extend_description(items[last_item], desc)
            table_rows.add(key)
        elif not has_money:
            # a section title, a second header line, a sub-line with a quantity only: read past it
            skipped += 1
            if skipped > 3:
                return
            before_items = last_item is None and not any(c.isdigit() for c in row.text)
            (header_rows if before_items else table_rows).add(key)
        else:
            return  # an amount outside the columns: the table has ended on this page
        if prev is not None:
            reader.leads.append(max(0.0, gap))
        prev = row


def _wrap_gap(gap: float, reader: _Reader) -> bool:
    """A wrapped description line sits as close under its row as table rows sit to each other."""
    if not reader.leads:
        return True
    return gap <= 2.0 * statistics.median(reader.leads) + 2.0


def _gap_too_wide(prev: Row, row: Row, reader: _Reader) -> bool:
    gap = row.bbox.y0 - prev.bbox.y1
    height = max(prev.height, row.height, 1.0)
    limit = GAP_ROWS * height
    if reader.pitch:
        limit = max(limit, 2.5 * reader.pitch)
    return gap > limit


def _items_follow(rows: Sequence[Row], start: int, hits, reader: _Reader) -> bool:
    """After a totals row: do more items follow (a section subtotal) before another totals row?"""
    prev = rows[start - 1]
    for row in rows[start:start + 3]:
        key = (row.page_number, row.index)
        if _gap_too_wide(prev, row, reader) or _is_totals_row(row, hits.get(key, ()), reader.style):
            return False
        if hits.get(key) and any(h.start == 0 and h.phrase == 0 for h in hits[key]):
            return False
        d, q, u, a, _ = _parse_row(_assign(row, reader.columns), reader.columns, reader.style)
        if d and a:
            return True
        prev = row
    return False


def _make_item(desc: tuple[Word, ...], qty: Cell | None, unit: Cell | None, amount: Cell | None,
               page_number: int) -> Item:
    description = Cell(" ".join(w.text for w in desc), desc, word_confidence(desc)) if desc else None
    derived = False
    if amount is None and qty is not None and unit is not None:
        amount = Cell(qty.value * unit.value, (), DERIVED * min(qty.confidence, unit.confidence))
        derived = True
    elif qty is None and unit is not None and amount is not None and unit.value:
        # the quantity column was not read (OCR dropped it): only a whole number of units is safe
        ratio = amount.value / unit.value
        if ratio == ratio.to_integral_value() and ratio > 0:
            qty = Cell(ratio.to_integral_value(), (), DERIVED * min(amount.confidence, unit.confidence))
            derived = True
    return Item(description, qty, unit, amount, page_number, derived)


def _extend_description(item: Item, more: tuple[Word, ...]) -> Item:
    words = (item.description.words if item.description else ()) + more
    cell = Cell(" ".join(w.text for w in words), words, word_confidence(words))
    return Item(cell, item.quantity, item.unit_price, item.amount, item.page_number, item.derived)
