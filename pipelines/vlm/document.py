"""The document's own schema (an invoice page -> :class:`Invoice`): whole pages, one call.

Crop rule: the document goes to the VLM when a routed page asks for it (its text could not be read: low
OCR confidence; the layout path's fields read from it are doubtful: ``extraction_low_confidence``, policy
v3; or a routed region has no processor of its own or targets the document's schema), when
the layout path read a field of it from a routed page, or when the layout path found no field at all.
Its pages go in one call (all of them when they fit ``vlm.max_pages``, else the routed ones, up to
that many), so a schema spanning pages (line items continued on page 2) is read whole.

Merge rule: its fields come back with per-field confidence and are merged with the layout fields by
:func:`validate.build_extraction` (in ``process_document``); the call's metadata goes to raw_json.
"""

from __future__ import annotations

from collections.abc import Sequence

from docroute.extractors.vlm import VlmResult
from docroute.pipelines.vlm.base import Merged, Request, call_meta, vlm_fields
from docroute.schemas import FieldValue, PageResult
from docroute.schemas.targets import TargetSchema

KIND = "document"


class DocumentProcessor:
    kind = KIND
    hint = ""

    def __init__(self, schema: type[TargetSchema]):
        self.schema = schema

    def request(self, pages: Sequence[PageResult], asked: bool, layout_fields: dict[str, FieldValue] | None,
                max_pages: int) -> Request | None:
        """The document call, or None. ``asked``: a routed page needs the document schema."""
        routed = {p.page_number for p in pages if p.decision.route == "vlm"}
        needed = asked or not layout_fields or any(fv.page_number in routed for fv in layout_fields.values())
        if not needed:
            return None
        numbers = [p.page_number for p in pages] if len(pages) <= max_pages else sorted(routed)
        return Request(KIND, self.schema, tuple(numbers[:max_pages]))

    def merge(self, req: Request, result: VlmResult, pages: Sequence[PageResult]) -> Merged:
        return Merged(fields=vlm_fields(result, self.schema, req.page_numbers), raw=call_meta(result, req))
