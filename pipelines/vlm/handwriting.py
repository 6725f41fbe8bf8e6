"""Handwriting -> :class:`HandwrittenText`. A page's handwriting is read as one text in reading order:
one crop around all its routed ink regions (else around its handwriting elements, else the page). The
answer becomes an extra ``handwriting`` Extraction."""

from __future__ import annotations

from collections.abc import Sequence

from docroute.pipelines.vlm.base import RegionProcessor, Request
from docroute.schemas import BBox, PageResult, RoutedRegion
from docroute.schemas.targets import HandwrittenText


class HandwritingProcessor(RegionProcessor):
    reason = "handwriting"
    element_kind = "handwriting"
    schema = HandwrittenText
    hint = "The image holds handwriting: transcribe it line by line."

    def crops(self, page: PageResult, regions: Sequence[RoutedRegion]) -> list[Request]:
        if not regions:
            return []
        box = BBox.enclosing([r.bbox for r in regions])
        return [self.request(page, box, None, ",".join(r.address for r in regions))]

    def fallback(self, page: PageResult) -> list[Request]:
        elements = [e for e in page.parsed.elements if e.kind == self.element_kind]
        if not elements:
            return [self.request(page)]
        box = BBox.enclosing([e.bbox for e in elements])
        return [self.request(page, box, None, f"/page/{page.page_number}/handwriting")]


PROCESSOR = HandwritingProcessor()
