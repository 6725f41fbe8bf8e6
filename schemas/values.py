"""The immutable values that flow between pipeline stages.

Coordinates are PDF points with a top-left origin (PyMuPDF's convention); for raster inputs one
point is one pixel at 72 dpi of the image's stated resolution, so a page always has a size in points.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from docroute.schemas.targets import Table

Status = Literal["ok", "partial", "failed"]
Route = Literal["layout", "vlm"]
VlmStatus = Literal["not_routed", "unavailable", "ok", "truncated", "invalid", "timeout", "failed"]
FieldSource = Literal["layout", "ocr", "vlm", "derived", "einvoice", "qr"]  # einvoice: embedded or bare XML; qr: a payment QR code
ElementKind = Literal[
    "title", "text", "list_item", "table", "figure", "header", "footer", "key_value", "handwriting", "other"
]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BBox(Frozen):
    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def width(self) -> float:
        return max(0.0, self.x1 - self.x0)

    @property
    def height(self) -> float:
        return max(0.0, self.y1 - self.y0)

    @property
    def area(self) -> float:
        return self.width * self.height

    @property
    def cx(self) -> float:
        return (self.x0 + self.x1) / 2

    @property
    def cy(self) -> float:
        return (self.y0 + self.y1) / 2

    def union(self, other: BBox) -> BBox:
        return BBox(
            x0=min(self.x0, other.x0), y0=min(self.y0, other.y0),
            x1=max(self.x1, other.x1), y1=max(self.y1, other.y1),
        )

    def intersection_area(self, other: BBox) -> float:
        w = min(self.x1, other.x1) - max(self.x0, other.x0)
        h = min(self.y1, other.y1) - max(self.y0, other.y0)
        return w * h if w > 0 and h > 0 else 0.0

    def overlap_of(self, other: BBox) -> float:
        """Share of *this* box covered by ``other`` (0..1)."""
        return self.intersection_area(other) / self.area if self.area else 0.0

    def contains_point(self, x: float, y: float) -> bool:
        return self.x0 <= x <= self.x1 and self.y0 <= y <= self.y1

    def scaled(self, factor: float) -> BBox:
        return BBox(x0=self.x0 * factor, y0=self.y0 * factor, x1=self.x1 * factor, y1=self.y1 * factor)

    @classmethod
    def enclosing(cls, boxes: list[BBox]) -> BBox:
        out = boxes[0]
        if len(boxes) == 1:
            return out
        return BBox(x0=min(b.x0 for b in boxes), y0=min(b.y0 for b in boxes),  # one box, not one per union
                    x1=max(b.x1 for b in boxes), y1=max(b.y1 for b in boxes))


class Word(Frozen):
    """One word of a page, from the PDF text layer or from OCR."""

    text: str
    bbox: BBox
    confidence: float = Field(ge=0.0, le=1.0)
    block: int = 0
    line: int = 0
    font: str | None = None
    size: float | None = None
    bold: bool = False  # the font of the word's line is bold, by its name (pdf._bold); OCR words: False
    source: Literal["pdf", "ocr"] = "pdf"


class Drawing(Frozen):
    """One vector path of a page, simplified to what the detectors need."""

    kind: Literal["line", "rect", "curve", "other"]
    bbox: BBox
    filled: bool = False


class PageContent(Frozen):
    """What the page reader found on a page before any layout parsing."""

    page_number: int
    width: float
    height: float
    has_text_layer: bool
    words: tuple[Word, ...] = ()
    image_boxes: tuple[BBox, ...] = ()
    ink_boxes: tuple[BBox, ...] = ()
    ink_strokes: int = 0
    drawings: tuple[Drawing, ...] = ()
    native_dpi: float = 72.0
    page_image: bool = False  # one image covers the page (a scan or a photo): its pixels are the page
    native_gray: bool = False  # the page image is single-channel: render it gray for OCR
    ocr_confidence: float | None = None


class Element(Frozen):
    """A layout element. ``element_id`` is a stable address such as ``/page/3/table/2``."""

    element_id: str
    page_number: int
    kind: ElementKind
    text: str
    bbox: BBox
    confidence: float = Field(ge=0.0, le=1.0)
    source: str
    table: Table | None = None  # a table element's cells; the sink writes them as table_html
    meta: dict[str, float] = Field(default_factory=dict)  # engine facts, e.g. n_rows, ruled


class Document(Frozen):
    doc_id: str
    source_path: str
    file_name: str
    mime_type: str
    size_bytes: int
    n_pages: int


class DocumentType(Frozen):
    """What kind of document it is (extractors/doctype.py), how sure, and the counts it decided on."""

    kind: Literal["invoice", "receipt", "other"]
    confidence: float = Field(ge=0.0, le=1.0)
    evidence: dict[str, float] = Field(default_factory=dict)


RegionKind = Literal["handwriting", "table", "chart", "text"]


class Region(Frozen):
    """A candidate region from a page detector (extractors/detect): what, where, how strong, and why."""

    kind: RegionKind
    bbox: BBox
    score: float = Field(ge=0.0, le=1.0)
    evidence: dict[str, float] = Field(default_factory=dict)
    source: str = ""  # detector and cue, e.g. "handwriting:ink_annotation"
    note: str = ""  # the evidence in words


class RoutedRegion(Region):
    """A candidate region with the policy's decision on it.

    ``address`` is stable for a given file and policy version: ``p3/table/2`` (page, kind, rank in
    reading order); prefix the doc_id for a global address, ``<doc_id>/p3/table/2``.
    """

    address: str
    reason: str  # the routing reason this region is evidence for: handwriting, complex_table, ...
    route: Route
    why: str = ""


class RouteDecision(Frozen):
    route: Route
    reasons: tuple[str, ...] = ()
    scores: dict[str, float] = Field(default_factory=dict)
    explanation: str = ""
    policy_version: str
    regions: tuple[RoutedRegion, ...] = ()  # every candidate region, routed or not, with why
    vlm_scope: Literal["none", "regions", "page"] = "none"  # what the VLM stage sends: crops or the page


class ParsedPage(Frozen):
    """What a layout parser read from one page: words (text layer or OCR) and elements."""

    page_number: int
    width: float
    height: float
    has_text_layer: bool
    parser: str
    text: str
    words: tuple[Word, ...] = ()
    elements: tuple[Element, ...] = ()
    ocr_confidence: float | None = None
    # OCR pages: the box that carries the page's print (extractors/ocr.ink_box, in points); a till receipt
    # scanned on a full sheet is a narrow strip inside a wide page (extractors/doctype.py reads its shape)
    print_box: BBox | None = None


class PageSignals(Frozen):
    """What the detectors measured on a page (extractors/detect), read by the routing policy and stored as
    the ``pages.signals`` map (names as here; a signal that does not apply to the page is left out)."""

    page_width: float = 0.0
    page_height: float = 0.0
    has_text_layer: float = 1.0
    words: float = 0.0
    image_coverage: float = 0.0  # share of the page under images
    drawings: float = 0.0
    filled_squares: float = 0.0  # filled, about square drawings: a vector QR code is one or is made of them
    ink_annotations: float = 0.0
    ink_unexplained: float = 0.0  # ink annotations no text-layer word explains
    ink_strokes: float = 0.0
    tables: float = 0.0
    table_spanning_cells: float = 0.0  # the most spanning cells of one table
    table_header_spanning_cells: float = 0.0
    chart_axes: float = 0.0
    chart_ticks: float = 0.0
    chart_marks: float = 0.0
    chart_numeric_share: float | None = None
    chart_score: float = 0.0
    ocr_words: float | None = None  # page images only, from here on
    ocr_mean_conf: float | None = None
    ocr_p10_conf: float | None = None
    ocr_unread_print: float | None = None  # share of text-sized print ink that OCR left unread
    ink_share: float | None = None
    ink_outside_words: float | None = None
    table_regions: float = 0.0
    table_score_max: float = 0.0
    chart_regions: float = 0.0
    chart_score_max: float = 0.0
    handwriting_regions: float = 0.0
    handwriting_score_max: float = 0.0
    detect_ms: float = 0.0

    def as_map(self) -> dict[str, float]:
        """The signals that apply to the page, as the ``pages.signals`` column holds them."""
        return self.model_dump(exclude_none=True)


class PageResult(Frozen):
    """A parsed page with its signals, its route decision and what the VLM stage did with it."""

    parsed: ParsedPage
    signals: PageSignals = PageSignals()
    decision: RouteDecision
    vlm_status: VlmStatus = "not_routed"
    duration_ms: float = 0.0
    # what drew the page: MuPDF, or poppler where MuPDF failed on it (extractors/poppler.py), and why
    renderer: Literal["pymupdf", "poppler"] | None = None
    renderer_note: str | None = None

    @property
    def page_number(self) -> int:
        return self.parsed.page_number


class FieldValue(Frozen):
    """One extracted value with where it came from and how sure we are."""

    name: str
    value: Any = None
    confidence: float = Field(ge=0.0, le=1.0)
    source: FieldSource
    page_number: int | None = None
    bbox: BBox | None = None
    raw_text: str | None = None


class Extraction(Frozen):
    """A document extracted into one target schema, validated, with review flags."""

    schema_name: str
    schema_version: str
    data: dict[str, Any]
    fields: dict[str, FieldValue] = Field(default_factory=dict)
    needs_review: bool = False
    review_reasons: tuple[str, ...] = ()
    validation_errors: tuple[str, ...] = ()
    model: str | None = None
    raw_json: str = "{}"


class Redaction(Frozen):
    """PII that was redacted: which kind, in which table and column, where, and how many times."""

    kind: str  # email, phone, iban, card, ssn
    table: str  # pages, elements, extractions/<schema>
    column: str  # text, table_html, a field name, raw_json, field_provenance.raw_text
    page_number: int | None = None
    ref: str | None = None  # element_id, or the field's path such as line_items[2].description
    count: int = 1


class DocumentResult(Frozen):
    """Everything one document produced. A failed document carries its error and no pages."""

    document: Document
    status: Status
    error: str | None = None
    pages: tuple[PageResult, ...] = ()
    extractions: tuple[Extraction, ...] = ()
    processed_at: datetime
    duration_ms: float = 0.0
    pipeline_version: str
    redactions: tuple[Redaction, ...] | None = None  # None: redaction was off; () on and nothing found
    document_type: DocumentType | None = None  # None: not classified (a failed document)
