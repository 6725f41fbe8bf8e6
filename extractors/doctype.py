"""What kind of document this is: ``invoice``, ``receipt`` or ``other``, from its text and page shape.

The layout path fills the invoice schema for invoices and receipts (a receipt's number is its
``invoice_number``, its date the ``invoice_date``); for ``other`` (a letter, a report, a table, a chart)
no invoice field is guessed. The classifier is deliberately small and explainable: it counts the cues
of each class (``doctype_cues.toml``: names of the document, such as "invoice" or "Kassenbon", weigh 2;
typical terms, such as "due date" or "change", weigh 1), looks for a money total and for amounts, and
for the narrow page of a till receipt, and returns the class with its confidence and the evidence (the
counts it decided on), which land in the ``documents`` table.

A document with no money total and fewer than :data:`MIN_AMOUNTS` amounts is ``other`` whatever its
words; otherwise the class with the higher score wins, ``other`` when both are weak. The thresholds
were tuned on the tuning half of ../shared/realdocs only (bench/doctype_eval.py prints both halves).
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from docroute.schemas import DocumentType, ParsedPage

CUES = Path(__file__).with_name("doctype_cues.toml")
MIN_AMOUNTS = 2  # amounts on the page below which a document with no total label is not a bill
MIN_SCORE = 3.0  # a class needs at least this score to be chosen over ``other``
RECEIPT_SHAPE = 0.55  # width / height of a page at most this: a till receipt's long strip
WIDE_RECEIPT_LEAD = 1.0  # on a page that is not a narrow strip, receipt cues must lead by more than this
MIN_WORDS_FOR_OTHER = 40  # fewer words than this (an unreadable scan): ``other`` is said unsurely
_AMOUNT = re.compile(r"(?<![\d.,])\d{1,3}(?:[.,\s]\d{3})*[.,]\d{2}(?![\d])")


def fold(text: str) -> str:
    """Lower case, accents off, punctuation to spaces: how cues and text are compared."""
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " " + re.sub(r"[^a-z0-9#%]+", " ", text).strip() + " "


@cache
def cues() -> dict[str, dict[str, tuple[str, ...]]]:
    data = tomllib.loads(CUES.read_text(encoding="utf-8"))
    return {cls: {k: tuple(fold(v).strip() for v in vs) for k, vs in d.items()} for cls, d in data.items()}


def _count(text: str, phrases: Sequence[str]) -> tuple[int, str]:
    """How many of ``phrases`` occur in ``text``, and the text with them blanked (longest first, so a
    cue inside a longer phrase that was already counted is not counted again)."""
    n = 0
    for p in sorted(phrases, key=len, reverse=True):
        if f" {p} " in text:
            n += 1
            text = text.replace(f" {p} ", " | ")
    return n, text


def classify(pages: Sequence[ParsedPage]) -> DocumentType:
    """The document's type from its first pages (a bill says what it is on its first page or two)."""
    first = pages[:2]
    raw = "\n".join(p.text for p in first)
    c = cues()
    ev: dict[str, float] = {"words": float(len(raw.split()))}
    _, text = _count(fold(raw), c["neutral"]["phrases"])
    ev["total_label"] = float(_count(text, c["amounts"]["total"])[0] > 0)
    for cls in ("invoice", "receipt"):
        ev[f"{cls}_names"], text = _count(text, c[cls]["strong"])
        ev[f"{cls}_terms"], text = _count(text, c[cls]["weak"])
    ev = {k: float(v) for k, v in ev.items()}
    ev["amounts"] = float(len(_AMOUNT.findall(raw)))
    narrow = bool(first) and _narrow(first[0])
    ev["narrow_page"] = float(narrow)
    inv = 2 * ev["invoice_names"] + ev["invoice_terms"]
    rec = 2 * ev["receipt_names"] + ev["receipt_terms"] + (2.0 if narrow else 0.0)
    ev["invoice_score"], ev["receipt_score"] = inv, rec
    billish = ev["total_label"] or ev["amounts"] >= MIN_AMOUNTS
    named = ev["invoice_names"] + ev["receipt_names"] > 0
    if billish and (max(inv, rec) >= MIN_SCORE or named):
        # a full-width page is a receipt only when the receipt cues clearly lead: an invoice mentions
        # cash or a receipt more often than a till strip calls itself an invoice
        lead = 0.0 if narrow else WIDE_RECEIPT_LEAD
        best, score, other = ("receipt", rec, inv) if rec > inv + lead or (rec == inv and narrow) else ("invoice", inv, rec)
        return DocumentType(kind=best, confidence=_confidence(score - other), evidence=ev)
    if narrow and ev["amounts"] >= 1:  # a strip of paper with amounts: a receipt OCR could hardly read
        return DocumentType(kind="receipt", confidence=0.55, evidence=ev)
    # other: sure only when there is text to judge and it has (almost) no bill cue at all
    sure = ev["words"] >= MIN_WORDS_FOR_OTHER and (max(inv, rec) == 0 or (max(inv, rec) <= 1 and not billish))
    return DocumentType(kind="other", confidence=0.9 if sure else 0.6, evidence=ev)


def _narrow(page: ParsedPage) -> bool:
    """A till receipt's long strip: the page, or on a scan the box of its print (a receipt scanned on a
    full sheet), at most :data:`RECEIPT_SHAPE` as wide as it is high."""
    shapes = [(page.width, page.height)] + ([(page.print_box.width, page.print_box.height)] if page.print_box else [])
    return any(height and width / height <= RECEIPT_SHAPE for width, height in shapes)


# A document classified ``other`` gets no invoice fields (its row says not applicable); under this
# confidence it is also flagged for review (``document_type_uncertain``): a person decides.
NOT_APPLICABLE_MIN_CONFIDENCE = 0.7
BILL_SCHEMAS = ("invoice",)  # schemas that describe invoices and receipts


UNSURE_INVOICE = 0.6  # an invoice typed with at most this confidence (one cue point ahead of its receipt cues)


def field_rules(doctype: DocumentType) -> str:
    """Which field rules read a bill: ``invoice``, ``receipt``, or ``invoice_or_receipt`` for a document
    typed invoice only narrowly over its receipt cues (the receipt rules then fill what the invoice rules
    left empty: a till receipt that prints "TAX INVOICE" keeps its date and total)."""
    unsure = doctype.confidence <= UNSURE_INVOICE and doctype.evidence.get("receipt_score", 0.0) > 0
    return "invoice_or_receipt" if doctype.kind == "invoice" and unsure else doctype.kind


def schema_applies(schema_name: str, doctype: DocumentType) -> bool:
    """Whether to fill ``schema_name`` for a document of this type (other schemas always apply)."""
    return schema_name not in BILL_SCHEMAS or doctype.kind != "other"


def _confidence(margin: float) -> float:
    """A margin of cue points as a confidence in [0.5, 0.99]."""
    return round(min(0.99, 0.5 + 0.1 * max(0.0, margin)), 2)
