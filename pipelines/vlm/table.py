"""Complex tables -> :class:`Table`: the answer replaces the layout element's table.

Crop rule: each routed table region, padded, tied to the layout table element it overlaps most. Without
routed regions: the page's tables that have spanning cells (all its tables when none has), else the
whole page. Merge rule: an extra ``table`` Extraction (the layout's HTML of the element stays in its
raw_json as ``layout_table_html``); an answer with cells also replaces the element's ``table``, so the
elements table's ``table_html`` is the VLM's, written by the same :meth:`Table.html`.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError

from docroute.extractors.detect.tables import spanning_cells
from docroute.extractors.vlm import VlmResult
from docroute.pipelines.vlm.base import Merged, RegionProcessor, Request, find_element
from docroute.schemas import BBox, Element, PageResult, RoutedRegion
from docroute.schemas.targets import Table


def _spans(e: Element) -> int:
    return spanning_cells(e.table)[0] if e.table is not None else 0


def table_element(page: PageResult, box: BBox | None) -> Element | None:
    """The layout table a box shows (most overlap); without a box, the one with the most spans."""
    tables = [e for e in page.parsed.elements if e.kind == "table"]
    if not tables:
        return None
    if box is None:
        return max(tables, key=lambda e: (_spans(e), e.bbox.area))
    best = max(tables, key=lambda e: e.bbox.intersection_area(box))
    return best if best.bbox.intersection_area(box) > 0 else None


class TableProcessor(RegionProcessor):
    reason = "complex_table"
    element_kind = "table"
    schema = Table
    hint = ("The image is a table cut from a page: give every cell with its row, column, spans "
            "and whether it is a header cell; rows and columns count from 0.")

    def crops(self, page: PageResult, regions: Sequence[RoutedRegion]) -> list[Request]:
        out = []
        for r in regions:
            el = table_element(page, r.bbox)
            out.append(self.request(page, r.bbox, el.element_id if el else None, r.address))
        return out

    def fallback(self, page: PageResult) -> list[Request]:
        elements = [e for e in page.parsed.elements if e.kind == self.element_kind]
        spanning = [e for e in elements if _spans(e)]
        return [self.request(page, e.bbox, e.element_id, e.element_id) for e in spanning or elements] or [self.request(page)]

    def merge(self, req: Request, result: VlmResult, pages: Sequence[PageResult]) -> Merged:
        meta = {}
        if req.element_id:
            element = find_element(pages, req.element_id)
            meta["layout_table_html"] = element.table.html() if element and element.table else None
        merged = Merged(extraction=self.extraction(req, result, meta))
        if not (result.status == "ok" and result.data and result.data.get("cells") and req.element_id):
            return merged
        try:
            table = Table.model_validate(result.data)
        except ValidationError:
            return merged
        element = find_element(pages, req.element_id)
        if element is None:
            return merged
        return Merged(extraction=merged.extraction,
                      elements={req.element_id: {"table": table, "source": f"{element.source}+vlm"}})


PROCESSOR = TableProcessor()
