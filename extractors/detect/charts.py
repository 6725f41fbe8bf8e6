"""Charts: vector axes with ticks and marks, and raster figures that look like charts.

- Vector charts (digital pages): a long horizontal and a long vertical line meeting at a corner (the
  axes), tick marks along them, marks inside (filled bars, curves), and mostly numeric labels nearby.
- Raster charts (a figure on a digital page, or a whole page image): synthetic flat colours (a few
  exact colours cover most pixels, unlike a photo or a scan), little text, and chart structure:
  straight axis lines meeting at a corner, rectangular bars, or large smooth coloured areas (pie,
  area). A logo is too small to be considered; a photo is not flat; a map's coloured areas have
  ragged edges.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from docroute.extractors.detect.common import grow, is_number
from docroute.schemas import BBox, Drawing, PageContent, ParsedPage, Region, Word

if TYPE_CHECKING:
    from PIL import Image

LONG_LINE_SHARE = 0.25  # an axis is at least this share of the page's width/height
TICK_MAX = 8.0  # a tick mark is a line at most this long (points)
MIN_FIGURE_SHARE = 0.03  # figures smaller than this share of the page (logos, icons) are not charts
FIGURE_DPI = 72.0  # figures are rendered this fine for the raster test
RenderClip = Callable[[BBox, float], "Image.Image"]


# --- vector charts -------------------------------------------------------------------------------

def _axes_boxes(horiz: Sequence[Drawing], vert: Sequence[Drawing]) -> list[BBox]:
    """Pairs of a horizontal and a vertical line that meet near an end: the x and y axes of a chart."""
    out: list[BBox] = []
    for h in horiz:
        for v in vert:
            near_x = abs(v.bbox.x0 - h.bbox.x0) < 6 or abs(v.bbox.x0 - h.bbox.x1) < 6
            near_y = abs(h.bbox.y0 - v.bbox.y1) < 6 or abs(h.bbox.y0 - v.bbox.y0) < 6
            if near_x and near_y:
                box = h.bbox.union(v.bbox)
                if not any(box.overlap_of(o) > 0.5 for o in out):
                    out.append(box)
    return out


def vector_charts(content: PageContent, words: Sequence[Word]) -> list[tuple[BBox, dict[str, float]]]:
    """Each pair of axes with its evidence (ticks, marks, numeric share of labels) and a 0..1 score."""
    lines = [d for d in content.drawings if d.kind == "line"]
    horiz = [d for d in lines if d.bbox.height < 1.5 and d.bbox.width >= LONG_LINE_SHARE * content.width]
    vert = [d for d in lines if d.bbox.width < 1.5 and d.bbox.height >= LONG_LINE_SHARE * content.height * 0.5]
    if not horiz or not vert:
        return []
    ticks = [d for d in lines if max(d.bbox.width, d.bbox.height) <= TICK_MAX]
    marks = [d for d in content.drawings if (d.kind == "rect" and d.filled) or d.kind == "curve"]
    out = []
    for axes in _axes_boxes(horiz[:50], vert[:50]):
        near = grow(axes, 40)
        in_box = [w for w in words if w.bbox.overlap_of(near) > 0.5]
        numeric = sum(1 for w in in_box if is_number(w.text))
        marks_inside = [m for m in marks if grow(axes, 2).contains_point(m.bbox.cx, m.bbox.cy)]
        ticks_near = [t for t in ticks if grow(axes, 10).contains_point(t.bbox.cx, t.bbox.cy)]
        num_share = numeric / len(in_box) if in_box else 0.0
        score = (
            0.35 * min(1.0, len(marks_inside) / 3)
            + 0.25 * min(1.0, len(ticks_near) / 4)
            + 0.25 * num_share
            + 0.15 * (1.0 if len(in_box) < 80 else 0.0)
        )
        region = BBox.enclosing([axes] + [w.bbox for w in in_box]) if in_box else axes
        out.append((region, {"axes": 1.0, "ticks": float(len(ticks_near)), "marks": float(len(marks_inside)),
                             "numeric_share": round(num_share, 3), "labels": float(len(in_box)),
                             "score": round(score, 4)}))
    return out


def vector_bars(content: PageContent, words: Sequence[Word], tables: Sequence[BBox] = ()) -> list[tuple[BBox, dict[str, float]]]:
    """Bar charts drawn without axis lines: four or more filled bars standing on one baseline, of
    different lengths, with no text inside them, outside any table (whose cell shading and rulings
    are filled rectangles too)."""
    rects = [d.bbox for d in content.drawings if d.kind == "rect" and d.filled
             and 2 <= min(d.bbox.width, d.bbox.height) and max(d.bbox.width, d.bbox.height) <= 0.8 * content.width
             and not any(t.contains_point(d.bbox.cx, d.bbox.cy) for t in tables)]
    if len(rects) < 4:
        return []
    out: list[tuple[BBox, dict[str, float]]] = []
    for edge, length in ((lambda b: b.x0, lambda b: b.width), (lambda b: b.y1, lambda b: b.height)):
        groups: dict[int, list[BBox]] = {}
        for b in rects:
            groups.setdefault(round(edge(b)), []).append(b)
        for bars in groups.values():
            if len(bars) < 4:
                continue
            lengths = [length(b) for b in bars]
            mean = sum(lengths) / len(lengths)
            spread = (sum((v - mean) ** 2 for v in lengths) / len(lengths)) ** 0.5 / mean if mean else 0.0
            inside = sum(1 for w in words if any(b.contains_point(w.bbox.cx, w.bbox.cy) for b in bars))
            if spread < 0.2 or inside > 0.3 * len(bars):
                continue
            box = BBox.enclosing(bars)
            near = [w for w in words if w.bbox.overlap_of(grow(box, 30)) > 0.5]
            num_share = sum(1 for w in near if is_number(w.text)) / len(near) if near else 0.0
            score = 0.4 + 0.25 * num_share + 0.2 * min(1.0, len(bars) / 8) + 0.15 * min(1.0, spread / 0.4)
            region = BBox.enclosing([box] + [w.bbox for w in near]) if near else box
            if not any(region.overlap_of(o) > 0.5 for o, _ in out):
                out.append((region, {"axes": 0.0, "bars": float(len(bars)), "length_spread": round(spread, 3),
                                     "numeric_share": round(num_share, 3), "labels": float(len(near)),
                                     "score": round(min(1.0, score), 4)}))
    return out


def chart_signals(content: PageContent, words: Sequence[Word]) -> dict[str, float]:
    """Page-level summary of the vector-chart test (the best pair of axes)."""
    found = vector_charts(content, words)
    lines = [d for d in content.drawings if d.kind == "line"]
    if not found:
        ticks = [d for d in lines if max(d.bbox.width, d.bbox.height) <= TICK_MAX]
        marks = [d for d in content.drawings if (d.kind == "rect" and d.filled) or d.kind == "curve"]
        return {"chart_axes": 0.0, "chart_ticks": float(len(ticks)), "chart_marks": float(len(marks)),
                "chart_score": 0.0}
    _, ev = max(found, key=lambda f: f[1]["score"])
    return {"chart_axes": 1.0, "chart_ticks": ev["ticks"], "chart_marks": ev["marks"],
            "chart_numeric_share": ev["numeric_share"], "chart_score": ev["score"]}


# --- raster charts -------------------------------------------------------------------------------

def _runs(mask, axis: int):
    """Longest run of True along ``axis`` for each row (axis=1) or column (axis=0), with its start."""
    import numpy as np

    m = mask if axis == 1 else mask.T
    h, w = m.shape
    pad = np.zeros((h, w + 2), dtype=np.int8)
    pad[:, 1:-1] = m
    d = np.diff(pad, axis=1)
    starts = np.argwhere(d == 1)
    ends = np.argwhere(d == -1)
    best = np.zeros(h, dtype=np.int64)
    begin = np.zeros(h, dtype=np.int64)
    if len(starts):
        lengths = ends[:, 1] - starts[:, 1]
        order = np.lexsort((lengths, starts[:, 0]))  # per row, longest last
        rows = starts[order, 0]
        best[rows] = lengths[order]
        begin[rows] = starts[order, 1]
    return best, begin


def _line_groups(idx) -> list[tuple[int, int]]:
    groups: list[tuple[int, int]] = []
    for i in idx:
        if groups and i - groups[-1][1] <= 2:
            groups[-1] = (groups[-1][0], int(i))
        else:
            groups.append((int(i), int(i)))
    return groups


def raster_chart(image: Image.Image, word_boxes: Sequence[tuple[float, float, float, float, bool]] = ()
                 ) -> tuple[float, dict[str, float]]:
    """Chart score (0..1) of an RGB image (a figure or a page image) with its evidence.

    ``word_boxes`` are the words confidently read on the image: (x0, y0, x1, y1) as fractions of its
    size, and whether the word is a number.
    """
    import numpy as np
    from scipy import ndimage as ndi

    rgb = image.convert("RGB")
    if rgb.width * rgb.height > 400_000:
        f = (400_000 / (rgb.width * rgb.height)) ** 0.5
        rgb = rgb.resize((max(1, int(rgb.width * f)), max(1, int(rgb.height * f))))
    a = np.asarray(rgb, dtype=np.int16)
    h, w, _ = a.shape
    q = (a[..., 0] // 8) * 1024 + (a[..., 1] // 8) * 32 + a[..., 2] // 8
    counts = np.bincount(q.ravel(), minlength=32768)
    flat = float(np.sort(counts)[::-1][:8].sum() / q.size)
    bg_code = int(np.argmax(counts))
    bg = np.array([(bg_code // 1024) * 8 + 4, ((bg_code // 32) % 32) * 8 + 4, (bg_code % 32) * 8 + 4])
    nonbg = np.abs(a - bg).max(axis=2) > 40
    colour = ((a.max(axis=2) - a.min(axis=2)) > 60) & nonbg
    colour_share = float(colour.mean())
    text = np.zeros((h, w), dtype=bool)
    for x0, y0, x1, y1, _ in word_boxes:
        text[int(y0 * h): int(y1 * h) + 1, int(x0 * w): int(x1 * w) + 1] = True
    text_share = float(text.mean())
    numeric_share = sum(1 for *_, num in word_boxes if num) / len(word_boxes) if word_boxes else 0.0
    # axes: long straight runs of non-background pixels, horizontal and vertical, meeting at a corner
    hrun, hstart = _runs(nonbg, 1)
    vrun, vstart = _runs(nonbg, 0)
    hl = _line_groups(np.flatnonzero(hrun >= 0.3 * w))
    vl = _line_groups(np.flatnonzero(vrun >= 0.3 * h))
    tol = max(4.0, 0.04 * max(w, h))
    axes = 0.0
    ticks = 0
    for r0, r1 in hl:
        r = (r0 + r1) // 2
        x0, x1 = hstart[r], hstart[r] + hrun[r]
        for c0, c1 in vl:
            c = (c0 + c1) // 2
            y0, y1 = vstart[c], vstart[c] + vrun[c]
            if (abs(c - x0) <= tol or abs(c - x1) <= tol) and (abs(r - y1) <= tol or abs(r - y0) <= tol):
                axes = 1.0
                ticks = max(ticks, _ticks(nonbg[min(h - 1, r1 + 3), x0:x1]), _ticks(nonbg[y0:y1, max(0, c0 - 3)]))
    # two long lines at a corner are a chart's axes only with ticks, tick labels or coloured marks:
    # the edge of a sheet of paper in a scan makes the same corner
    axes *= float(ticks >= 3 or numeric_share >= 0.25 or colour_share >= 0.005)
    # a ruled grid (a table) has many lines that all run (nearly) the full extent; a bar chart's bars
    # make vertical runs of different lengths
    grid = len(hl) >= 4 and len(vl) >= 4 and _even(hrun, hl) and _even(vrun, vl)
    # marks: bars (solid rectangles on a shared baseline) and smooth coloured areas (pie, area)
    bars = 0
    smooth = 0.0
    text_on_colour = 0.0
    if colour_share > 0.002:
        labels, n = ndi.label(colour)
        if n:
            areas = np.bincount(labels.ravel(), minlength=n + 1)
            edge = colour & ~ndi.binary_erosion(colour)
            perims = np.bincount(labels[edge], minlength=n + 1)
            bottoms: list[int] = []
            lefts: list[int] = []
            for i, sl in enumerate(ndi.find_objects(labels), start=1):
                if sl is None or areas[i] < 30:
                    continue
                bh, bw = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
                if areas[i] >= 0.85 * bh * bw and min(bh, bw) >= 3:
                    bottoms.append(sl[0].stop)
                    lefts.append(sl[1].start)
                # compactness: perimeter over sqrt(area); a disc ~3.5, a bar 4-6, a coastline 15+
                if areas[i] >= 0.01 * h * w and perims[i] / (areas[i] ** 0.5) < 9.0:
                    smooth += float(areas[i]) / (h * w)
            bars = max(_most_common(bottoms), _most_common(lefts))
            big = colour & (areas[labels] >= 0.002 * h * w)
            text_on_colour = float((text & big).sum() / max(1, text.sum()))
    table_like = grid or text_on_colour > 0.3
    few_words = text_share < 0.2 and len(word_boxes) < 80
    score = 0.0
    if flat >= 0.8 and few_words and not table_like:
        structure = max(axes, min(1.0, bars / 3), min(1.0, smooth / 0.1))
        score = 0.5 * structure + 0.2 * axes + 0.15 * min(1.0, bars / 3 + smooth * 10) + 0.15 * min(1.0, colour_share / 0.05 + axes)
    ev = {"flat_colours": round(flat, 3), "colour_share": round(colour_share, 3), "axes": axes, "ticks": float(ticks),
          "h_lines": float(len(hl)), "v_lines": float(len(vl)), "bars": float(bars), "smooth_areas": round(smooth, 3),
          "words": float(len(word_boxes)), "numeric_share": round(numeric_share, 3), "text_share": round(text_share, 3),
          "text_on_colour": round(text_on_colour, 3), "score": round(min(1.0, score), 4)}
    return min(1.0, score), ev


def _even(runs, groups: Sequence[tuple[int, int]]) -> bool:
    """Most of the lines are about as long as the longest: the rulings of a grid."""
    lengths = [int(runs[(a + b) // 2]) for a, b in groups]
    return sum(1 for n in lengths if n >= 0.85 * max(lengths)) >= 0.6 * len(lengths)


def _ticks(strip) -> int:
    """Short marks along a line just outside an axis: tick marks."""
    import numpy as np

    pad = np.zeros(len(strip) + 2, dtype=np.int8)
    pad[1:-1] = strip
    d = np.diff(pad)
    lengths = np.flatnonzero(d == -1) - np.flatnonzero(d == 1)
    return int(((lengths >= 1) & (lengths <= 4)).sum())


def _most_common(values: Sequence[int], tol: int = 2) -> int:
    """How many values share (within ``tol``) the most common one: bars standing on one baseline."""
    best = 0
    for v in values:
        best = max(best, sum(1 for u in values if abs(u - v) <= tol))
    return best


def _fractions(box: BBox, words: Sequence[Word], min_conf: float = 0.5) -> list[tuple[float, float, float, float, bool]]:
    """Confidently read words inside ``box`` as fractions of it (garbage OCR over graphics is left out)."""
    w, h = box.width or 1.0, box.height or 1.0
    return [((b.x0 - box.x0) / w, (b.y0 - box.y0) / h, (b.x1 - box.x0) / w, (b.y1 - box.y0) / h, is_number(wd.text))
            for wd, b in ((wd, wd.bbox) for wd in words)
            if wd.confidence >= min_conf and box.contains_point(b.cx, b.cy)]


def chart_regions(content: PageContent, parsed: ParsedPage, *, image: Image.Image | None = None,
                  dpi: float | None = None, render: RenderClip | None = None, tables: Sequence[BBox] = ()) -> list[Region]:
    words = parsed.words
    regions: list[Region] = []
    for box, ev in vector_charts(content, words):
        regions.append(Region(kind="chart", bbox=box, score=ev["score"], evidence=ev, source="charts:vector",
                              note=f"vector axes, {int(ev['marks'])} marks, {int(ev['ticks'])} ticks, "
                                   f"{ev['numeric_share']:.0%} numeric labels"))
    for box, ev in vector_bars(content, words, tables):
        if not any(r.bbox.overlap_of(box) > 0.5 for r in regions):
            regions.append(Region(kind="chart", bbox=box, score=ev["score"], evidence=ev, source="charts:vector_bars",
                                  note=f"{int(ev['bars'])} vector bars on one baseline, lengths varying "
                                       f"{ev['length_spread']:.0%}, {ev['numeric_share']:.0%} numeric labels"))
    page_area = content.width * content.height or 1.0
    if content.has_text_layer and render is not None:
        for e in parsed.elements:
            if e.kind != "figure" or e.bbox.area < MIN_FIGURE_SHARE * page_area:
                continue
            if any(r.bbox.overlap_of(e.bbox) > 0.5 for r in regions):
                continue
            score, ev = raster_chart(render(e.bbox, FIGURE_DPI), _fractions(e.bbox, words))
            regions.append(Region(kind="chart", bbox=e.bbox, score=round(score, 4), evidence=ev,
                                  source=f"charts:figure:{e.source.split(':')[-1]}", note=_raster_note(ev)))
    elif image is not None and dpi:
        box = BBox(x0=0, y0=0, x1=content.width, y1=content.height)
        score, ev = raster_chart(image, _fractions(box, words))
        if score > 0:
            regions.append(Region(kind="chart", bbox=_content_box(image, dpi) or box, score=round(score, 4),
                                  evidence=ev, source="charts:page_image", note=_raster_note(ev)))
    return regions


def _content_box(image: Image.Image, dpi: float) -> BBox | None:
    """Bounding box (points) of what is not background on a page image."""
    import numpy as np

    small = image.convert("L")
    f = min(1.0, 400 / max(small.width, small.height))
    if f < 1.0:
        small = small.resize((max(1, int(small.width * f)), max(1, int(small.height * f))))
    a = np.asarray(small, dtype=np.int16)
    bg = int(np.median(a))
    ys, xs = np.nonzero(np.abs(a - bg) > 30)
    if not len(xs):
        return None
    s = 72.0 / (dpi * f)
    return BBox(x0=float(xs.min()) * s, y0=float(ys.min()) * s, x1=float(xs.max() + 1) * s, y1=float(ys.max() + 1) * s)


def _raster_note(ev: dict[str, float]) -> str:
    parts = [f"{ev['flat_colours']:.0%} of pixels in 8 colours"]
    if ev["axes"]:
        parts.append("axes")
    if ev["bars"]:
        parts.append(f"{int(ev['bars'])} bars")
    if ev["smooth_areas"]:
        parts.append(f"{ev['smooth_areas']:.0%} smooth colour areas")
    parts.append(f"{int(ev['words'])} words")
    return "raster figure: " + ", ".join(parts)
