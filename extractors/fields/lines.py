"""Words -> phrases -> rows: the page geometry that the field extractor reads.

A *phrase* is a run of words on one visual line with no wide gap inside (a label, a value, a table
cell). A *row* is every phrase on the same visual line of the page, left to right. Parser lines
(``Word.block``/``Word.line``) seed the phrases; vertical overlap joins them into rows, so a label and a
value printed in different text blocks still meet on one row.
"""

from __future__ import annotations

import statistics
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

from docroute.extractors.lines import parser_lines, split_at_gaps, visual_lines
from docroute.schemas.values import BBox, ParsedPage, Word

# A gap wider than this many line heights splits a parser line into two phrases.
PHRASE_GAP = 1.1
# Phrases of one row closer than this many line heights are one phrase (a line split into blocks).
JOIN_GAP = 0.45
# Two boxes are on one row when they overlap vertically by this share of the smaller height.
ROW_OVERLAP = 0.5

# Prefixes that are glued to the value that follows them ("n°562044387", "#A-1").
_GLUED_PREFIXES = ("n°", "nº", "no.", "nr.", "#")


@dataclass(frozen=True)
class Phrase:
    words: tuple[Word, ...]
    page_number: int

    @cached_property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)

    @cached_property
    def bbox(self) -> BBox:
        return BBox.enclosing([w.bbox for w in self.words])

    @property
    def confidence(self) -> float:
        return word_confidence(self.words)

    @cached_property
    def height(self) -> float:
        return statistics.median(w.bbox.height for w in self.words)


@dataclass(frozen=True)
class Row:
    phrases: tuple[Phrase, ...]
    page_number: int
    index: int

    @cached_property
    def words(self) -> tuple[Word, ...]:
        return tuple(w for p in self.phrases for w in p.words)

    @cached_property
    def text(self) -> str:
        return "  ".join(p.text for p in self.phrases)

    @cached_property
    def bbox(self) -> BBox:
        return BBox.enclosing([p.bbox for p in self.phrases])

    @cached_property
    def height(self) -> float:
        return statistics.median(w.bbox.height for w in self.words)


def word_confidence(words: Iterable[Word]) -> float:
    confs = [w.confidence for w in words]
    return statistics.fmean(confs) if confs else 0.0


def words_source(words: Iterable[Word]) -> str:
    return "ocr" if any(w.source == "ocr" for w in words) else "layout"


def fold(text: str) -> str:
    """Lower case without accents, for comparing labels ("Fällig" -> "fallig")."""
    if text.isascii():  # NFKD leaves ASCII as it is, with no combining marks to drop
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def split_glued(word: Word) -> list[Word]:
    """Split a word that glues a label to its value: ``n°562044387`` and ``Total:12.00``."""
    text = word.text
    low = text.casefold()
    cut = 0
    for prefix in _GLUED_PREFIXES:
        if low.startswith(prefix) and len(text) > len(prefix) and text[len(prefix)].isalnum():
            cut = len(prefix)
            break
    if not cut:
        head, sep, tail = text.partition(":")
        if sep and head and tail and head.isalpha() and not tail[0].isspace() and tail[0] != "/":
            cut = len(head) + 1
    if not cut:
        return [word]
    share = cut / len(text)
    x_mid = word.bbox.x0 + share * word.bbox.width
    left = word.model_copy(update={"text": text[:cut], "bbox": word.bbox.model_copy(update={"x1": x_mid})})
    right = word.model_copy(update={"text": text[cut:], "bbox": word.bbox.model_copy(update={"x0": x_mid})})
    return [left, *split_glued(right)]


def skew_slope(words: Sequence[Word]) -> float:
    """How much the text lines climb per point of x (0 for a straight page), from the parser's lines.

    A photographed or badly scanned page has tilted lines; grouping words into rows then compares
    their heights after removing the tilt (a shear, the small-angle rotation).
    """
    slopes = []
    for group in parser_lines(words):
        if len(group) < 3:
            continue
        group = sorted(group, key=lambda w: w.bbox.x0)
        first, last = group[0].bbox, group[-1].bbox
        span = last.cx - first.cx
        if span < 60:
            continue
        # bottoms of words are baselines or descenders; the median bottom of each end is steadier
        left = statistics.median(w.bbox.y1 for w in group[: max(1, len(group) // 3)])
        right = statistics.median(w.bbox.y1 for w in group[-max(1, len(group) // 3):])
        lx = statistics.median(w.bbox.cx for w in group[: max(1, len(group) // 3)])
        rx = statistics.median(w.bbox.cx for w in group[-max(1, len(group) // 3):])
        if rx - lx > 40:
            slopes.append((right - left) / (rx - lx))
    if len(slopes) < 3:
        return 0.0
    slope = statistics.median(slopes)
    return slope if abs(slope) > 0.003 else 0.0


def _phrases_from_parser_lines(words: Sequence[Word], page_number: int, key) -> list[Phrase]:
    phrases: list[Phrase] = []
    for group in parser_lines(words):
        # one parser line may still hold several visual lines (OCR line numbers restart per paragraph)
        for line in visual_lines(group, key, overlap=0.2):
            line.sort(key=lambda w: w.bbox.x0)
            height = statistics.median(w.bbox.height for w in line)
            phrases += [Phrase(tuple(run), page_number) for run in split_at_gaps(line, PHRASE_GAP * height, from_previous=True)]
    return phrases


def page_rows(page: ParsedPage) -> tuple[Row, ...]:
    """The page's rows, top to bottom; each row's phrases left to right."""
    words = [part for w in page.words if w.text.strip() for part in split_glued(w)]
    if not words:
        return ()
    slope = skew_slope(words)

    def level(b: BBox) -> BBox:  # the box with the page's tilt taken out
        return BBox(x0=b.x0, y0=b.y0 - slope * b.cx, x1=b.x1, y1=b.y1 - slope * b.cx) if slope else b

    phrases = _phrases_from_parser_lines(words, page.page_number, lambda w: level(w.bbox))
    rows: list[Row] = []
    for members in visual_lines(phrases, lambda p: level(p.bbox), overlap=ROW_OVERLAP):
        members.sort(key=lambda p: p.bbox.x0)
        merged = [members[0]]
        for p in members[1:]:
            last = merged[-1]
            gap = p.bbox.x0 - last.bbox.x1
            if gap < JOIN_GAP * min(last.height, p.height):
                merged[-1] = Phrase(last.words + p.words, page.page_number)
            else:
                merged.append(p)
        rows.append(Row(tuple(merged), page.page_number, len(rows)))
    rows.sort(key=lambda r: level(r.bbox).cy)
    return tuple(Row(r.phrases, r.page_number, i) for i, r in enumerate(rows))
