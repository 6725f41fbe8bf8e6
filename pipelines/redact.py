"""PII redaction applied to a document's text, elements and extraction values before they are written."""

from __future__ import annotations

from collections.abc import Sequence

from docroute.schemas import DocumentResult


def redact(result: DocumentResult, kinds: Sequence[str]) -> DocumentResult:
    """Return ``result`` with the given PII kinds redacted. No kinds: unchanged."""
    if not kinds:
        return result
    raise NotImplementedError("PII redaction is not implemented yet")
