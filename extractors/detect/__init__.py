"""Page detectors for the router: candidate regions (bbox, kind, score, evidence) and page signals.

One module per detector, each a pure function of what the page reader and the parser produced (plus,
for page images, the rendered pixels):

- ``tables``: complex tables (spanning cells, nested headers) among every table on the page;
- ``charts``: vector axes with marks, raster figures and page images that look like charts;
- ``handwriting``: ink annotations, pen strokes, signature images; on page images, unread ink not
  laid out like print;
- ``ocr_quality``: OCR word confidence and print that OCR left unread.

``detect_page`` runs them all and returns the candidate regions with page-level signals (plain
floats, so that pages.signals stays a map<string, double>). Cheap checks run first; pixels of a
digital page are rendered only for figures and small images that pass a geometry test.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from docroute.extractors.detect.charts import RenderClip, chart_regions, chart_signals
from docroute.extractors.detect.handwriting import handwriting_regions
from docroute.extractors.detect.ocr_quality import ocr_region, ocr_signals
from docroute.extractors.detect.raster import analyse_ink
from docroute.extractors.detect.tables import spanning_cells, table_regions
from docroute.schemas import PageContent, PageSignals, ParsedPage, Region, Word

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["Detection", "chart_signals", "detect_page", "ink_signals", "ocr_signals", "table_signals"]


@dataclass(frozen=True)
class Detection:
    signals: PageSignals
    regions: tuple[Region, ...]


def ink_signals(content: PageContent, words: Sequence[Word]) -> dict[str, float]:
    """PDF ink annotations that no text-layer word explains."""
    unexplained = 0
    for box in content.ink_boxes:
        covered = sum(box.intersection_area(w.bbox) for w in words)
        if box.area and covered / box.area < 0.3:
            unexplained += 1
    return {"ink_annotations": float(len(content.ink_boxes)), "ink_unexplained": float(unexplained),
            "ink_strokes": float(content.ink_strokes)}


def table_signals(parsed: ParsedPage) -> dict[str, float]:
    """Tables on the page, and the most (header) spanning cells of one of them, from its typed cells."""
    tables = [e for e in parsed.elements if e.kind == "table"]
    counts = [spanning_cells(e.table) for e in tables if e.table is not None]
    spanning = max((n for n, _ in counts), default=0)
    header_spans = max((h for _, h in counts), default=0)
    return {"tables": float(len(tables)), "table_spanning_cells": float(spanning),
            "table_header_spanning_cells": float(header_spans)}


def detect_page(content: PageContent, parsed: ParsedPage, image: Image.Image | None = None,
                dpi: float | None = None, render: RenderClip | None = None) -> Detection:
    """All detectors on one page. ``render(bbox, dpi)`` renders part of a digital page (optional)."""
    t0 = time.perf_counter()
    words = parsed.words
    page_area = content.width * content.height or 1.0
    signals: PageSignals = {
        "page_width": content.width,
        "page_height": content.height,
        "has_text_layer": float(content.has_text_layer),
        "words": float(len(words)),
        "image_coverage": min(1.0, sum(b.area for b in content.image_boxes) / page_area),
        "drawings": float(len(content.drawings)),
        "filled_squares": float(sum(1 for d in content.drawings if d.filled and d.bbox.width > 0
                                    and 0.8 <= d.bbox.height / d.bbox.width <= 1.25)),
    }
    signals |= ink_signals(content, words)
    signals |= table_signals(parsed)
    signals |= chart_signals(content, words)
    regions: list[Region] = list(table_regions(parsed, drawings=content.drawings))
    tables = [r.bbox for r in regions] + [e.bbox for e in parsed.elements if e.kind == "table"]
    charts = chart_regions(content, parsed, image=image, dpi=dpi, render=render, tables=tables)
    regions += charts
    ink = analyse_ink(image, dpi, words) if (image is not None and dpi and not content.has_text_layer) else None
    regions += handwriting_regions(content, words, ink=ink, charts=[c.bbox for c in charts if c.score >= 0.3],
                                   render=render)
    if not content.has_text_layer:
        ocr, region = ocr_region(content, words, ink)
        signals |= ocr
        regions.append(region)
    for kind in ("table", "chart", "handwriting"):
        of_kind = [r for r in regions if r.kind == kind]
        signals[f"{kind}_regions"] = float(len(of_kind))
        signals[f"{kind}_score_max"] = max((r.score for r in of_kind), default=0.0)
    signals["detect_ms"] = (time.perf_counter() - t0) * 1000
    return Detection(signals=PageSignals(**{k: round(float(v), 4) for k, v in signals.items()}), regions=tuple(regions))
