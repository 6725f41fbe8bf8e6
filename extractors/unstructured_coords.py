"""Where unstructured's ``fast`` (pdfminer) coordinates lie on our pages.

unstructured reports ``metadata.coordinates`` as points plus a coordinate system with its own width,
height and orientation; we go through the system's relative coordinates, so a bottom-left-origin
``PointSpace`` and a top-left ``PixelSpace`` both come out right.

The ``fast`` system is pdfminer's page, which is the *mediabox* (rotated by /Rotate, top-left origin in
unstructured 0.27; checked against PyMuPDF word positions), while PyMuPDF pages (and our page sizes)
are the *cropbox*. We read each page's mediabox, cropbox and /Rotate with pdfminer and map the
cropbox's rectangle in that space onto ``(0, 0, width, height)``. Without this, pages with a cropbox
smaller than the mediabox would be off by the crop margin.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from docroute.schemas import BBox


@dataclass(frozen=True)
class PdfFrame:
    """Where a PDF page's cropbox lies in pdfminer's (rotated mediabox, top-left) space."""

    layout_w: float
    layout_h: float
    crop: tuple[float, float, float, float]  # x0, y0, x1, y1 in that space


def pdfminer_frames(data: bytes) -> dict[int, PdfFrame]:
    """Per page (1-based): the cropbox in the space unstructured's ``fast`` coordinates use.

    pdfminer maps user space to device space with a ctm built from the mediabox and /Rotate
    (``PDFPageInterpreter.process_page``); unstructured then flips y with the layout height.
    """
    from pdfminer.pdfpage import PDFPage

    frames: dict[int, PdfFrame] = {}
    for number, page in enumerate(PDFPage.get_pages(io.BytesIO(data)), start=1):
        mx0, my0, mx1, my1 = (float(v) for v in page.mediabox)
        mx0, mx1 = min(mx0, mx1), max(mx0, mx1)
        my0, my1 = min(my0, my1), max(my0, my1)
        cx0, cy0, cx1, cy1 = (float(v) for v in page.cropbox)
        cx0, cx1 = sorted((cx0, cx1))
        cy0, cy1 = sorted((cy0, cy1))
        # PyMuPDF (our page sizes) uses the cropbox clipped to the mediabox.
        cx0, cy0, cx1, cy1 = max(cx0, mx0), max(cy0, my0), min(cx1, mx1), min(cy1, my1)
        if cx1 <= cx0 or cy1 <= cy0:
            cx0, cy0, cx1, cy1 = mx0, my0, mx1, my1
        rotate = page.rotate
        if rotate == 90:
            ctm = (0.0, -1.0, 1.0, 0.0, -my0, mx1)
        elif rotate == 180:
            ctm = (-1.0, 0.0, 0.0, -1.0, mx1, my1)
        elif rotate == 270:
            ctm = (0.0, 1.0, -1.0, 0.0, my1, -mx0)
        else:
            ctm = (1.0, 0.0, 0.0, 1.0, -mx0, -my0)
        a, b, c, d, e, f = ctm

        def device(x: float, y: float, a=a, b=b, c=c, d=d, e=e, f=f) -> tuple[float, float]:
            return a * x + c * y + e, b * x + d * y + f

        (dx0, dy0), (dx1, dy1) = device(mx0, my0), device(mx1, my1)
        layout_w, layout_h = abs(dx1 - dx0), abs(dy1 - dy0)
        corners = [device(x, y) for x in (cx0, cx1) for y in (cy0, cy1)]
        xs = [x for x, _ in corners]
        ys = [layout_h - y for _, y in corners]  # unstructured's rect_to_bbox flips y
        frames[number] = PdfFrame(layout_w, layout_h, (min(xs), min(ys), max(xs), max(ys)))
    return frames


def element_bbox(element: Any, page_w: float, page_h: float, frame: PdfFrame | None) -> BBox:
    """An unstructured element's box in PDF points, top-left origin, clamped to the page."""
    coords = getattr(element.metadata, "coordinates", None)
    if coords is None or not coords.points or coords.system is None:
        return BBox(x0=0.0, y0=0.0, x1=page_w, y1=page_h)  # no position given: the whole page
    system = coords.system
    # Relative coordinates are bottom-left based (unstructured's RelativeCoordinateSystem);
    # this handles PixelSpace (top-left) and PointSpace (bottom-left) alike.
    rel = [system.convert_to_relative(x, y) for x, y in coords.points]
    sys_w, sys_h = float(system.width), float(system.height)
    xs = [rx * sys_w for rx, _ in rel]
    ys = [(1.0 - ry) * sys_h for _, ry in rel]  # top-left, in the system's units
    if frame is not None and abs(frame.layout_w - sys_w) < 1.0 and abs(frame.layout_h - sys_h) < 1.0:
        fx0, fy0, fx1, fy1 = frame.crop
    else:
        fx0, fy0, fx1, fy1 = 0.0, 0.0, sys_w, sys_h
    sx, sy = page_w / (fx1 - fx0), page_h / (fy1 - fy0)

    def clamp(v: float, hi: float) -> float:
        return min(max(v, 0.0), hi)

    x0, x1 = clamp((min(xs) - fx0) * sx, page_w), clamp((max(xs) - fx0) * sx, page_w)
    y0, y1 = clamp((min(ys) - fy0) * sy, page_h), clamp((max(ys) - fy0) * sy, page_h)
    return BBox(x0=x0, y0=y0, x1=x1, y1=y1)
