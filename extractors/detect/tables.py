"""Complex tables: spanning cells and nested (multi-level) headers, among every table on the page.

Every table on the page becomes a candidate region with its evidence; the policy decides which are
complex. Tables come from three places, cheapest first:

- ruled tables that ``find_tables`` found during the layout parse (their typed cells, spans included,
  are the element's ``table``);
- unruled tables that PyMuPDF's layout model found, when the parse ran it;
- unruled numeric grids found here from word geometry: three or more nearby lines that split into
  several cells, with numbers in them.

For each table the header is read from word geometry: the data columns are the x-bands that the body
rows' cells occupy, and a header cell that straddles two or more data columns, above a header line
that splits under it, is a spanning (nested) header cell — ``Revenue`` over ``2023 | 2024``. This works
for ruled and unruled tables alike. ``find_tables``' own span count is checked against the data
columns: a stray short ruling makes phantom grid columns and phantom spans, which are not counted
(:func:`spanning_cells`, the one definition of a spanning cell).

A plain invoice line-item table (one header row, no spans) has no such evidence and stays on the
layout route.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from docroute.extractors.detect.common import Line, Segment, is_number, median, resplit, text_lines
from docroute.schemas import BBox, Drawing, Element, ParsedPage, Region, Word
from docroute.schemas.targets import Table

MIN_GRID_LINES = 3  # an unruled numeric grid has at least this many rows
MIN_COLUMNS = 3  # ...and at least this many data columns
MAX_HEADER_LINES = 6


@dataclass(frozen=True)
class Band:
    x0: float
    x1: float


def _is_body(line: Line) -> bool:
    """A table body row: two or more cells, at least one of them a number."""
    return len(line.segments) >= 2 and any(s.numeric for s in line.segments)


def column_bands(body: Sequence[Line], x0: float, x1: float) -> list[Band]:
    """Data columns: x-runs that cells of at least a fifth of the body rows cover.

    Counting coverage (rather than merging every overlapping cell) keeps two columns apart when a
    few rows have a cell that runs across both.
    """
    width = int(x1 - x0) + 3
    diff = [0] * (width + 1)
    for ln in body:
        for s in ln.segments:
            if s.x1 - s.x0 >= 0.5 * (x1 - x0):
                continue
            a = min(width, max(0, int(s.x0 - x0)))
            b = min(width, max(0, int(s.x1 - x0) + 1))
            diff[a] += 1
            diff[b] -= 1
    need = max(2, int(0.2 * len(body) + 0.5))
    bands: list[Band] = []
    cov = 0
    start = None
    for i in range(width + 1):
        cov += diff[i]
        if cov >= need and start is None:
            start = i
        elif cov < need and start is not None:
            if bands and x0 + start - bands[-1].x1 < 1.5:
                bands[-1] = Band(bands[-1].x0, x0 + i)
            else:
                bands.append(Band(x0 + start, x0 + i))
            start = None
    return bands


def _band_of(x: float, bands: Sequence[Band]) -> int:
    """The band holding x, else the nearest one."""
    best, dist = 0, float("inf")
    for i, b in enumerate(bands):
        d = 0.0 if b.x0 <= x <= b.x1 else min(abs(x - b.x0), abs(x - b.x1))
        if d < dist:
            best, dist = i, d
    return best


def _straddle_rules(drawings: Sequence[Drawing], top: float, bottom: float, x0: float, x1: float) -> list[BBox]:
    """Thin horizontal rules inside a header zone, touching pieces joined, not the table's full width."""
    pieces = sorted(
        (d.bbox for d in drawings
         if d.bbox.height <= 1.5 and top - 2 <= d.bbox.cy <= bottom + 2 and d.bbox.x0 >= x0 - 4 and d.bbox.x1 <= x1 + 4),
        key=lambda b: (round(b.cy), b.x0),
    )
    joined: list[BBox] = []
    for b in pieces:
        last = joined[-1] if joined else None
        if last is not None and abs(last.cy - b.cy) < 1.0 and b.x0 - last.x1 < 1.0:
            joined[-1] = last.union(b)
        else:
            joined.append(b)
    return [b for b in joined if 12 <= b.width <= 0.9 * (x1 - x0)]


def _group(seg: Segment, bands: Sequence[Band], below: Sequence[Segment], others: Sequence[Segment]) -> tuple[int, int] | None:
    """The widest run of (not all) data columns that ``seg`` is centred over, with sub-headers at both ends."""
    n = len(bands)
    for k in range(n - 1, 1, -1):
        for a in range(0, n - k + 1):
            g0, g1 = bands[a].x0, bands[a + k - 1].x1
            if not (g0 <= seg.cx <= g1) or abs(seg.cx - (g0 + g1) / 2) > max(8.0, 0.15 * (g1 - g0)):
                continue
            if seg.x1 - seg.x0 > (g1 - g0) + 12 or any(o.x1 > g0 + 2 and o.x0 < g1 - 2 for o in others):
                continue
            under = {_band_of(s.cx, bands) for s in below
                     if g0 - 2 <= s.cx <= g1 + 2 and any(s.x0 < b.x1 and s.x1 > b.x0 for b in bands)}
            if a in under and a + k - 1 in under:
                return a, k
    return None


def spanning_headers(header: Sequence[Line], bands: Sequence[Band], rules: Sequence[BBox] = (),
                     first_body: Line | None = None) -> list[Segment]:
    """Header cells that group two or more (not all) data columns above a header line that splits there.

    A grouping label is centred over its columns. When its centre falls in the gap between two data
    columns, or a rule under it (a straddle rule) runs over two or more columns, that is enough. A
    label centred on one column may instead be that column's own header wrapped over two lines, so
    it counts only when the same line holds another grouping label (``Male | Female``, ``2023 | 2024``).
    The first body row counts as a line below: a row of column labels that are numbers (grades 1-6,
    years) reads as a body row.
    """
    out: list[Segment] = []
    lower = [*header[1:], first_body] if first_body is not None else list(header[1:])
    for i, line in enumerate(header):
        found: list[tuple[Segment, bool]] = []
        for seg in line.segments:
            if len(seg.words) > 8:
                continue
            rule = next((r for r in rules if r.x0 - 4 <= seg.cx <= r.x1 + 4 and 0 <= r.cy - seg.y1 <= 14), None)
            below = [s for ln in lower[i:] for s in ln.segments if rule is None or s.y0 >= rule.y0]
            others = [o for o in line.segments if o is not seg]
            header_below = [s for ln in header[i + 1:] for s in ln.segments if rule is None or s.y0 >= rule.y0]
            group = _group(seg, bands, header_below, others)
            if group is None and rule is not None:
                # sub-labels read as a body row (numbers: grades, years) count under a straddle rule only
                group = _group(seg, bands, below, others)
            if group is None:
                continue
            # centred in a gap and reaching across its middle: not one column's header that is wider
            # than its (left-aligned or narrow) values
            mids = [(a.x1 + b.x0) / 2 for a, b in zip(bands, bands[1:], strict=False)]
            in_gap = (not any(b.x0 - 1 <= seg.cx <= b.x1 + 1 for b in bands)
                      and any(seg.x0 + 2 < m < seg.x1 - 2 for m in mids))
            ruled = rule is not None and sum(1 for b in bands if min(rule.x1, b.x1) - max(rule.x0, b.x0) > 2) >= 2
            found.append((seg, in_gap or ruled))
        out += [seg for seg, strong in found if strong or len(found) >= 2]
    return out


def _header_lines(lines: Sequence[Line], first_body: int, x0: float, x1: float, top: float | None) -> list[Line]:
    """Lines just above the first body row that belong to the table's header."""
    header: list[Line] = []
    below_y0 = lines[first_body].y0
    heights = [ln.y1 - ln.y0 for ln in lines[first_body:first_body + 5]]
    lh = median(heights, 10.0)
    for ln in reversed(lines[:first_body]):
        if len(header) >= MAX_HEADER_LINES:
            break
        if top is not None and ln.y0 < top - 2:
            break
        if top is None and below_y0 - ln.y1 > 1.6 * lh:
            break
        if ln.x0 < x0 - 8 or ln.x1 > x1 + 8:
            break
        header.insert(0, ln)
        below_y0 = ln.y0
    return header


@dataclass(frozen=True)
class TableFacts:
    bbox: BBox
    n_rows: int
    n_cols: int
    header_lines: int
    spanning_headers: int
    ruled_spans: int
    ruled_header_spans: int
    numeric_share: float
    ruled: bool
    source: str
    spans: tuple[BBox, ...] = ()

    def evidence(self) -> dict[str, float]:
        return {
            "rows": float(self.n_rows), "columns": float(self.n_cols), "header_lines": float(self.header_lines),
            "spanning_header_cells": float(self.spanning_headers), "ruled_spanning_cells": float(self.ruled_spans),
            "ruled_header_spanning_cells": float(self.ruled_header_spans),
            "numeric_share": round(self.numeric_share, 3), "ruled": float(self.ruled),
        }


def analyse(lines: Sequence[Line], bbox: BBox, source: str, ruled: bool, table: Table | None,
            drawings: Sequence[Drawing] = (), bounded: bool = True) -> TableFacts | None:
    """Facts of the table in ``bbox``. ``bounded``: the box includes the header (a table a parser
    found); otherwise (a grid of body rows found here) the header is read from the lines just above."""
    reach = 40 if bounded else 120  # how far above the box header lines are looked for
    inside = [ln for ln in lines if bbox.x0 - 2 <= ln.x0 and ln.x1 <= bbox.x1 + 2 and bbox.y0 - reach <= ln.y0 <= bbox.y1]
    body_idx = [i for i, ln in enumerate(inside) if _is_body(ln) and ln.y0 >= bbox.y0 - 2]
    if len(body_idx) < 2:
        return None
    first = body_idx[0]
    body = [inside[i] for i in body_idx]
    bands = column_bands(body, bbox.x0, bbox.x1)
    header = [resplit(ln, 0.5) for ln in _header_lines(inside, first, bbox.x0, bbox.x1, bbox.y0 if bounded else None)]
    rules = _straddle_rules(drawings, header[0].y0, body[0].y0, bbox.x0, bbox.x1) if header else []
    spans = spanning_headers(header, bands, rules, body[0]) if len(bands) >= 3 else []
    segs = [s for ln in body for s in ln.segments]
    ruled_spans, ruled_head = spanning_cells(table) if table is not None else (0, 0)
    return TableFacts(
        bbox=BBox.enclosing([bbox] + [BBox(x0=ln.x0, y0=ln.y0, x1=ln.x1, y1=ln.y1) for ln in header]),
        n_rows=len(body), n_cols=len(bands), header_lines=len(header), spanning_headers=len(spans),
        ruled_spans=ruled_spans, ruled_header_spans=ruled_head,
        numeric_share=sum(s.numeric for s in segs) / len(segs) if segs else 0.0, ruled=ruled, source=source,
        spans=tuple(BBox(x0=s.x0, y0=s.y0, x1=s.x1, y1=s.y1) for s in spans),
    )


def spanning_cells(table: Table) -> tuple[int, int]:
    """Spanning cells of a table that span real columns or rows: (all, in the header).

    A column span counts when it has text and covers two or more grid columns that carry text in
    unspanned cells, but not every such column (a full-width section or caption row is not a complex
    structure); a stray short ruling makes phantom grid columns, and spans over those are not counted.
    A row span counts when its text is a short label beside rows of numbers: a missing horizontal
    ruling merges rows of data (or wrapped header lines) into one grid cell, which is not a designed
    span. A header span is a column span in the first two rows.
    """
    cells = [(c.row, c.col, c.row_span, c.col_span, c.text.strip()) for c in table.cells]
    text_cols = {c for r, c, rs, cs, t in cells if t and cs == 1}
    text_rows = {r for r, c, rs, cs, t in cells if t and rs == 1}
    numeric_rows = {r for r, c, rs, cs, t in cells if t and rs == 1 and is_number(t)}
    spans = head = 0
    for r, c, rs, cs, t in cells:
        if not t or (rs == 1 and cs == 1):
            continue
        cols = {c + i for i in range(cs)} & text_cols
        rows = {r + i for i in range(rs)} & text_rows
        label = len(t.split()) <= 6 and sum(ch.isdigit() for ch in t) <= 4
        real_col = len(cols) >= 2 and cols != text_cols
        real_row = len(rows) >= 2 and label and bool(rows & numeric_rows)
        spans += real_col or real_row
        head += real_col and r < 2
    return spans, head


def _grid_blocks(lines: Sequence[Line], taken: Sequence[BBox]) -> list[tuple[int, int]]:
    """Runs of body-like lines (index ranges) not inside a table found already."""
    blocks: list[tuple[int, int]] = []
    start = last = None
    misses = 0
    for i, ln in enumerate(lines):
        lb = BBox(x0=ln.x0, y0=ln.y0, x1=ln.x1, y1=ln.y1)
        if any(lb.overlap_of(t) > 0.5 for t in taken):
            body = False
        else:
            body = _is_body(ln)
        if body and start is not None and last is not None:
            gap = ln.y0 - lines[last].y1
            if gap > 3.0 * max(4.0, lines[last].y1 - lines[last].y0):
                blocks.append((start, last))
                start = None
        if body:
            if start is None:
                start = i
            last = i
            misses = 0
        elif start is not None:
            misses += 1
            if misses > 2:
                blocks.append((start, last))
                start = None
                misses = 0
    if start is not None:
        blocks.append((start, last))
    return [(a, b) for a, b in blocks if sum(_is_body(ln) for ln in lines[a:b + 1]) >= MIN_GRID_LINES]


def table_candidates(parsed: ParsedPage, words: Sequence[Word] | None = None,
                     drawings: Sequence[Drawing] = ()) -> list[TableFacts]:
    """Every table on the page with the facts the policy needs to call it complex or plain."""
    words = parsed.words if words is None else words
    if not words:
        return []
    lines = text_lines(words)
    out: list[TableFacts] = []
    tables: list[Element] = [e for e in parsed.elements if e.kind == "table"]
    for e in tables:
        ruled = e.source.endswith("find_tables")
        facts = analyse(lines, e.bbox, e.source.split(":")[-1], ruled, e.table if ruled else None, drawings)
        if facts is not None:
            out.append(facts)
    taken = [t.bbox for t in out] + [e.bbox for e in tables]
    for a, b in _grid_blocks(lines, taken):
        block = lines[a:b + 1]
        box = BBox.enclosing([BBox(x0=ln.x0, y0=ln.y0, x1=ln.x1, y1=ln.y1) for ln in block])
        facts = analyse(lines, box, "word_grid", False, None, drawings, bounded=False)
        if facts is not None and facts.n_cols >= MIN_COLUMNS:
            out.append(facts)
    return out


def table_regions(parsed: ParsedPage, words: Sequence[Word] | None = None, drawings: Sequence[Drawing] = ()) -> list[Region]:
    regions = []
    for f in table_candidates(parsed, words, drawings):
        head = f.spanning_headers + f.ruled_header_spans
        score = min(1.0, 0.45 * min(2, head) + 0.1 * min(3, f.ruled_spans) + 0.05 * min(2, f.header_lines)
                    + (0.05 if f.n_cols >= 6 else 0.0))
        note = (f"{f.source} table {f.n_rows} rows x {f.n_cols} columns, {f.header_lines} header line(s), "
                f"{f.spanning_headers} spanning header cell(s), {f.ruled_spans} spanning ruled cell(s)")
        regions.append(Region(kind="table", bbox=f.bbox, score=round(score, 4), evidence=f.evidence(),
                              source=f"tables:{f.source}", note=note))
    return regions
