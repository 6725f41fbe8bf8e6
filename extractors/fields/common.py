"""Building blocks shared by every field extractor (the invoice rules and the schema-driven engine).

A ``Candidate`` is one value found on the page with the words it was read from and how well it was
placed; ``to_field`` turns the chosen one into a ``FieldValue`` (confidence = word confidence x
quality; provenance = page, bbox, printed text, source). ``clean_id`` / ``valid_id`` read identifiers
("No. 42-A", "#INV-7").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from docroute.schemas.values import BBox, FieldValue, Word

from .amounts import numeric_core
from .dates import numeric_date_parts
from .lines import fold, word_confidence, words_source

FALLBACK = 0.6  # match quality of a value found by a fallback heuristic rather than next to its label


@dataclass(frozen=True)
class Candidate:
    value: object
    words: tuple[Word, ...]
    quality: float  # label strength x placement x parse cleanliness (0..1)
    page_number: int
    order: tuple[int, float]  # (page, y): where it is printed


def to_field(name: str, cand: Candidate, *, source: str | None = None, quality: float | None = None) -> FieldValue:
    words = cand.words
    q = cand.quality if quality is None else quality
    conf = (word_confidence(words) if words else 1.0) * q
    return FieldValue(
        name=name, value=cand.value, confidence=round(max(0.0, min(1.0, conf)), 4),
        source=source or (words_source(words) if words else "derived"),
        page_number=cand.page_number,
        bbox=BBox.enclosing([w.bbox for w in words]) if words else None,
        raw_text=" ".join(w.text for w in words) if words else None,
    )


def order_of(words: Sequence[Word], page_number: int) -> tuple[int, float]:
    return (page_number, min(w.bbox.y0 for w in words) if words else 0.0)


def clean_id(text: str) -> str:
    t = text.strip().strip(",;")
    while t[:1] in {"#", ":", "°"}:
        t = t[1:].strip()
    for prefix in ("n°", "nº", "no.", "nr."):
        if fold(t).startswith(prefix) and len(t) > len(prefix):
            t = t[len(prefix):].strip()
    return t.rstrip(".:")


def valid_id(text: str) -> bool:
    if len(text) < 2 or not any(c.isdigit() for c in text) or text.endswith("%"):
        return False
    if numeric_date_parts(text) is not None:
        return False
    core = numeric_core(text)
    if core is not None:  # a plain number: an id only without decimals ("42183017", not "41,31")
        seps = [c for c in core if c in ".,"]
        if seps and len(core) - core.rfind(seps[-1]) - 1 in (1, 2):
            return False
    return True
