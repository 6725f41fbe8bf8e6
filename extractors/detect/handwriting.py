"""Handwriting: ink annotations, pen strokes and signature-like images on digital pages; on page
images, ink that OCR does not read as confident words and that is not laid out like print.

Printed text in a scan is not handwriting: print that OCR cannot read (faded, upside down) still
sits on a straight baseline in glyphs of regular height, and is left to the low-OCR-confidence
detector. See raster.py for how ink is found and measured.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from docroute.extractors.detect.common import grow, merge_boxes
from docroute.extractors.detect.raster import Ink, glyph_blocks, regularity
from docroute.schemas import BBox, PageContent, Region, Word

if TYPE_CHECKING:
    from PIL import Image

MIN_BLOCK_GLYPHS = 20  # a block of unread ink needs this many text-sized marks to be judged
MAX_RASTER_REGIONS = 8
SIGNATURE_MAX_SHARE = 0.10  # an image larger than this share of the page is a photo or a scan, not a signature
RenderClip = Callable[[BBox, float], "Image.Image"]


def _text_under(box: BBox, words: Sequence[Word]) -> float:
    return min(1.0, sum(box.intersection_area(w.bbox) for w in words) / box.area) if box.area else 0.0


def ink_annotation_regions(content: PageContent, words: Sequence[Word]) -> list[Region]:
    """PDF ink annotations (a stylus or tablet signature), grouped when they touch."""
    out = []
    for box in merge_boxes(content.ink_boxes, 12.0):
        n = sum(1 for b in content.ink_boxes if box.contains_point(b.cx, b.cy))
        under = _text_under(box, words)
        score = 0.95 if under < 0.3 else 0.3
        out.append(Region(kind="handwriting", bbox=box, score=score, source="handwriting:ink_annotation",
                          evidence={"ink_annotations": float(n), "text_under": round(under, 3)},
                          note=f"{n} ink annotation(s), {under:.0%} of the area has text under it"))
    return out


def pen_stroke_regions(content: PageContent, words: Sequence[Word], exclude: Sequence[BBox] = ()) -> list[Region]:
    """Vector pen strokes: unfilled paths that are neither straight rulings nor inside a chart."""
    # a written word or phrase is at least 8 pt tall and wider than tall; a freehand rule is flatter,
    # a logo's swoosh squarer
    strokes = [
        d.bbox for d in content.drawings
        if d.kind in ("line", "curve") and not d.filled and 8 <= d.bbox.height <= 60
        and 1.5 * d.bbox.height <= d.bbox.width <= 400 and not any(x.contains_point(d.bbox.cx, d.bbox.cy) for x in exclude)
    ]
    out = []
    for box in merge_boxes(strokes, 10.0):
        n = sum(1 for b in strokes if box.contains_point(b.cx, b.cy))
        under = _text_under(box, words)
        if under >= 0.3:
            continue  # strokes over text: underlines, strike-throughs, a drawn table
        score = min(0.9, 0.55 + 0.1 * n)
        out.append(Region(kind="handwriting", bbox=box, score=round(score, 4), source="handwriting:pen_strokes",
                          evidence={"strokes": float(n), "text_under": round(under, 3)},
                          note=f"{n} free-hand vector stroke(s) with no text under them"))
    return out


def signature_image_regions(content: PageContent, words: Sequence[Word], render: RenderClip | None) -> list[Region]:
    """Small wide images of irregular dark strokes on a light ground, in one ink colour: a signature.

    The geometry test is free; only images that pass it are rendered (100 dpi). Logos fail on colour
    or on print: their letters stand on a straight baseline at regular heights.
    """
    if render is None:
        return []
    import numpy as np

    from docroute.extractors.detect.raster import analyse_ink

    page_area = content.width * content.height or 1.0
    out = []
    for box in content.image_boxes:
        share = box.area / page_area
        aspect = box.width / box.height if box.height else 0.0
        if not (0.002 <= share <= SIGNATURE_MAX_SHARE and 1.5 <= aspect <= 8.0) or _text_under(box, words) > 0.1:
            continue
        image = render(box, 100.0)
        a = np.asarray(image.convert("RGB"), dtype=np.int16)
        g = a.mean(axis=2)
        dark = g < 110
        ink = float(dark.mean())
        two_tone = float((dark | (g > 200)).mean())
        colour = float((((a.max(axis=2) - a.min(axis=2)) > 60) & (g < 200)).mean())
        if not (0.01 <= ink <= 0.2 and two_tone >= 0.9 and colour <= 0.01):
            continue
        measured, aligned, regular = regularity(analyse_ink(image, 100.0, ()).comps)
        irregular = 1.0 - (aligned + regular) / 2 if measured >= 5 else 0.5
        if irregular < 0.4:
            continue  # print: a logo or a scanned line of text
        score = min(0.9, 0.5 + irregular * 0.6)
        out.append(Region(kind="handwriting", bbox=box, score=round(score, 4), source="handwriting:signature_image",
                          evidence={"ink_share": round(ink, 3), "two_tone": round(two_tone, 3), "irregularity": round(irregular, 3),
                                    "aspect": round(aspect, 2)},
                          note=f"signature-like image: {ink:.0%} dark strokes on a light ground, irregular ({irregular:.2f}), no text"))
    return out


def raster_regions(ink: Ink) -> list[Region]:
    """Blocks of text-sized ink that OCR did not read confidently, scored by how unlike print they are."""
    import numpy as np

    out = []
    for (x0, y0, x1, y1), comps in glyph_blocks(ink):
        if len(comps) < MIN_BLOCK_GLYPHS:
            continue
        measured, aligned, regular = regularity(comps)
        if measured < 5:
            continue
        irregular = 1.0 - (aligned + regular) / 2
        block_ink = int(np.count_nonzero(ink.ink[y0:y1, x0:x1]))
        read = int(np.count_nonzero(ink.ink[y0:y1, x0:x1] & ink.explained[y0:y1, x0:x1]))
        unread = 1.0 - read / block_ink if block_ink else 0.0
        score = max(0.0, min(1.0, (irregular - 0.25) / 0.4)) * min(1.0, unread / 0.8)
        box = ink.to_points((x0, y0, x1, y1))
        out.append(Region(
            kind="handwriting", bbox=box, score=round(score, 4), source="handwriting:unread_ink",
            evidence={"marks": float(len(comps)), "baseline_aligned": round(aligned, 3),
                      "height_regular": round(regular, 3), "irregularity": round(irregular, 3), "unread": round(unread, 3)},
            note=(f"{len(comps)} ink marks OCR did not read ({unread:.0%} unread); baseline aligned {aligned:.0%}, "
                  f"heights regular {regular:.0%} (print is 70-100%)"),
        ))
    out.sort(key=lambda r: -r.score)
    return out[:MAX_RASTER_REGIONS]


def handwriting_regions(content: PageContent, words: Sequence[Word], *, ink: Ink | None = None,
                        charts: Sequence[BBox] = (), render: RenderClip | None = None) -> list[Region]:
    regions = ink_annotation_regions(content, words)
    if content.has_text_layer:
        taken = [r.bbox for r in regions]
        regions += [r for r in pen_stroke_regions(content, words, [grow(c, 4) for c in charts])
                    if not any(r.bbox.overlap_of(t) > 0.5 for t in taken)]
        regions += signature_image_regions(content, words, render)
    elif ink is not None:
        regions += raster_regions(ink)
    return regions
