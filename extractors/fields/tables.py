"""A ``list[SomeModel]`` field read from a table whose header names the item model's fields.

A header row is a row without digits whose words are mostly labels of the item fields (their names,
aliases, ``labels`` and synonyms, as for any field) naming at least two of them. Each header label gives
a column; a data row's phrases go to the column they overlap or the nearest one (``line_items.assign``,
the invoice table's column assignment). A row with a typed value (number, date) is an item; a row with
text only continues the item above (a wrapped description); a schema label at the start of a row (a
"Total:" or "Closing balance" line), a wide vertical gap or three rows that are neither end the table.
A header repeated on a later page continues it.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from docroute.schemas.values import BBox, FieldValue, Word

from .amounts import NumberStyle
from .labels import LabelHit, Lexicon, find_labels, norm_token
from .line_items import COLUMN_LEXICON, GAP_ROWS, OTHER_COLUMN, Column, assign_columns
from .lines import Phrase, Row, word_confidence, words_source
from .schema_labels import TEXT, FieldSpec, lexicon_entries
from .values import read_value

_MAX_SKIPPED = 2
TABLE_END = "_table_end"  # a totals label of the invoice lexicon (generic.lexicon_for): it ends a table


def column_lexicon(columns: Sequence[FieldSpec]) -> Lexicon:
    """The item fields' labels; an item field named like an invoice column (description, quantity,
    unit_price, amount) also gets the invoice table's column names, and the invoice's other column names
    ("Pos", "VAT %", "SKU") are header words of no field."""
    entries = lexicon_entries(columns)
    for name, labels in entries.items():
        have = {label for label, _ in labels}
        labels += [(label, w) for label, w in COLUMN_LEXICON.get(name, ()) if label not in have]
    names = set(entries)
    entries[OTHER_COLUMN] = [(label, w) for label, w in COLUMN_LEXICON[OTHER_COLUMN]
                             if not any(label in {x for x, _ in entries[n]} for n in names)]
    return Lexicon.of(entries)


def header(row: Row, lexicon: Lexicon, n_fields: int) -> list[Column] | None:
    """The columns a header row names, or None when ``row`` is not a header of this table."""
    if any(c.isdigit() for c in row.text):
        return None
    hits = find_labels([row], lexicon)
    tokens = sum(1 for w in row.words if norm_token(w.text))
    covered = sum(1 for h in hits for w in h.words if norm_token(w.text))
    best: dict[str, LabelHit] = {}
    others = [Column(OTHER_COLUMN, h.weight, h.bbox.x0, h.bbox.x1) for h in hits if h.field == OTHER_COLUMN]
    for h in hits:
        if h.field == OTHER_COLUMN:  # "Pos", "VAT %": a column of no field (its cells are not read)
            continue
        if h.field not in best or h.score > best[h.field].score:
            best[h.field] = h
    if len(best) < min(2, n_fields) or covered < 0.6 * tokens or not best:
        return None
    named = [Column(h.field, h.weight, h.bbox.x0, h.bbox.x1) for h in best.values()]
    # a second column named like a field ("Item" beside "Description") is a column of no field
    kept = {id(h) for h in best.values()}
    others += [Column(OTHER_COLUMN, h.weight, h.bbox.x0, h.bbox.x1) for h in hits
               if h.field != OTHER_COLUMN and id(h) not in kept
               and not any(min(h.bbox.x1, c.x1) - max(h.bbox.x0, c.x0) > 0 for c in named)]
    return sorted(named + others, key=lambda c: c.x0)


def _named(columns: list[Column] | None) -> int:
    return sum(c.role != OTHER_COLUMN for c in columns or ())


def stacked(upper: Row, lower: Row) -> Row | None:
    """A header printed on two lines ("Unit" over "Price") as one row: each lower phrase joins the upper
    phrase it sits under. None when the lower line is not right under the upper one."""
    if lower.bbox.y0 - upper.bbox.y1 > 0.8 * max(upper.height, lower.height):
        return None
    phrases = list(upper.phrases)
    for ph in lower.phrases:
        over = [i for i, up in enumerate(phrases) if min(up.bbox.x1, ph.bbox.x1) - max(up.bbox.x0, ph.bbox.x0) > 0]
        if len(over) == 1:
            phrases[over[0]] = Phrase(phrases[over[0]].words + ph.words, upper.page_number)
        else:
            phrases.append(ph)
    return Row(tuple(sorted(phrases, key=lambda p: p.bbox.x0)), upper.page_number, upper.index)


def _cells(row: Row, columns: Sequence[Column], specs: dict[str, FieldSpec], style: NumberStyle):
    """column name -> (value, words, confidence) for the row's filled columns."""
    out = {}
    for i, words in assign_columns(row, columns).items():
        if columns[i].role == OTHER_COLUMN:
            continue
        spec = specs[columns[i].role]
        words = sorted(words, key=lambda w: w.bbox.x0)
        if spec.kind == TEXT:
            text = " ".join(w.text for w in words).strip()
            if text:
                out[spec.name] = (text, tuple(words), word_confidence(words))
            continue
        got = read_value(spec, words, style)
        if got is not None:
            value, used, clean = got
            out[spec.name] = (value, used, word_confidence(used) * clean)
    return out


def read_list(spec: FieldSpec, pages_rows: Sequence[Sequence[Row]], stops: dict[tuple[int, int], list[LabelHit]],
              style: NumberStyle) -> tuple[FieldValue | None, set[tuple[int, int]]]:
    """The table field ``spec`` (kind TABLE) and every row (page, index) read as part of the table."""
    specs = {c.name: c for c in spec.columns}
    lexicon = column_lexicon(spec.columns)
    items: list[dict[str, tuple]] = []
    pages: list[int] = []
    used: set[tuple[int, int]] = set()
    for rows in pages_rows:
        columns: list[Column] | None = None
        prev: Row | None = None
        skipped = read_here = 0
        pitch: float | None = None
        for n, row in enumerate(rows):
            key = (row.page_number, row.index)
            if key in used:
                continue  # the second line of a two-line header
            cols = header(row, lexicon, len(specs))
            two = stacked(row, rows[n + 1]) if n + 1 < len(rows) else None
            both = header(two, lexicon, len(specs)) if two is not None else None
            # a header on two lines ("Unit" over "Price") when it names more columns than either line
            if both and _named(both) > max(_named(cols), _named(header(rows[n + 1], lexicon, len(specs)))):
                cols, row = both, rows[n + 1]
                used.add((row.page_number, row.index))
            if cols:
                columns, prev, skipped, read_here = cols, row, 0, 0
                used.add(key)
                continue
            if columns is None:
                continue
            gap = row.bbox.y0 - prev.bbox.y1
            limit = max(GAP_ROWS * max(prev.height, row.height, 1.0), 2.5 * pitch if pitch else 0.0)
            # a row that starts with a schema label ("Closing balance"), or a short one that starts with a
            # totals label ("Subtotal  499.40"), ends the table; before the first item ("Opening balance"
            # as the first row) it is read past, left to the field it names
            starts_label = any(h.phrase == 0 and h.start == 0 and (h.field != TABLE_END or len(row.phrases) <= 2)
                               for h in stops.get(key, ()))
            if starts_label and not read_here and gap <= limit:
                prev = row
                continue
            if gap > limit or starts_label:
                columns = None
                continue
            cells = _cells(row, columns, specs, style)
            typed = [n for n in cells if specs[n].kind != TEXT]
            if typed or (cells and all(specs[n].kind == TEXT for n in specs) and len(cells) >= 2):
                items.append(cells)
                pages.append(row.page_number)
                read_here += 1
                pitch = row.bbox.cy - prev.bbox.cy if pitch is None else min(pitch, row.bbox.cy - prev.bbox.cy)
                used.add(key)
                skipped = 0
            elif cells and items and not any(c.isdigit() for c in row.text) and gap <= 1.5 * max(row.height, 1.0):
                last = items[-1]
                for name, (text, words, conf) in cells.items():  # a wrapped text line
                    old = last.get(name)
                    last[name] = (f"{old[0]} {text}", old[1] + words, min(old[2], conf)) if old else (text, words, conf)
                used.add(key)
            else:
                skipped += 1
                if skipped > _MAX_SKIPPED:
                    columns = None
                continue
            prev = row
    if not items:
        return None, used
    return _field(spec.name, items, pages, list(specs)), used


def _field(name: str, items: list[dict[str, tuple]], pages: list[int], columns: list[str]) -> FieldValue:
    words: list[Word] = [w for it in items for _, ws, _ in it.values() for w in ws]
    confs = [c for it in items for _, _, c in it.values()]
    first_page = pages[0]
    page_words = [w for it, p in zip(items, pages, strict=True) if p == first_page for _, ws, _ in it.values() for w in ws]
    return FieldValue(
        name=name, value=[{c: it[c][0] if c in it else None for c in columns} for it in items],
        confidence=round(max(0.0, min(1.0, statistics.fmean(confs))), 4) if confs else 0.0,
        source=words_source(words) if words else "derived", page_number=first_page,
        bbox=BBox.enclosing([w.bbox for w in page_words]) if page_words else None,
        raw_text="\n".join(" ".join(w.text for _, ws, _ in it.values() for w in ws) for it in items),
    )
