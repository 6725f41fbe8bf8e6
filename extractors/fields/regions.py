"""Where a label's value is printed: to its right on the same row, or directly below it.

The right-hand region runs from the end of the label to the next label on the row (any field's label:
"Exclusief BTW € 593,36   Subtotaal € 717,97" holds two label/value pairs). The region below is the
phrase under the label on the next row or the one after, when that phrase is not itself a label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from docroute.schemas.values import Word

from .labels import LabelHit
from .lines import Phrase, Row

SAME_PHRASE, SAME_ROW, BELOW = 1.0, 0.95, 0.85
# How far below a label its value may sit, in label heights.
BELOW_REACH = 2.6


@dataclass(frozen=True)
class Region:
    words: tuple[Word, ...]
    position: float  # SAME_PHRASE, SAME_ROW or BELOW: how typical the placement is
    page_number: int


def right_of(hit: LabelHit, row_hits: Sequence[LabelHit]) -> Region | None:
    """Words after the label up to the next label on the row."""
    stop = min(
        ((h.phrase, h.start) for h in row_hits if (h.phrase, h.start) >= (hit.phrase, hit.end)),
        default=(len(hit.row.phrases), 0),
    )
    words: list[Word] = []
    same_phrase = True
    for p_idx in range(hit.phrase, len(hit.row.phrases)):
        phrase = hit.row.phrases[p_idx]
        begin = hit.end if p_idx == hit.phrase else 0
        end = stop[1] if p_idx == stop[0] else len(phrase.words)
        if p_idx > stop[0]:
            break
        chunk = phrase.words[begin:end]
        if p_idx == hit.phrase and not chunk:
            same_phrase = False
        words.extend(chunk)
    if not words:
        return None
    return Region(tuple(words), SAME_PHRASE if same_phrase else SAME_ROW, hit.page_number)


def below(hit: LabelHit, rows: Sequence[Row], hits_at: dict[tuple[int, int], list[LabelHit]],
          max_rows: int = 2) -> Region | None:
    """The phrase under the label, on one of the next ``max_rows`` rows."""
    label = hit.bbox
    reach = BELOW_REACH * max(label.height, 1.0)
    top = hit.row.bbox.y1
    seen = 0
    for row in rows[hit.row.index + 1:]:
        if row.bbox.y0 - top > reach * (seen + 1):
            return None
        seen += 1
        best: tuple[float, int, Phrase] | None = None
        for p_idx, phrase in enumerate(row.phrases):
            b = phrase.bbox
            overlap = min(b.x1, label.x1) - max(b.x0, label.x0)
            if overlap <= 0:
                continue
            if best is None or overlap > best[0]:
                best = (overlap, p_idx, phrase)
        if best is not None:
            _, p_idx, phrase = best
            row_hits = hits_at.get((row.page_number, row.index), ())
            if any(h.phrase == p_idx and h.start == 0 for h in row_hits):
                return None  # the thing below is another label
            return Region(phrase.words, BELOW, row.page_number)
        if seen >= max_rows:
            return None
    return None
