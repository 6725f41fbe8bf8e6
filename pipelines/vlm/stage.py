"""The VLM stage: routed pages (or regions of them) go to the configured VLM backend.

With the default backend ``none`` nothing runs: routed pages get vlm_status ``unavailable`` and keep
their layout result, and the extraction is flagged ``vlm_unavailable``.

With a backend, the stage plans requests by asking each processor (one module per routed region kind,
registered in :data:`PROCESSORS`, plus the document's own schema, :mod:`.document`), takes each
request's pixels from one ``render`` callable (by default the document handle's render cache,
:mod:`.render`), sends them as one batch, and hands each
answer back to the processor that asked for it. A routed page's regions are cropped by their
processors when the router gave regions (``decision.regions``, scope ``regions``); otherwise each
route reason's processor crops from the page's layout elements.

A backend that cannot load, or a call that fails, leaves the layout result in place, flagged with the
status (``vlm_failed``, ``vlm_timeout``...).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from docroute.extractors.document import DocumentHandle
from docroute.extractors.vlm import VlmOptions, VlmRequest, VlmResult, get_backend
from docroute.pipelines.route import ESCALATION
from docroute.pipelines.vlm import chart, handwriting, table
from docroute.pipelines.vlm.base import Merged, RegionProcessor, Request
from docroute.pipelines.vlm.document import DocumentProcessor
from docroute.pipelines.vlm.render import Render, handle_renderer
from docroute.schemas import Extraction, FieldValue, PageResult
from docroute.schemas.targets import TargetSchema

log = logging.getLogger(__name__)

# The region processors, in the order a page's requests are made. A new kind: one module, one entry.
PROCESSORS: tuple[RegionProcessor, ...] = (handwriting.PROCESSOR, table.PROCESSOR, chart.PROCESSOR)
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


def page_requests(page: PageResult) -> tuple[list[Request], bool]:
    """Region requests of a routed page, and whether the page itself also needs the document schema."""
    by_reason = {p.reason: p for p in PROCESSORS}
    decision = page.decision
    routed = [r for r in decision.regions if r.route == "vlm"]
    needs_page = bool({"low_ocr_confidence", ESCALATION} & set(decision.reasons))  # the page's fields, read again
    if routed and decision.vlm_scope != "page":
        needs_page |= any(r.reason not in by_reason for r in routed)
        return [req for p in PROCESSORS for req in p.crops(page, [r for r in routed if r.reason == p.reason])], needs_page
    return [req for reason in decision.reasons if reason in by_reason for req in by_reason[reason].fallback(page)], needs_page


def plan(pages: Sequence[PageResult], schema: type[TargetSchema], layout_fields: dict[str, FieldValue] | None,
         max_pages: int, document_call: bool = True) -> list[Request]:
    """Which calls the routed pages need: the document call first (when needed), then the regions.

    A region whose target is the document's own schema is read by the document call instead.
    ``document_call`` False: the schema does not apply to the document (a letter is no invoice), so it
    is never asked for; its regions (tables, charts, handwriting) still are.
    """
    planned: list[Request] = []
    asked = False
    for p in pages:
        if p.decision.route != "vlm":
            continue
        regions, needs_page = page_requests(p)
        planned += [r for r in regions if r.schema is not schema]
        asked |= needs_page or any(r.schema is schema for r in regions)
    document = DocumentProcessor(schema).request(pages, asked, layout_fields, max_pages) if document_call else None
    return [document, *planned] if document else planned


def _processor(req: Request, schema: type[TargetSchema]) -> RegionProcessor | DocumentProcessor:
    return next((p for p in PROCESSORS if p.reason == req.kind), None) or DocumentProcessor(schema)


def prompt(req: Request, schema: type[TargetSchema], n_images: int) -> str:
    """The prompt of a request: its schema with its processor's hint (``schema``: the document's)."""
    from docroute.extractors.vlm.structured import build_prompt

    return build_prompt(req.schema, hint=_processor(req, schema).hint, n_images=n_images)


def _worst(statuses: Sequence[str]) -> str:
    return max(statuses, key=lambda s: SEVERITY.get(s, 5)) if statuses else "not_routed"


def run_vlm_stage(
    doc: DocumentHandle, pages: list[PageResult], schema: type[TargetSchema], options: VlmOptions,
    layout_fields: dict[str, FieldValue] | None = None, render: Render | None = None, document_call: bool = True,
) -> VlmStageResult:
    """``render(page_number, bbox, max_pixels)`` gives the pixels; by default from ``doc``'s render cache."""
    routed = [p.page_number for p in pages if p.decision.route == "vlm"]
    if not routed:
        return VlmStageResult(pages=pages, status="not_routed")
    backend_name = options.resolved_backend()
    if backend_name == "none":
        result = get_backend("none").extract([], schema, prompt="")
        pages = [p.model_copy(update={"vlm_status": result.status}) if p.page_number in routed else p for p in pages]
        return VlmStageResult(pages=pages, status=result.status, model=result.model,
                              raw={"status": result.status, "error": options.why_none()})

    planned = plan(pages, schema, layout_fields, options.max_pages, document_call)
    draw = render if render is not None else handle_renderer(doc)
    try:
        backend = get_backend(backend_name, options)
        images = [tuple(draw(n, req.bbox, options.max_pixels) for n in req.page_numbers) for req in planned]
        requests = [VlmRequest(images=imgs, schema=req.schema, tag=req.address or req.kind,
                               prompt=prompt(req, schema, len(imgs)))
                    for req, imgs in zip(planned, images, strict=True)]
        results = backend.extract_batch(requests)
    except Exception as exc:  # the layout result stays; the document says why the VLM did not help
        log.warning("VLM stage failed for %s: %s: %s", doc.source.path, type(exc).__name__, exc)
        error = f"{type(exc).__name__}: {exc}"
        pages = [p.model_copy(update={"vlm_status": "failed"}) if p.page_number in routed else p for p in pages]
        return VlmStageResult(pages=pages, status="failed", raw={"status": "failed", "error": error})
    return assemble(pages, routed, schema, planned, results)


def assemble(pages: list[PageResult], routed: list[int], schema: type[TargetSchema],
             planned: Sequence[Request], results: Sequence[VlmResult]) -> VlmStageResult:
    """Each answer to its processor's merge rule; the pages get their VLM status and element updates."""
    per_page: dict[int, list[str]] = {n: [] for n in routed}
    fields: dict[str, FieldValue] = {}
    raw: dict[str, Any] = {}
    extra: list[Extraction] = []
    updates: dict[str, dict[str, Any]] = {}
    model = None
    for req, res in zip(planned, results, strict=True):
        model = model or res.model
        for n in req.page_numbers:
            if n in per_page:
                per_page[n].append(res.status)
        merged: Merged = _processor(req, schema).merge(req, res, pages)
        if merged.fields is not None:
            fields = merged.fields
        if merged.raw is not None:
            raw = merged.raw
        if merged.extraction is not None:
            extra.append(merged.extraction)
        updates |= merged.elements
    new_pages = []
    for p in pages:
        if p.page_number in per_page:
            update: dict[str, Any] = {"vlm_status": _worst(per_page[p.page_number])}
            if any(e.element_id in updates for e in p.parsed.elements):
                elements = tuple(e.model_copy(update=updates[e.element_id]) if e.element_id in updates else e
                                 for e in p.parsed.elements)
                update["parsed"] = p.parsed.model_copy(update={"elements": elements})
            p = p.model_copy(update=update)
        new_pages.append(p)
    status = raw.get("status") or _worst([s for ss in per_page.values() for s in ss])
    return VlmStageResult(pages=new_pages, status=status, fields=fields, model=model, extra=tuple(extra), raw=raw)
