"""Small geometry and text helpers shared by the detectors."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from docroute.extractors.lines import split_at_gaps, visual_lines
from docroute.schemas import BBox, Word

_NUMBER = re.compile(r"^[(\[]?[-+−–]?[$€£¥₹%]?\d[\d.,' ]*%?[)\]]?[*¹²³⁴⁵⁶⁷⁸⁹⁰a-z]?$")
_LEADER = re.compile(r"^[.…·_]+$")  # dot leaders between a row label and its numbers
_DASH = {"-", "–", "—", "−", "..", "...", "…", "n/a", "na", "x", "·"}


def quantile(values: Sequence[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return 0.0
    pos = (len(s) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def median(values: Sequence[float], default: float = 0.0) -> float:
    return quantile(values, 0.5) if values else default


def is_number(text: str) -> bool:
    """A numeric table value: 1,234.5  -3  12%  (4.2)  $10  2.3a; a dash stands for a missing value."""
    t = text.strip().lower()
    return bool(t) and (t in _DASH or bool(_NUMBER.match(t)))


def grow(b: BBox, d: float) -> BBox:
    return BBox(x0=b.x0 - d, y0=b.y0 - d, x1=b.x1 + d, y1=b.y1 + d)


def clip(b: BBox, width: float, height: float) -> BBox:
    return BBox(x0=max(0.0, b.x0), y0=max(0.0, b.y0), x1=min(width, b.x1), y1=min(height, b.y1))


def merge_boxes(boxes: Iterable[BBox], gap: float) -> list[BBox]:
    """Union boxes that lie within ``gap`` of each other, until none do."""
    out = list(boxes)
    changed = True
    while changed:
        changed = False
        merged: list[BBox] = []
        for b in out:
            for i, m in enumerate(merged):
                if grow(m, gap).intersection_area(b) > 0:
                    merged[i] = m.union(b)
                    changed = True
                    break
            else:
                merged.append(b)
        out = merged
    return out


@dataclass(frozen=True, slots=True)
class Segment:
    """Words of one text line that sit close together: a cell's text, a phrase."""

    words: tuple[Word, ...]
    x0: float
    y0: float
    x1: float
    y1: float
    numeric: bool

    @classmethod
    def of(cls, words: Sequence[Word]) -> Segment:
        return cls(
            words=tuple(words), x0=min(w.bbox.x0 for w in words), y0=min(w.bbox.y0 for w in words),
            x1=max(w.bbox.x1 for w in words), y1=max(w.bbox.y1 for w in words),
            numeric=all(is_number(w.text) for w in words),
        )

    @property
    def cx(self) -> float:
        return (self.x0 + self.x1) / 2

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)

    @property
    def bbox(self) -> BBox:
        return BBox(x0=self.x0, y0=self.y0, x1=self.x1, y1=self.y1)


@dataclass(frozen=True, slots=True)
class Line:
    segments: tuple[Segment, ...]
    x0: float
    y0: float
    x1: float
    y1: float

    @classmethod
    def of(cls, segments: Sequence[Segment]) -> Line:
        return cls(
            segments=tuple(segments), x0=min(s.x0 for s in segments), y0=min(s.y0 for s in segments),
            x1=max(s.x1 for s in segments), y1=max(s.y1 for s in segments),
        )

    @property
    def n_words(self) -> int:
        return sum(len(s.words) for s in self.segments)

    @property
    def bbox(self) -> BBox:
        return BBox(x0=self.x0, y0=self.y0, x1=self.x1, y1=self.y1)


def text_lines(words: Sequence[Word], gap_factor: float = 0.9) -> list[Line]:
    """Words grouped into visual lines (by vertical overlap), each split into segments at wide gaps.

    A gap wider than ``gap_factor`` times the line's median word height starts a new segment: in a
    table that is a new cell, in prose it never happens.
    """
    ws = sorted((w for w in words if w.text.strip() and not _LEADER.match(w.text.strip())), key=lambda w: w.bbox.x0)
    lines = [_line(row, gap_factor) for row in visual_lines(ws, lookback=1, grow=True, min_height=1.0)]
    lines.sort(key=lambda ln: ln.y0)
    return lines


def resplit(line: Line, gap_factor: float) -> Line:
    """The same line cut into segments at gaps wider than ``gap_factor`` word heights.

    Header cells sit closer together than body cells; a word space is about a quarter of a word's
    height, so 0.5 splits cells without splitting phrases.
    """
    return _line([w for s in line.segments for w in s.words], gap_factor)


def _line(words: Sequence[Word], gap_factor: float) -> Line:
    words = sorted(words, key=lambda w: w.bbox.x0)
    h = median([w.bbox.height for w in words], 8.0)
    return Line.of([Segment.of(s) for s in split_at_gaps(words, gap_factor * h)])
