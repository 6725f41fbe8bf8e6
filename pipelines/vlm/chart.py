"""Charts -> :class:`ChartData`, one crop per routed chart region (else per figure element, else the
page); the answer becomes an extra ``chart`` Extraction."""

from __future__ import annotations

from docroute.pipelines.vlm.base import RegionProcessor
from docroute.schemas.targets import ChartData


class ChartProcessor(RegionProcessor):
    reason = "chart"
    element_kind = "figure"
    schema = ChartData
    hint = "The image is a chart: give its type, title, axis titles and each series with its labels and values."


PROCESSOR = ChartProcessor()
