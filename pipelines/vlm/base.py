"""What every VLM processor shares: the request it plans, what its answer changes, and the helpers that
turn a backend result into values.

A processor owns one kind of request: its target schema, its prompt hint, its crop rule (which pages
or boxes to send) and its merge rule (what the answer changes). The region processors (complex table,
chart, handwriting) subclass :class:`RegionProcessor`; the document's own schema is
:mod:`docroute.pipelines.vlm.document`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from docroute.extractors.vlm import VlmResult
from docroute.schemas import BBox, Element, Extraction, FieldValue, PageResult, RoutedRegion
from docroute.schemas.targets import TargetSchema

CROP_MARGIN_PT = 12.0
UNKNOWN_CONFIDENCE = 0.5


@dataclass(frozen=True)
class Request:
    kind: str  # "document" or the route reason of a region processor
    schema: type[TargetSchema]
    page_numbers: tuple[int, ...]
    bbox: BBox | None = None  # None: whole pages
    element_id: str | None = None  # the layout element the answer is about (a table it replaces)
    address: str | None = None


@dataclass(frozen=True)
class Merged:
    """What one answer changes: the document's fields, an extra extraction, element updates."""

    fields: dict[str, FieldValue] | None = None  # the document schema's VLM values (document processor)
    raw: dict[str, Any] | None = None  # the document call's metadata (document processor)
    extraction: Extraction | None = None  # a region target (table, chart, handwriting)
    elements: dict[str, dict[str, Any]] = field(default_factory=dict)  # element_id -> model_copy update


def pad(b: BBox, page: PageResult) -> BBox:
    return BBox(x0=max(0.0, b.x0 - CROP_MARGIN_PT), y0=max(0.0, b.y0 - CROP_MARGIN_PT),
                x1=min(page.parsed.width, b.x1 + CROP_MARGIN_PT), y1=min(page.parsed.height, b.y1 + CROP_MARGIN_PT))


def vlm_fields(result: VlmResult, schema: type[TargetSchema], page_numbers: Sequence[int]) -> dict[str, FieldValue]:
    """The VLM's values as FieldValues with source ``vlm`` and the model's confidence."""
    if result.data is None:
        return {}
    page = page_numbers[0] if len(page_numbers) == 1 else None
    out = {}
    for name, value in result.data.items():
        if name not in schema.model_fields:
            continue
        conf = result.field_confidence.get(name, UNKNOWN_CONFIDENCE)
        raw = json.dumps(value, default=str, ensure_ascii=False) if not isinstance(value, str) else value
        out[name] = FieldValue(name=name, value=value, confidence=min(1.0, max(0.0, conf)), source="vlm",
                               page_number=page, raw_text=raw)
    return out


def call_meta(result: VlmResult, req: Request) -> dict[str, Any]:
    """What a call did, for raw_json: status, error, model, pages, region, tokens, timing, raw text."""
    return {
        "status": result.status, "error": result.error, "model": result.model, "pages": list(req.page_numbers),
        "region": None if req.bbox is None else {"bbox": req.bbox.model_dump(), "address": req.address,
                                                 "element_id": req.element_id},
        "prompt_tokens": result.prompt_tokens, "output_tokens": result.output_tokens,
        "latency_ms": result.latency_ms, "attempts": result.attempts, "image_pixels": result.image_pixels,
        "field_stats": result.field_stats, "raw_text": result.raw_text,
    }


class RegionProcessor:
    """A routed region kind. Subclasses set the class attributes and override the rules they change.

    - crop rule: :meth:`crops` (from the router's routed regions of this reason) and :meth:`fallback`
      (from the page's layout elements when the decision gives no regions, or scope ``page``);
    - merge rule: :meth:`merge`; by default the answer becomes an extra Extraction of ``schema``.
    """

    reason: ClassVar[str]  # the route reason it serves: complex_table, chart, handwriting
    element_kind: ClassVar[str]  # the layout elements it crops when the decision gives no regions
    schema: ClassVar[type[TargetSchema]]
    hint: ClassVar[str]

    def request(self, page: PageResult, bbox: BBox | None = None, element_id: str | None = None,
                address: str | None = None) -> Request:
        return Request(self.reason, self.schema, (page.page_number,), None if bbox is None else pad(bbox, page),
                       element_id, address)

    def crops(self, page: PageResult, regions: Sequence[RoutedRegion]) -> list[Request]:
        """One crop per routed region."""
        return [self.request(page, r.bbox, None, r.address) for r in regions]

    def fallback(self, page: PageResult) -> list[Request]:
        """One crop per element of ``element_kind``; the whole page when there is none."""
        elements = [e for e in page.parsed.elements if e.kind == self.element_kind]
        return [self.request(page, e.bbox, None, e.element_id) for e in elements] or [self.request(page)]

    def extraction(self, req: Request, result: VlmResult, meta: dict[str, Any] | None = None) -> Extraction:
        from docroute.pipelines.validate import build_extraction

        rfields = vlm_fields(result, req.schema, req.page_numbers)
        if req.bbox is not None:
            rfields = {k: v.model_copy(update={"bbox": req.bbox}) for k, v in rfields.items()}
        return build_extraction(req.schema, {}, vlm_fields=rfields, routed_pages=req.page_numbers,
                                vlm_status=result.status, model=result.model,
                                raw_extra={"vlm_call": call_meta(result, req)} | (meta or {}))

    def merge(self, req: Request, result: VlmResult, pages: Sequence[PageResult]) -> Merged:
        return Merged(extraction=self.extraction(req, result))


def find_element(pages: Sequence[PageResult], element_id: str | None) -> Element | None:
    return next((e for p in pages for e in p.parsed.elements if e.element_id == element_id), None)
