"""Ink on a page image, read cheaply: what the OCR words explain and what they do not.

The page is analysed at ``WORK_DPI`` (about 1 Mpx for A4). Ink is a pixel clearly darker than its
local background (a blur of the page), so paper tone and photo shading drop out. Connected ink
components outside confidently read OCR words are sorted into:

- ``line``: a long thin horizontal or vertical run (rulings, axes, underlines);
- ``blob``: a large solid area (bars, filled shapes, photos, stamps);
- ``glyph``: text-sized marks. Cursive handwriting joins letters into wide, irregular components on a
  drifting baseline; print that OCR could not read stays in separate, glyph-sized components.

Coordinates go back to PDF points so that regions line up with the page's words and elements.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from docroute.schemas import BBox, Word

if TYPE_CHECKING:
    from PIL import Image

WORK_DPI = 100.0
WORK_MAX_PIXELS = 1_500_000  # a page without a stated resolution can be huge in points
INK_DELTA = 40  # gray levels under the local background that make a pixel ink
CONF_MIN = 0.6  # OCR words at least this confident explain the ink under them


@dataclass(frozen=True, slots=True)
class Comp:
    """One connected ink component, in work pixels."""

    x0: int
    y0: int
    x1: int
    y1: int
    area: int
    kind: str  # line, blob, glyph, speck

    @property
    def w(self) -> int:
        return self.x1 - self.x0

    @property
    def h(self) -> int:
        return self.y1 - self.y0


@dataclass
class Ink:
    """Ink of one page image and how much of it OCR explains."""

    scale: float  # work pixels per point
    width_px: int
    height_px: int
    ink_px: int
    explained_px: int
    comps: list[Comp] = field(default_factory=list)  # unexplained components
    ink: Any = None  # boolean ink mask (numpy), work pixels
    explained: Any = None  # boolean mask of confident OCR words

    def to_points(self, c: Comp | tuple[int, int, int, int]) -> BBox:
        x0, y0, x1, y1 = (c.x0, c.y0, c.x1, c.y1) if isinstance(c, Comp) else c
        s = self.scale
        return BBox(x0=x0 / s, y0=y0 / s, x1=x1 / s, y1=y1 / s)

    @property
    def ink_share(self) -> float:
        return self.ink_px / max(1, self.width_px * self.height_px)

    @property
    def unexplained_share(self) -> float:
        return 1.0 - self.explained_px / self.ink_px if self.ink_px else 0.0

    def of_kind(self, kind: str) -> list[Comp]:
        return [c for c in self.comps if c.kind == kind]


def work_image(image: Image.Image, dpi: float) -> tuple[Image.Image, float]:
    """The page image at WORK_DPI (never upsampled, at most WORK_MAX_PIXELS), and its pixels per point."""
    scale = min(1.0, WORK_DPI / dpi, (WORK_MAX_PIXELS / max(1, image.width * image.height)) ** 0.5)
    if scale < 1.0:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    return image, dpi * scale / 72.0


def analyse_ink(image: Image.Image, dpi: float, words: Sequence[Word], conf_min: float = CONF_MIN) -> Ink:
    import numpy as np
    from PIL import ImageFilter
    from scipy import ndimage as ndi

    work, px = work_image(image, dpi)
    gray = work.convert("L")
    g = np.asarray(gray, dtype=np.int16)
    background = np.asarray(gray.filter(ImageFilter.BoxBlur(12)), dtype=np.int16)
    # a pixel is ink when clearly darker than its surroundings, or dark outright on light paper
    ink = (g < background - INK_DELTA) | ((g < 110) & (background > 150))
    h, w = ink.shape
    words_mask = np.zeros_like(ink)
    for wd in words:
        if wd.confidence >= conf_min:
            b = wd.bbox
            words_mask[max(0, int(b.y0 * px) - 1): int(b.y1 * px) + 2, max(0, int(b.x0 * px) - 1): int(b.x1 * px) + 2] = True
    total = int(ink.sum())
    explained = int((ink & words_mask).sum())
    rest = ink & ~words_mask
    labels, n = ndi.label(rest, structure=np.ones((3, 3), dtype=bool))
    comps: list[Comp] = []
    if n:
        areas = np.bincount(labels.ravel(), minlength=n + 1)
        for i, sl in enumerate(ndi.find_objects(labels), start=1):
            if sl is None:
                continue
            y0, y1, x0, x1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
            area = int(areas[i])
            comps.append(Comp(x0, y0, x1, y1, area, _kind(x1 - x0, y1 - y0, area, px)))
    return Ink(scale=px, width_px=w, height_px=h, ink_px=total, explained_px=explained, comps=comps,
               ink=ink, explained=words_mask)


def _kind(w: int, h: int, area: int, px: float) -> str:
    if area < 5 or (w <= 2 and h <= 2):
        return "speck"
    long_ = 60 * px  # a 60 pt run
    if (w >= long_ and h <= max(3, 0.06 * w)) or (h >= long_ and w <= max(3, 0.06 * h)):
        return "line"
    if (w >= 36 * px and h >= 36 * px and area >= 0.45 * w * h) or h >= 72 * px:
        return "blob"
    return "glyph"


def _component_lines(comps: Sequence[Comp]) -> list[list[Comp]]:
    """Ink components grouped into text lines: vertical centres within half a line height, gaps < 4 heights.

    Not ``extractors.lines.visual_lines``: the pieces of handwriting are letters and loops of uneven
    height on a drifting baseline, so they join a line by their centre, near its last piece, not by
    overlapping its first box.
    """
    lines: list[tuple[float, float, int, list[Comp]]] = []  # (cy, h, x1, comps)
    for c in sorted(comps, key=lambda c: ((c.y0 + c.y1) / 2, c.x0)):
        cy = (c.y0 + c.y1) / 2
        for i, (ly, lh, lx1, members) in enumerate(lines):
            if abs(ly - cy) <= 0.5 * lh and c.x0 - lx1 < 4 * lh:
                members.append(c)
                lines[i] = (ly, lh, max(lx1, c.x1), members)
                break
        else:
            lines.append((cy, max(4.0, float(c.h)), c.x1, [c]))
    return [m for *_, m in lines]


def regularity(comps: Sequence[Comp]) -> tuple[int, float, float]:
    """How print-like text-sized components are: (measured, baseline alignment, height regularity).

    In each line of five or more components, a component is aligned when its bottom sits within
    a tenth of the line's height of its neighbours' median bottom, and regular when its height is
    within 12% of the line's median height. Print scores high on both (0.7-1.0 here); handwriting,
    with its drifting baseline and loops, low (0.2-0.6).
    """
    import statistics

    n = aligned = regular = 0
    for line in _component_lines([c for c in comps if c.area >= 10 and c.h >= 4]):
        if len(line) < 5:
            continue
        line.sort(key=lambda c: c.x0)
        hm = statistics.median(c.h for c in line)
        for i, c in enumerate(line):
            near = [o.y1 for o in line[max(0, i - 3): i + 4] if o is not c]
            n += 1
            aligned += abs(c.y1 - statistics.median(near)) <= max(1.0, 0.1 * hm)
            regular += abs(c.h - hm) <= max(1.0, 0.12 * hm)
    return n, aligned / n if n else 1.0, regular / n if n else 1.0


def glyph_blocks(ink: Ink) -> list[tuple[tuple[int, int, int, int], list[Comp]]]:
    """Unexplained text-sized components grouped into blocks (about a paragraph each)."""
    import statistics

    import numpy as np
    from scipy import ndimage as ndi

    glyphs = [c for c in ink.comps if c.kind == "glyph" and c.area >= 10]
    if not glyphs:
        return []
    hm = statistics.median(c.h for c in glyphs)
    mask = np.zeros((ink.height_px, ink.width_px), dtype=bool)
    for c in glyphs:
        mask[c.y0:c.y1, c.x0:c.x1] = True
    ky, kx = max(1, int(0.8 * hm)), max(1, int(1.5 * hm))
    grown = ndi.maximum_filter1d(ndi.maximum_filter1d(mask, 2 * ky + 1, axis=0), 2 * kx + 1, axis=1)
    labels, _ = ndi.label(grown)
    members: dict[int, list[Comp]] = {}
    for c in glyphs:
        members.setdefault(int(labels[(c.y0 + c.y1) // 2, (c.x0 + c.x1) // 2]), []).append(c)
    out = []
    for lab, comps in members.items():
        if lab == 0:
            continue
        box = (min(c.x0 for c in comps), min(c.y0 for c in comps), max(c.x1 for c in comps), max(c.y1 for c in comps))
        out.append((box, comps))
    return out
