"""The VLM stage: routed pages (or regions of them) go to the configured VLM backend.

With the default backend ``none`` nothing runs: routed pages get vlm_status ``unavailable`` and keep
their layout result, and the extraction is flagged ``vlm_unavailable``.

With a backend, the stage plans requests, renders their images itself (it reopens the document and
renders each page at the dpi that fits the pixel budget, cropping regions from that), sends them as
one batch, and turns the answers into values:

- Regions, by route reason: a complex table -> :class:`Table` (its HTML also replaces the table
  element's ``table_html``), a chart -> :class:`ChartData`, handwriting -> :class:`HandwrittenText`.
  The crop is the router's routed region when it gives one (``decision.regions``), else the page's
  table / figure / handwriting elements, else the whole page. Each becomes an extra Extraction.
- The document's own schema (an invoice page -> Invoice) goes to the VLM when a routed page's text could
  not be read (low OCR confidence), when the layout path read a field of it from a routed page, or
  when the layout path found no field at all. Its pages go in one call (up to ``vlm.max_pages``) so
  a schema spanning pages (line items continued on page 2) is read whole. Its fields come back with
  per-field confidence and are merged with the layout fields by :func:`validate.build_extraction`.

A backend that cannot load, or a call that fails, leaves the layout result in place, flagged with the
status (``vlm_failed``, ``vlm_timeout``...).
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from docroute.extractors.document import DocumentHandle
from docroute.extractors.vlm import VlmOptions, VlmRequest, VlmResult, get_backend
from docroute.schemas import BBox, Element, Extraction, FieldValue, PageResult
from docroute.schemas.targets import ChartData, HandwrittenText, Table, TargetSchema

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

REGION_TARGETS: dict[str, type[TargetSchema]] = {
    "complex_table": Table, "chart": ChartData, "handwriting": HandwrittenText,
}
ELEMENT_KINDS = {"complex_table": "table", "chart": "figure", "handwriting": "handwriting"}
HINTS = {
    "complex_table": "The image is a table cut from a page: give every cell with its row, column, spans "
                     "and whether it is a header cell; rows and columns count from 0.",
    "chart": "The image is a chart: give its type, title, axis titles and each series with its labels and values.",
    "handwriting": "The image holds handwriting: transcribe it line by line.",
}
CROP_MARGIN_PT = 12.0
UNKNOWN_CONFIDENCE = 0.5
# how bad a status is, for the status of a page covered by several requests
SEVERITY = {"not_routed": 0, "ok": 1, "invalid": 2, "truncated": 3, "timeout": 4, "failed": 5, "unavailable": 6}


@dataclass(frozen=True)
class VlmStageResult:
    pages: list[PageResult]
    status: str  # the document's VLM status: not_routed, unavailable, ok, truncated, invalid, timeout, failed
    fields: dict[str, FieldValue] = field(default_factory=dict)  # VLM values of the target schema's fields
    model: str | None = None
    extra: tuple[Extraction, ...] = ()  # other targets (tables, charts, handwriting) from routed regions
    raw: dict[str, Any] = field(default_factory=dict)  # the document-schema call: status, error, tokens, text


@dataclass(frozen=True)
class _Planned:
    kind: str  # "document" or a route reason with a region target
    schema: type[TargetSchema]
    page_numbers: tuple[int, ...]
    bbox: BBox | None = None  # None: whole pages
    element_id: str | None = None  # the element whose table_html a Table result replaces
    address: str | None = None


def _pad(b: BBox, page: PageResult) -> BBox:
    return BBox(x0=max(0.0, b.x0 - CROP_MARGIN_PT), y0=max(0.0, b.y0 - CROP_MARGIN_PT),
                x1=min(page.parsed.width, b.x1 + CROP_MARGIN_PT), y1=min(page.parsed.height, b.y1 + CROP_MARGIN_PT))


def _table_element(page: PageResult, box: BBox | None) -> Element | None:
    tables = [e for e in page.parsed.elements if e.kind == "table"]
    if not tables:
        return None
    if box is None:
        return max(tables, key=lambda e: (e.meta.get("spanning_cells", 0), e.bbox.area))
    best = max(tables, key=lambda e: e.bbox.intersection_area(box))
    return best if best.bbox.intersection_area(box) > 0 else None


def _region_requests(page: PageResult) -> tuple[list[_Planned], bool]:
    """Region requests of a routed page, and whether the page itself also needs the document schema."""
    n = page.page_number
    decision = page.decision
    routed_regions = [r for r in getattr(decision, "regions", ()) if getattr(r, "route", None) == "vlm"]
    scope = getattr(decision, "vlm_scope", "none")
    planned: list[_Planned] = []
    page_needed = "low_ocr_confidence" in decision.reasons
    if routed_regions and scope != "page":
        ink = [r for r in routed_regions if r.reason == "handwriting"]
        if ink:  # the handwriting of a page is read as one text, in reading order: one crop around it all
            box = BBox.enclosing([r.bbox for r in ink])
            planned.append(_Planned("handwriting", HandwrittenText, (n,), _pad(box, page), None,
                                    ",".join(r.address for r in ink)))
        for r in routed_regions:
            schema = REGION_TARGETS.get(r.reason)
            if schema is None:
                page_needed = True
                continue
            if r.reason == "handwriting":
                continue
            el = _table_element(page, r.bbox) if r.reason == "complex_table" else None
            planned.append(_Planned(r.reason, schema, (n,), _pad(r.bbox, page), el.element_id if el else None, r.address))
        return planned, page_needed
    for reason in decision.reasons:
        schema = REGION_TARGETS.get(reason)
        if schema is None:
            continue
        kind = ELEMENT_KINDS[reason]
        elements = [e for e in page.parsed.elements if e.kind == kind]
        if reason == "complex_table":
            spanning = [e for e in elements if e.meta.get("spanning_cells", 0) or e.meta.get("header_spanning_cells", 0)]
            for e in spanning or elements:
                planned.append(_Planned(reason, schema, (n,), _pad(e.bbox, page), e.element_id, e.element_id))
            if not elements:
                planned.append(_Planned(reason, schema, (n,)))
        elif reason == "chart" and elements:
            for e in elements:
                planned.append(_Planned(reason, schema, (n,), _pad(e.bbox, page), None, e.element_id))
        elif reason == "handwriting" and elements:
            box = BBox.enclosing([e.bbox for e in elements])
            planned.append(_Planned(reason, schema, (n,), _pad(box, page), None, f"/page/{n}/handwriting"))
        else:
            planned.append(_Planned(reason, schema, (n,)))
    return planned, page_needed


def plan(pages: Sequence[PageResult], schema: type[TargetSchema], layout_fields: dict[str, FieldValue] | None,
         max_pages: int) -> list[_Planned]:
    """Which calls the routed pages need (see the module docstring)."""
    routed = [p for p in pages if p.decision.route == "vlm"]
    planned: list[_Planned] = []
    needs_document = False
    for p in routed:
        regions, page_needed = _region_requests(p)
        planned += [r for r in regions if r.schema is not schema]
        needs_document |= page_needed or any(r.schema is schema for r in regions)
    routed_numbers = {p.page_number for p in routed}
    if layout_fields is None or not layout_fields:
        needs_document = True
    elif any(fv.page_number in routed_numbers for fv in layout_fields.values()):
        needs_document = True
    if needs_document:
        numbers = [p.page_number for p in pages] if len(pages) <= max_pages else sorted(routed_numbers)
        planned.insert(0, _Planned("document", schema, tuple(numbers[:max_pages])))
    return planned


def render_requests(doc: DocumentHandle, planned: Sequence[_Planned], max_pixels: int) -> list[tuple[Image.Image, ...]]:
    """Each request's pages (or crops) at the pixel budget, from the document's render cache."""
    return [tuple(doc.render_at_budget(n, max_pixels, req.bbox) for n in req.page_numbers) for req in planned]


def table_html(data: dict[str, Any]) -> str:
    """HTML of a Table result: header cells as <th>, spans as rowspan/colspan."""
    cells = sorted(data.get("cells") or [], key=lambda c: (c["row"], c["col"]))
    header_rows = int(data.get("header_rows") or 0)
    rows: dict[int, list[dict]] = {}
    for c in cells:
        rows.setdefault(int(c["row"]), []).append(c)
    out = []
    for r in sorted(rows):
        tds = []
        for c in rows[r]:
            tag = "th" if c.get("is_header") or r < header_rows else "td"
            attrs = (f' rowspan="{c["row_span"]}"' if c.get("row_span", 1) > 1 else "") + \
                    (f' colspan="{c["col_span"]}"' if c.get("col_span", 1) > 1 else "")
            tds.append(f"<{tag}{attrs}>{html.escape(str(c.get('text', '')))}</{tag}>")
        out.append("<tr>" + "".join(tds) + "</tr>")
    return "<table>" + "".join(out) + "</table>"


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


def _meta(result: VlmResult, req: _Planned) -> dict[str, Any]:
    return {
        "status": result.status, "error": result.error, "model": result.model, "pages": list(req.page_numbers),
        "region": None if req.bbox is None else {"bbox": req.bbox.model_dump(), "address": req.address,
                                                 "element_id": req.element_id},
        "prompt_tokens": result.prompt_tokens, "output_tokens": result.output_tokens,
        "latency_ms": result.latency_ms, "attempts": result.attempts, "image_pixels": result.image_pixels,
        "field_stats": result.field_stats, "raw_text": result.raw_text,
    }


def _worst(statuses: Sequence[str]) -> str:
    return max(statuses, key=lambda s: SEVERITY.get(s, 5)) if statuses else "not_routed"


def run_vlm_stage(
    doc: DocumentHandle, pages: list[PageResult], schema: type[TargetSchema], options: VlmOptions,
    layout_fields: dict[str, FieldValue] | None = None,
) -> VlmStageResult:
    routed = [p.page_number for p in pages if p.decision.route == "vlm"]
    if not routed:
        return VlmStageResult(pages=pages, status="not_routed")
    backend_name = options.resolved_backend()
    if backend_name == "none":
        result = get_backend("none").extract([], schema, prompt="")
        pages = [p.model_copy(update={"vlm_status": result.status}) if p.page_number in routed else p for p in pages]
        return VlmStageResult(pages=pages, status=result.status, model=result.model,
                              raw={"status": result.status, "error": options.why_none()})

    planned = plan(pages, schema, layout_fields, options.max_pages)
    try:
        backend = get_backend(backend_name, options)
        images = render_requests(doc, planned, options.max_pixels)
        requests = [VlmRequest(images=imgs, schema=req.schema, tag=req.address or req.kind,
                               prompt=_prompt(req, len(imgs))) for req, imgs in zip(planned, images, strict=True)]
        results = backend.extract_batch(requests)
    except Exception as exc:  # the layout result stays; the document says why the VLM did not help
        log.warning("VLM stage failed for %s: %s: %s", doc.source.path, type(exc).__name__, exc)
        error = f"{type(exc).__name__}: {exc}"
        pages = [p.model_copy(update={"vlm_status": "failed"}) if p.page_number in routed else p for p in pages]
        return VlmStageResult(pages=pages, status="failed", raw={"status": "failed", "error": error})
    return _assemble(pages, routed, schema, planned, results)


def _prompt(req: _Planned, n_images: int) -> str:
    from docroute.extractors.vlm.structured import build_prompt

    return build_prompt(req.schema, hint=HINTS.get(req.kind, ""), n_images=n_images)


def _assemble(pages: list[PageResult], routed: list[int], schema: type[TargetSchema],
              planned: Sequence[_Planned], results: Sequence[VlmResult]) -> VlmStageResult:
    from docroute.pipelines.validate import build_extraction

    per_page: dict[int, list[str]] = {n: [] for n in routed}
    fields: dict[str, FieldValue] = {}
    raw: dict[str, Any] = {}
    extra: list[Extraction] = []
    html_by_element: dict[str, str] = {}
    model = None
    for req, res in zip(planned, results, strict=True):
        model = model or res.model
        for n in req.page_numbers:
            if n in per_page:
                per_page[n].append(res.status)
        if req.kind == "document":
            fields = vlm_fields(res, schema, req.page_numbers)
            raw = _meta(res, req)
            continue
        rfields = vlm_fields(res, req.schema, req.page_numbers)
        if req.bbox is not None:
            rfields = {k: v.model_copy(update={"bbox": req.bbox}) for k, v in rfields.items()}
        meta = {"vlm_call": _meta(res, req)}
        if req.element_id:
            element = next((e for p in pages for e in p.parsed.elements if e.element_id == req.element_id), None)
            meta["layout_table_html"] = element.table_html if element else None
        extra.append(build_extraction(req.schema, {}, vlm_fields=rfields, routed_pages=req.page_numbers,
                                      vlm_status=res.status, model=res.model, raw_extra=meta))
        if req.schema is Table and res.status == "ok" and res.data and res.data.get("cells") and req.element_id:
            html_by_element[req.element_id] = table_html(res.data)  # the layout's HTML stays in raw_json
    new_pages = []
    for p in pages:
        if p.page_number in per_page:
            update: dict[str, Any] = {"vlm_status": _worst(per_page[p.page_number])}
            if any(e.element_id in html_by_element for e in p.parsed.elements):
                elements = tuple(e.model_copy(update={"table_html": html_by_element[e.element_id], "source": f"{e.source}+vlm"})
                                 if e.element_id in html_by_element else e for e in p.parsed.elements)
                update["parsed"] = p.parsed.model_copy(update={"elements": elements})
            p = p.model_copy(update=update)
        new_pages.append(p)
    status = raw.get("status") or _worst([s for ss in per_page.values() for s in ss])
    return VlmStageResult(pages=new_pages, status=status, fields=fields, model=model, extra=tuple(extra), raw=raw)
