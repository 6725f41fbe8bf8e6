"""Typed values read from the words of one region, by the kind of the schema field they fill.

The parsers are the invoice path's (``dates.find_dates``, ``amounts.find_amounts``/``parse_amount``):
the document's own number and date conventions (``NumberStyle``) apply to every schema. Each reader
returns ``(value, words, clean)`` or None; ``clean`` (0..1) says how typical the printed form was.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from rapidfuzz import fuzz

from docroute.schemas.values import Word

from .amounts import NumberStyle, find_amounts, parse_amount
from .common import clean_id, valid_id
from .currency import currency_code
from .dates import find_dates
from .lines import fold
from .schema_labels import BOOL, CHOICE, DATE, DECIMAL, INT, TEXT, FieldSpec

Read = tuple[object, tuple[Word, ...], float]
CHECKED = frozenset({"x", "[x]", "(x)", "|x|", "☒", "☑", "✓", "✔", "✗", "✘", "yes", "ja", "oui", "si", "true"})
UNCHECKED = frozenset({"☐", "[]", "[ ]", "o", "no", "nein", "non", "false"})
_GAP = 1.5  # a gap wider than this many word heights ends a text value


def first_run(words: Sequence[Word]) -> tuple[Word, ...]:
    """The words up to the first wide horizontal gap (or a line change): one printed value."""
    if not words:
        return ()
    height = statistics.median(w.bbox.height for w in words) or 1.0
    out = [words[0]]
    for w in words[1:]:
        prev = out[-1]
        if w.bbox.x0 - prev.bbox.x1 > _GAP * height or w.bbox.y0 > prev.bbox.y1 or w.bbox.x0 < prev.bbox.x0:
            break
        out.append(w)
    return tuple(out)


def _text(spec: FieldSpec, words: Sequence[Word]) -> Read | None:
    words = [w for w in words if w.text.strip(":#|").strip()]
    run = first_run(words)
    if not run:
        return None
    text = " ".join(w.text for w in run).strip().strip(":|").strip()
    if spec.is_identifier:
        text = clean_id(text)
        if not valid_id(text.replace(" ", "")):
            return None
    if not any(c.isalnum() for c in text):
        return None
    return text, run, 1.0


def _decimal(words: Sequence[Word], style: NumberStyle) -> Read | None:
    amounts = find_amounts(words, style)
    if amounts:
        a = amounts[0]
        return a.value, a.words, a.clean
    return None


def _int(words: Sequence[Word], style: NumberStyle) -> Read | None:
    for w in words[:3]:
        parsed = parse_amount(w.text, style)
        if parsed is not None and parsed[0] == parsed[0].to_integral_value():
            return int(parsed[0]), (w,), 1.0
    return None


def _choice(spec: FieldSpec, words: Sequence[Word]) -> Read | None:
    run = first_run(words)
    best: tuple[float, object, tuple[Word, ...]] | None = None
    for printed, value in spec.choices:
        want = fold(printed)
        for w in run:
            exact = fold(w.text).strip(".:,") == want or (currency_code(w.text.strip(".:,")) or "") == printed
            score = 100.0 if exact else fuzz.ratio(fold(w.text), want)
            if score >= 90 and (best is None or score > best[0]):
                best = (score, value, (w,))
        if best is None and len(want.split()) > 1 and want in fold(" ".join(w.text for w in run)):
            best = (95.0, value, run)
    return (best[1], best[2], best[0] / 100) if best else None


def mark(words: Sequence[Word]) -> bool | None:
    for w in words:
        t = fold(w.text).strip(".:")
        if t in CHECKED:
            return True
        if t in UNCHECKED:
            return False
    return None


def read_value(spec: FieldSpec, words: Sequence[Word], style: NumberStyle) -> Read | None:
    """The value of ``spec``'s kind at the start of ``words`` (a region right of or below a label)."""
    if not words:
        return None
    if spec.kind == DATE:
        dates = find_dates(words, style)
        return (dates[0].value, dates[0].words, dates[0].clean) if dates else None
    if spec.kind == DECIMAL:
        return _decimal(words, style)
    if spec.kind == INT:
        return _int(words, style)
    if spec.kind == CHOICE:
        return _choice(spec, words)
    if spec.kind == BOOL:
        found = mark(first_run(words)[:2])
        return (found, first_run(words)[:1], 1.0) if found is not None else None
    if spec.kind == TEXT:
        return _text(spec, words)
    return None
