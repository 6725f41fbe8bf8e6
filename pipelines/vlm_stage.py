"""The VLM stage: routed pages (or regions) go to the configured VLM backend.

With the default backend ``none`` nothing runs: routed pages get vlm_status ``unavailable`` and keep
their layout result, and the extraction is flagged ``vlm_unavailable``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from docroute.extractors.vlm import get_backend
from docroute.pipelines.ingest import SourceFile
from docroute.pipelines.settings import Settings
from docroute.schemas import Extraction, FieldValue, PageResult
from docroute.schemas.targets import TargetSchema


@dataclass(frozen=True)
class VlmStageResult:
    pages: list[PageResult]
    status: str  # the document's VLM status: not_routed, unavailable, ok, truncated, invalid, timeout, failed
    fields: dict[str, FieldValue] = field(default_factory=dict)  # VLM values of the target schema's fields
    model: str | None = None
    extra: tuple[Extraction, ...] = ()  # other targets (tables, charts, handwriting) from routed regions


def run_vlm_stage(src: SourceFile, pages: list[PageResult], schema: type[TargetSchema], settings: Settings) -> VlmStageResult:
    routed = [p.page_number for p in pages if p.decision.route == "vlm"]
    if not routed:
        return VlmStageResult(pages=pages, status="not_routed")
    backend = get_backend(settings.vlm_backend)
    result = backend.extract([], schema, prompt="")
    pages = [p.model_copy(update={"vlm_status": result.status}) if p.page_number in routed else p for p in pages]
    return VlmStageResult(pages=pages, status=result.status, model=result.model)
