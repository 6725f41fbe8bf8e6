"""A till receipt's printed lines, its label lexicon and its amounts: what receipt.py and receipt_total.py share.

Lines are the page's words grouped by position (each line's band is its first word's box, so a skewed
scan does not chain neighbouring lines into one). Labels are compared case- and accent-free as whole
words, and a word of five letters or more may differ from the lexicon's by one OCR slip ("Totel",
"Chenge") unless the word is itself another entry of the lexicon ("charge" is not "change").
Amounts: dot or comma decimals with two digits, thousands grouped by the other mark, a currency
before them, OCR confusions repaired inside number-like tokens only.
"""

from __future__ import annotations

import re
import statistics
import tomllib
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path

from rapidfuzz.distance import Levenshtein

from docroute.extractors.doctype import fold
from docroute.extractors.lines import visual_lines
from docroute.schemas import BBox, FieldValue, ParsedPage, Word

LABELS = Path(__file__).with_name("receipt_labels.toml")
MIN_SKEW, MAX_SKEW = 0.01, 0.2  # line slopes (dy/dx) treated as level, and the most corrected
MIN_SKEW_PAIRS = 5
SKEW_REACH = 6  # the slope at a word: the median over its neighbours within this many line heights
MIN_FUZZY = 5  # words this long may differ from a label word by one edit
_DIGITISH = str.maketrans({"O": "0", "o": "0", "D": "0", "l": "1", "I": "1", "|": "1", "B": "8", "Z": "2"})
_NUMBERISH = re.compile(r"(?<![A-Za-z])[0-9OolIDBZ|]*\d[0-9OolIDBZ|]*[.,][0-9OolIDBZ|]{2}(?![A-Za-z])")
_AMOUNT = re.compile(
    r"(?<![\w.,/])(?P<neg>-+|\()?\s?(?P<cur>R[MNH]|EUR|EURO|USD|\$|€|£|S(?=[.\d]))?\s?"
    r"(?P<int>\d{1,3}(?:([.,'])\d{3})(?:\4\d{3})*|\d+)?(?P<sep>[.,])\s?(?P<dec>\d{2})(?![\d%])(?!\s?%)(?![.,/-]\d)")
# an amount whose decimal mark OCR read as a dash ("19-80"), taken only at the end of a labelled line
_DASHED = re.compile(r"(?<![\d.,/-])(\d{1,4})-(\d{2})\s*$")


@cache
def labels() -> dict[str, dict[str, tuple[str, ...]]]:
    data = tomllib.loads(LABELS.read_text(encoding="utf-8"))
    return {k: {kk: tuple(fold(v).strip() for v in vs) for kk, vs in d.items()} for k, d in data.items()}


@cache
def _lexicon_words() -> frozenset[str]:
    return frozenset(w for d in labels().values() for vs in d.values() for v in vs for w in v.split())


def _same_word(seen: str, want: str) -> bool:
    if seen == want:
        return True
    if len(want) < MIN_FUZZY or len(seen) < MIN_FUZZY - 1 or seen in _lexicon_words():
        return False
    return Levenshtein.distance(seen, want, score_cutoff=1) <= 1


def find(folded: str, phrases: Sequence[str], *, start: bool = False, fuzzy: bool = True) -> str | None:
    """The first of ``phrases`` printed in ``folded`` (at its start with ``start``), OCR slips allowed
    unless not ``fuzzy``; a phrase of several words also matches them run together into one, as OCR
    prints a narrow gap ("TAXINVOICE", "GRANDTOTAL")."""
    words = folded.split()
    same = _same_word if fuzzy else str.__eq__
    for phrase in phrases:
        want = phrase.split()
        forms = [want, ["".join(want)]] if len(want) > 1 else [want]
        for form in forms:
            for s in ([0] if start else range(len(words) - len(form) + 1)):
                if len(words) - s >= len(form) and all(same(words[s + k], w) for k, w in enumerate(form)):
                    return phrase
    return None


@dataclass(frozen=True)
class Line:
    words: tuple[Word, ...]

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)

    @property
    def folded(self) -> str:
        return fold(self.text)

    @property
    def bbox(self) -> BBox:
        return BBox.enclosing([w.bbox for w in self.words])

    @property
    def confidence(self) -> float:
        return sum(w.confidence for w in self.words) / len(self.words)


def _slopes(words: Sequence[Word]) -> list[tuple[float, float]]:
    """(height on the page, slope dy/dx) of each word and its neighbour to the right on its line."""
    out = []
    by_y = sorted(words, key=lambda w: w.bbox.cy)
    ys = [w.bbox.cy for w in by_y]
    for w in words:
        near = by_y[bisect_left(ys, w.bbox.cy - 0.5 * w.bbox.height):bisect_right(ys, w.bbox.cy + 0.5 * w.bbox.height)]
        right = [v for v in near if 0 <= v.bbox.x0 - w.bbox.x1 < 2 * w.bbox.height
                 and abs(v.bbox.cy - w.bbox.cy) < 0.5 * w.bbox.height]
        if right:
            v = min(right, key=lambda v: v.bbox.x0)
            out.append((w.bbox.cy, (v.bbox.cy - w.bbox.cy) / max(1.0, v.bbox.cx - w.bbox.cx)))
    return out


def page_lines(page: ParsedPage) -> list[Line]:
    """The page's printed lines, top to bottom, words left to right. On a skewed or curled scan each
    word's box (upright, so taller than its text) is first turned level: moved by the slope of the
    lines around it and cut to its text."""
    words = page.words
    slopes = _slopes(words)
    if len(slopes) < MIN_SKEW_PAIRS or abs(statistics.median(s for _, s in slopes)) < MIN_SKEW and \
            max(abs(s) for _, s in slopes) < MAX_SKEW / 2:
        return [Line(tuple(sorted(ws, key=lambda w: w.bbox.x0))) for ws in visual_lines(words, lookback=3)]
    reach = SKEW_REACH * statistics.median(w.bbox.height for w in words)

    def slope_at(y: float) -> float:
        near = [s for cy, s in slopes if abs(cy - y) <= reach] or [s for _, s in slopes]
        return max(-MAX_SKEW, min(MAX_SKEW, statistics.median(near)))

    boxes = {}
    for w in words:
        b, slope = w.bbox, slope_at(w.bbox.cy)
        cy = b.cy - slope * b.cx
        half = max(0.3 * b.height, b.height - abs(slope) * b.width) / 2
        boxes[id(w)] = BBox(x0=b.x0, y0=cy - half, x1=b.x1, y1=cy + half)
    return [Line(tuple(sorted(ws, key=lambda w: w.bbox.x0)))
            for ws in visual_lines(words, box=lambda w: boxes[id(w)], lookback=3)]


def field(name: str, value, conf: float, page: ParsedPage, lines: Sequence[Line]) -> FieldValue:
    return FieldValue(name=name, value=value, confidence=round(max(0.05, min(0.95, conf)), 3),
                      source="ocr" if not page.has_text_layer else "layout", page_number=page.page_number,
                      bbox=BBox.enclosing([ln.bbox for ln in lines]), raw_text=" | ".join(ln.text for ln in lines))


@dataclass(frozen=True)
class Printed:
    """An amount printed on a line, the text before it (its label) and other readings of it."""

    value: Decimal
    label: str  # folded
    alternatives: tuple[Decimal, ...] = ()


def _repair(text: str) -> str:
    """OCR confusions inside number-like tokens only (1O.5O -> 10.50), never in words."""
    return _NUMBERISH.sub(lambda m: m.group(0).translate(_DIGITISH), text)


def amounts(text: str, *, dashed: bool = False) -> list[Printed]:
    """The amounts printed in ``text``, left to right, each with the label text before it.

    ``S8.20`` reads as $8.20 with 58.20 as the other reading; ``S.90`` as 5.90. With ``dashed``, a
    line that prints no other amount may end in one whose decimal mark OCR read as a dash."""
    text = _repair(text)
    out: list[Printed] = []
    last = 0
    for m in _AMOUNT.finditer(text):
        whole = re.sub(r"[.,']", "", m.group("int") or "")
        cur = m.group("cur")
        alts: tuple[Decimal, ...] = ()
        if cur == "S":
            if not whole:
                whole = "5"
            else:
                alts = (Decimal(f"5{whole}.{m.group('dec')}"),)
        try:
            value = Decimal(f"{whole or '0'}.{m.group('dec')}")
        except InvalidOperation:
            continue
        if (m.group("neg") or "").startswith("-") or (m.group("neg") == "(" and text[m.end():m.end() + 1] == ")"):
            value = -value
        out.append(Printed(value, fold(text[last:m.start()]), alts))
        last = m.end()
    if not out and dashed and (m := _DASHED.search(text)):
        out.append(Printed(Decimal(f"{m.group(1)}.{m.group(2)}"), fold(text[:m.start()])))
    return out
