"""The default layout engine: elements from PyMuPDF's text layer and tables, or from OCR words.

Text pages: text blocks become title / header / footer / list_item / text elements; ruled tables come
from ``find_tables`` (line strategy, layout model off: about 24 ms a page instead of 290 ms) as typed
cells (``Element.table``), each cell's text read from the words inside the cell's bbox
(``Table.extract()`` can drop spaces and split decimals); images become figure elements; ink
annotations become handwriting elements.
Scanned pages: OCR paragraphs become text elements carrying their mean word confidence.
"""

from __future__ import annotations

import re
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from docroute.extractors.lines import parser_lines
from docroute.extractors.table_chars import fast_chars
from docroute.schemas import BBox, Element, ElementKind, PageContent, ParsedPage, Word
from docroute.schemas.targets import Table, TableCell

if TYPE_CHECKING:
    import pymupdf

NAME = "pymupdf"
_LIST_MARK = re.compile(r"^([•\-\u2022\u25aa*·]|\(?\d{1,2}[.)]|\(?[a-z][.)])\s")
MARGIN_SHARE = 0.06
MIN_RULINGS_FOR_TABLES = 4
TABLE_EDGE_MIN_LENGTH = 3.0  # find_tables' edge_min_length: a thinner rectangle is one line to it
MIN_FIGURE_SHARE = 0.01
# The offline layout model (pymupdf.layout) costs 0.3-0.9 s a page here against ~25 ms for the rest of
# the parse, so "auto" runs it only where cheap signals say the page holds something the block and
# ruled-table readers miss: a large picture, or heavy vector graphics with no ruled table found.
LAYOUT_MODEL_IMAGE_SHARE = 0.10
LAYOUT_MODEL_MIN_DRAWINGS = 40
LayoutModelMode = Literal["off", "auto", "on"]


@dataclass(frozen=True)
class _Block:
    words: tuple[Word, ...]

    @property
    def bbox(self) -> BBox:
        return BBox.enclosing([w.bbox for w in self.words])

    @property
    def text(self) -> str:
        return words_to_text(self.words)


def words_to_text(words: Iterable[Word]) -> str:
    """Words in reading order, one output line per (block, line)."""
    ordered = sorted(parser_lines(words), key=lambda ws: (min(w.bbox.y0 for w in ws), min(w.bbox.x0 for w in ws)))
    return "\n".join(" ".join(w.text for w in sorted(ws, key=lambda w: w.bbox.x0)) for ws in ordered)


class _Ids:
    def __init__(self, page_number: int):
        self.page_number = page_number
        self.counts: dict[str, int] = defaultdict(int)

    def next(self, kind: str) -> str:
        self.counts[kind] += 1
        return f"/page/{self.page_number}/{kind}/{self.counts[kind]}"


def _classify(block: _Block, body_size: float, page: PageContent) -> ElementKind:
    b = block.bbox
    text = block.text
    n_words = len(block.words)
    if n_words <= 12 and (b.y1 <= page.height * MARGIN_SHARE):
        return "header"
    if n_words <= 12 and (b.y0 >= page.height * (1 - MARGIN_SHARE)):
        return "footer"
    size = max((w.size or 0.0) for w in block.words)
    bold = any(w.bold for w in block.words)
    if n_words <= 12 and (size >= 1.25 * body_size or (bold and "\n" not in text and n_words <= 6)):
        return "title"
    if _LIST_MARK.match(text):
        return "list_item"
    return "text"


def _cell_edges(values: Sequence[float], tol: float = 2.0) -> list[float]:
    edges: list[float] = []
    for v in sorted(values):
        if not edges or v - edges[-1] > tol:
            edges.append(v)
    return edges


def _table_element(table, words: Sequence[Word], ids: _Ids, page_number: int) -> tuple[Element, set[int]]:
    """A table element whose cells' text comes from the words inside each cell's bbox.

    Spans come from the grid's cell edges; a cell's column is its place when the rows are walked left
    to right, skipping grid places that a span from an earlier row or cell covers (as HTML places it).
    """
    boxes = [c for row in table.rows for c in row.cells if c is not None]
    xs = _cell_edges([c[0] for c in boxes])
    ys = _cell_edges([c[1] for c in boxes])
    used: set[int] = set()
    taken: set[tuple[int, int]] = set()
    cells: list[TableCell] = []
    rows_text = []
    for r_no, row in enumerate(table.rows):
        texts, col = [], 0
        for c in row.cells:
            if c is None:
                continue
            cb = BBox(x0=c[0], y0=c[1], x1=c[2], y1=c[3])
            inside = [i for i, w in enumerate(words) if cb.x0 <= w.bbox.cx <= cb.x1 and cb.y0 <= w.bbox.cy <= cb.y1]
            used.update(inside)
            text = words_to_text(words[i] for i in inside).replace("\n", " ")
            colspan = 1 + sum(1 for x in xs if cb.x0 + 2 < x < cb.x1 - 2)
            rowspan = 1 + sum(1 for y in ys if cb.y0 + 2 < y < cb.y1 - 2)
            while (r_no, col) in taken:
                col += 1
            taken |= {(r_no + dr, col + dc) for dr in range(rowspan) for dc in range(colspan)}
            cells.append(TableCell(row=r_no, col=col, text=text, row_span=rowspan, col_span=colspan))
            col += colspan
            texts.append(text)
        rows_text.append(" | ".join(texts))
    b = table.bbox
    element = Element(
        element_id=ids.next("table"),
        page_number=page_number,
        kind="table",
        text="\n".join(rows_text),
        bbox=BBox(x0=b[0], y0=b[1], x1=b[2], y1=b[3]),
        confidence=1.0,
        source=f"{NAME}:find_tables",
        table=Table(n_rows=table.row_count, n_cols=table.col_count, cells=cells),
    )
    return element, used


def may_hold_grid(page: pymupdf.Page) -> bool:
    """Whether the page's vector graphics could give ``find_tables`` (lines strategy) a table of at
    least 2 rows and 2 columns.

    Such a table has cells at two different x and the second cell ends further right: three distinct
    x positions of vertical edges (and three y positions of horizontal ones). ``find_tables`` takes its
    edges from the line, rectangle and quad items of the page's paths, from the borders of the boxes
    enveloping neighbouring paths, and clips them to the page; snapping and joining only merge them.
    Every coordinate any of those can take is collected here (a superset: every item point, a thin
    rectangle's midline (as ``find_tables`` draws it), every path box, the page box where a path leaves it); fewer than three
    distinct values on either axis means no such table can come out. A rotated page is not judged
    (``find_tables`` derotates it first)."""
    if page.rotation:
        return True
    box = page.rect
    xs: set[float] = set()
    ys: set[float] = set()
    for path in page.get_cdrawings():
        rect = path.get("rect")
        if rect is None:
            return True
        x0, y0, x1, y1 = rect
        xs.update((x0, x1))
        ys.update((y0, y1))
        if x0 < box.x0 or x1 > box.x1:
            xs.update((box.x0, box.x1))
        if y0 < box.y0 or y1 > box.y1:
            ys.update((box.y0, box.y1))
        for item in path.get("items") or ():
            if item[0] == "re":
                a, b, c, d = item[1]
                xs.update((a, c))
                ys.update((b, d))
                if min(abs(c - a), abs(d - b)) <= TABLE_EDGE_MIN_LENGTH:  # thin: drawn as its midline
                    xs.add(abs(a + c) / 2)
                    ys.add(abs(b + d) / 2)
            else:
                for point in item[1:]:
                    if isinstance(point, tuple | list) and len(point) == 2:
                        xs.add(point[0])
                        ys.add(point[1])
                    elif isinstance(point, tuple | list):  # a quad: its four points
                        for q in point:
                            xs.add(q[0])
                            ys.add(q[1])
        if len(xs) >= 3 and len(ys) >= 3:
            return True
    return False


def _find_tables(page: pymupdf.Page, content: PageContent) -> list:
    rulings = sum(1 for d in content.drawings if d.kind in ("line", "rect"))
    if rulings < MIN_RULINGS_FOR_TABLES or not may_hold_grid(page):
        return []
    with fast_chars():
        found = page.find_tables(strategy="lines", use_layout=False)
    return [t for t in found.tables if t.row_count >= 2 and t.col_count >= 2]


def elements_from_words(
    words: Sequence[Word], content: PageContent, ids: _Ids, exclude: set[int], source: str
) -> list[Element]:
    sizes = [w.size for w in words if w.size]
    body = statistics.median(sizes) if sizes else 10.0
    blocks: dict[int, list[Word]] = defaultdict(list)
    for i, w in enumerate(words):
        if i not in exclude:
            blocks[w.block].append(w)
    out = []
    for ws in sorted(blocks.values(), key=lambda ws: (min(w.bbox.y0 for w in ws), min(w.bbox.x0 for w in ws))):
        block = _Block(tuple(ws))
        kind = _classify(block, body, content)
        out.append(
            Element(
                element_id=ids.next(kind),
                page_number=content.page_number,
                kind=kind,
                text=block.text,
                bbox=block.bbox,
                confidence=round(statistics.fmean(w.confidence for w in ws), 4),
                source=source,
            )
        )
    return out


def wants_layout_model(content: PageContent, tables_found: int, mode: LayoutModelMode) -> bool:
    if mode != "auto":
        return mode == "on"
    page_area = content.width * content.height or 1.0
    images = sum(b.area for b in content.image_boxes) / page_area
    return images >= LAYOUT_MODEL_IMAGE_SHARE or (len(content.drawings) >= LAYOUT_MODEL_MIN_DRAWINGS and not tables_found)


def layout_regions(page: pymupdf.Page) -> list[tuple[BBox, str]]:
    """Regions and labels (text, table, picture, ...) from PyMuPDF's offline layout model."""
    from docroute.extractors import pdf

    pdf.activate_layout_model()
    page.get_layout()
    return [(BBox(x0=r[0], y0=r[1], x1=r[2], y1=r[3]), str(r[4])) for r in (page.layout_information or [])]


def _model_elements(
    regions: list[tuple[BBox, str]], words: Sequence[Word], tables: list[Element], ids: _Ids, n: int
) -> tuple[list[Element], set[int], list[BBox]]:
    """Unruled tables and pictures the layout model found; returns elements, used words, picture boxes."""
    out, used, pictures = [], set(), []
    for box, label in regions:
        if label == "picture":
            pictures.append(box)
        elif label == "table" and not any(box.overlap_of(t.bbox) > 0.5 for t in tables):
            inside = [i for i, w in enumerate(words) if box.contains_point(w.bbox.cx, w.bbox.cy)]
            if not inside:
                continue
            used.update(inside)
            text = words_to_text(words[i] for i in inside)
            out.append(Element(element_id=ids.next("table"), page_number=n, kind="table", text=text, bbox=box,
                               confidence=0.8, source=f"{NAME}:layout_model",
                               meta={"n_rows": float(text.count("\n") + 1), "ruled": 0.0}))
    return out, used, pictures


def parse_page(
    page: pymupdf.Page | None, content: PageContent, words: tuple[Word, ...], *, ocr: bool,
    layout_model: LayoutModelMode = "auto",
) -> ParsedPage:
    """Elements of one page. ``words`` are the text-layer words, or OCR words for scans."""
    n = content.page_number
    ids = _Ids(n)
    elements: list[Element] = []
    used: set[int] = set()
    pictures: list[BBox] = []
    if not ocr and page is not None:
        for table in _find_tables(page, content):
            element, inside = _table_element(table, words, ids, n)
            elements.append(element)
            used |= inside
        if wants_layout_model(content, len(elements), layout_model):
            extra, inside, pictures = _model_elements(layout_regions(page), words, elements, ids, n)
            elements += extra
            used |= inside
    elements += elements_from_words(words, content, ids, used, f"{NAME}:ocr" if ocr else NAME)
    page_area = content.width * content.height
    for b in pictures:
        elements.append(Element(element_id=ids.next("figure"), page_number=n, kind="figure", text="", bbox=b,
                                confidence=0.8, source=f"{NAME}:layout_model"))
    if not ocr:
        for b in content.image_boxes:
            if any(b.overlap_of(p) > 0.5 for p in pictures):
                continue
            if b.area >= MIN_FIGURE_SHARE * page_area:
                elements.append(
                    Element(element_id=ids.next("figure"), page_number=n, kind="figure", text="", bbox=b,
                            confidence=1.0, source=NAME)
                )
    for b in content.ink_boxes:
        elements.append(
            Element(element_id=ids.next("handwriting"), page_number=n, kind="handwriting", text="", bbox=b,
                    confidence=1.0, source=f"{NAME}:ink")
        )
    elements.sort(key=lambda e: (e.bbox.y0, e.bbox.x0))
    return ParsedPage(
        page_number=n,
        width=content.width,
        height=content.height,
        has_text_layer=content.has_text_layer,
        parser=NAME,
        text=words_to_text(words),
        words=words,
        elements=tuple(elements),
        ocr_confidence=(statistics.fmean(w.confidence for w in words) if ocr and words else None),
    )
