"""Page signals for the router: handwriting, table complexity, charts, OCR confidence.

Each detector is a cheap pure function of what the page reader and the parser already produced
(plus, for scans, the rendered pixels). Signals are plain floats so that pages.signals is a stable
map<string, double> column and the routing policy stays a pure function of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from docroute.schemas import BBox, Drawing, PageContent, ParsedPage, Word

if TYPE_CHECKING:
    from PIL import Image

LONG_LINE_SHARE = 0.25  # an axis is at least this share of the page's width/height
TICK_MAX = 8.0  # a tick mark is a line at most this long (points)


def _quantile(values: Sequence[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return 0.0
    pos = (len(s) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def ocr_signals(words: Sequence[Word]) -> dict[str, float]:
    confs = [w.confidence for w in words]
    return {
        "ocr_words": float(len(words)),
        "ocr_mean_conf": float(sum(confs) / len(confs)) if confs else 0.0,
        "ocr_p10_conf": float(_quantile(confs, 0.10)),
    }


def ink_signals(content: PageContent, words: Sequence[Word]) -> dict[str, float]:
    """PDF ink annotations that no text-layer word explains."""
    unexplained = 0
    for box in content.ink_boxes:
        covered = sum(box.intersection_area(w.bbox) for w in words)
        if box.area and covered / box.area < 0.3:
            unexplained += 1
    return {"ink_annotations": float(len(content.ink_boxes)), "ink_unexplained": float(unexplained),
            "ink_strokes": float(content.ink_strokes)}


def pixel_ink_signals(image: Image.Image, dpi: float, words: Sequence[Word], min_conf: float = 0.5) -> dict[str, float]:
    """Share of the page's dark pixels that lie outside confidently read OCR words.

    Printed text in a scan is mostly inside word boxes; handwriting, stamps and scribbles that OCR
    cannot read are not. Computed on a 50 dpi thumbnail, so it costs a few milliseconds.
    """
    import numpy as np
    from PIL import ImageFilter

    scale = 50.0 / dpi
    thumb = image.convert("L").resize((max(1, int(image.width * scale)), max(1, int(image.height * scale))))
    # Ink is darker than its local background: this ignores lighting gradients and shadows of photos.
    background = np.asarray(thumb.filter(ImageFilter.MedianFilter(9)), dtype=np.int16)
    a = np.asarray(thumb, dtype=np.int16)
    dark = a < background - 50
    total = int(dark.sum())
    if total == 0:
        return {"ink_share": 0.0, "ink_outside_words": 0.0}
    mask = np.zeros_like(dark)
    px = 50.0 / 72.0  # points -> thumbnail pixels
    for w in words:
        if w.confidence >= min_conf:
            b = w.bbox
            mask[int(b.y0 * px): int(b.y1 * px) + 1, int(b.x0 * px): int(b.x1 * px) + 1] = True
    outside = int((dark & ~mask).sum())
    return {"ink_share": total / dark.size, "ink_outside_words": outside / total}


def table_signals(parsed: ParsedPage) -> dict[str, float]:
    tables = [e for e in parsed.elements if e.kind == "table"]
    spanning = max((e.meta.get("spanning_cells", 0.0) for e in tables), default=0.0)
    header_spans = max((e.meta.get("header_spanning_cells", 0.0) for e in tables), default=0.0)
    return {"tables": float(len(tables)), "table_spanning_cells": float(spanning),
            "table_header_spanning_cells": float(header_spans)}


def _is_number(text: str) -> bool:
    t = text.replace(",", "").replace(".", "").replace("%", "").replace("-", "").replace("$", "")
    return t.isdigit()


def chart_signals(content: PageContent, words: Sequence[Word]) -> dict[str, float]:
    """Vector charts: axes (long perpendicular lines), tick marks, marks (bars/curves), sparse numbers."""
    lines = [d for d in content.drawings if d.kind == "line"]
    horiz = [d for d in lines if d.bbox.height < 1.5 and d.bbox.width >= LONG_LINE_SHARE * content.width]
    vert = [d for d in lines if d.bbox.width < 1.5 and d.bbox.height >= LONG_LINE_SHARE * content.height * 0.5]
    ticks = [d for d in lines if max(d.bbox.width, d.bbox.height) <= TICK_MAX]
    marks = [d for d in content.drawings if (d.kind == "rect" and d.filled) or d.kind == "curve"]
    axes = _axes_box(horiz, vert)
    if axes is None:
        return {"chart_axes": 0.0, "chart_ticks": float(len(ticks)), "chart_marks": float(len(marks)),
                "chart_score": 0.0}
    in_box = [w for w in words if w.bbox.overlap_of(_grow(axes, 40)) > 0.5]
    numeric = sum(1 for w in in_box if _is_number(w.text))
    marks_inside = [m for m in marks if _grow(axes, 2).contains_point(m.bbox.cx, m.bbox.cy)]
    ticks_near = [t for t in ticks if _grow(axes, 10).contains_point(t.bbox.cx, t.bbox.cy)]
    num_share = numeric / len(in_box) if in_box else 0.0
    score = (
        0.35 * min(1.0, len(marks_inside) / 3)
        + 0.25 * min(1.0, len(ticks_near) / 4)
        + 0.25 * num_share
        + 0.15 * (1.0 if len(in_box) < 80 else 0.0)
    )
    return {"chart_axes": 1.0, "chart_ticks": float(len(ticks_near)), "chart_marks": float(len(marks_inside)),
            "chart_numeric_share": num_share, "chart_score": round(score, 4)}


def _grow(b: BBox, d: float) -> BBox:
    return BBox(x0=b.x0 - d, y0=b.y0 - d, x1=b.x1 + d, y1=b.y1 + d)


def _axes_box(horiz: Sequence[Drawing], vert: Sequence[Drawing]) -> BBox | None:
    """A horizontal and a vertical line that meet near one end: the x and y axes."""
    for h in horiz:
        for v in vert:
            near_x = abs(v.bbox.x0 - h.bbox.x0) < 6 or abs(v.bbox.x0 - h.bbox.x1) < 6
            near_y = abs(h.bbox.y0 - v.bbox.y1) < 6 or abs(h.bbox.y0 - v.bbox.y0) < 6
            if near_x and near_y:
                return h.bbox.union(v.bbox)
    return None


def page_signals(
    content: PageContent, parsed: ParsedPage, image: Image.Image | None = None, dpi: float | None = None
) -> dict[str, float]:
    signals: dict[str, float] = {
        "has_text_layer": float(content.has_text_layer),
        "words": float(len(parsed.words)),
        "image_coverage": min(1.0, sum(b.area for b in content.image_boxes) / (content.width * content.height or 1)),
        "drawings": float(len(content.drawings)),
    }
    signals |= ink_signals(content, parsed.words)
    signals |= table_signals(parsed)
    signals |= chart_signals(content, parsed.words)
    if not content.has_text_layer:
        signals |= ocr_signals(parsed.words)
        if image is not None and dpi:
            signals |= pixel_ink_signals(image, dpi, parsed.words)
    return {k: round(float(v), 4) for k, v in signals.items()}
