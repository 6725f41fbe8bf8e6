"""Words into lines: the grouping that the layout engine, the detectors and the field extractor share.

``parser_lines`` groups by the parser's own line numbers (``Word.block``/``Word.line``);
``visual_lines`` groups by position on the page (vertical overlap), whatever the parser said;
``split_at_gaps`` cuts one line, left to right, where the gap between words is wide.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from docroute.schemas import BBox, Word

T = TypeVar("T")


def parser_lines(words: Iterable[Word]) -> list[list[Word]]:
    """Words grouped by the parser's (block, line), in the order each line first appears."""
    groups: dict[tuple[int, int], list[Word]] = {}
    for w in words:
        groups.setdefault((w.block, w.line), []).append(w)
    return list(groups.values())


def visual_lines(items: Iterable[T], box: Callable[[T], BBox] = lambda w: w.bbox, *, overlap: float = 0.5,
                 lookback: int = 4, grow: bool = False, min_height: float = 0.0) -> list[list[T]]:
    """Items grouped into visual lines, top to bottom (by the centre of ``box(item)``).

    An item joins the first of the last ``lookback`` lines that it overlaps vertically by ``overlap``
    of the smaller height (at least ``min_height``; 1 where that height is 0). A line's band is its
    first item's box, or with ``grow`` the union of its items.
    """
    lines: list[tuple[BBox, list[T]]] = []
    for item in sorted(items, key=lambda it: box(it).cy):
        b = box(item)
        for i in range(max(0, len(lines) - lookback), len(lines)):
            band, members = lines[i]
            smaller = min(band.height, b.height)
            if min(band.y1, b.y1) - max(band.y0, b.y0) >= overlap * (max(min_height, smaller) if smaller else 1.0):
                members.append(item)
                if grow:
                    lines[i] = (band.union(b), members)
                break
        else:
            lines.append((b, [item]))
    return [members for _, members in lines]


def split_at_gaps(words: Sequence[Word], max_gap: float, *, from_previous: bool = False) -> list[list[Word]]:
    """Words of one line (sorted by x0) cut into runs wherever a gap is wider than ``max_gap``.

    A gap is measured from the furthest right edge so far, or with ``from_previous`` from the previous
    word's right edge (the field extractor's phrases).
    """
    runs: list[list[Word]] = [[words[0]]]
    right = words[0].bbox.x1
    for w in words[1:]:
        if w.bbox.x0 - right > max_gap:
            runs.append([w])
        else:
            runs[-1].append(w)
        right = w.bbox.x1 if from_previous else max(right, w.bbox.x1)
    return runs
