"""PII redaction applied to a document's text, elements and extraction values before they are written.

``redact(result, options)`` runs at the end of ``process_document`` (in the worker), so no unredacted
text reaches the sink, the progress events or the run summary. It replaces every detection (see
``pipelines/pii.py``) with its kind's token (``[EMAIL]``, ``[PHONE]``, ``[IBAN]``, ``[CARD]``,
``[SSN]``) in:

- pages: ``text``, and every word of the page (words are matched line by line, so a phone number
  spread over several words is found; each of its words becomes the token);
- elements: ``text`` and the text of every table cell (written as ``table_html``);
- extractions: every string value of the extracted data (nested line items included), each field's
  value and ``raw_text`` (``field_provenance``), and every string inside ``raw_json``.

What was redacted is recorded on the result (``DocumentResult.redactions``; the ``documents``
table's ``redactions`` column): kind, table, column, page, element id or field path, and count. It
never records the redacted values.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from docroute.pipelines import pii
from docroute.schemas import DocumentResult, Element, Extraction, PageResult, Redaction, Word

_TAG = re.compile(r"(<[^>]*>)")
DEFAULT_PHONE_REGIONS = ("US", "GB", "DE", "FR")
PiiKind = Literal["email", "phone", "iban", "card", "ssn"]


class RedactOptions(BaseModel):
    """Redaction's options, nested in Settings as ``redact`` (``--redact email,phone``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kinds: tuple[PiiKind, ...] = Field((), description="PII kinds to redact from text, elements and extracted values "
                                        "before anything is written: email, phone, iban, card, ssn")
    phone_regions: tuple[str, ...] = Field(DEFAULT_PHONE_REGIONS, description="regions whose national phone "
                                           "formats are recognised (ISO 3166 codes); +NN numbers are recognised whatever the region")

    @field_validator("kinds", "phone_regions", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        """"email,phone" (CLI, environment) or a JSON list, as well as a list."""
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return tuple(json.loads(value))
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return value

Key = tuple[str, str, str, int | None, str | None]  # kind, table, column, page, ref


class _Redactor:
    def __init__(self, kinds: Sequence[str], phone_regions: Sequence[str]):
        unknown = set(kinds) - set(pii.KINDS)
        if unknown:
            raise ValueError(f"unknown PII kind(s) {sorted(unknown)}; known: {', '.join(pii.KINDS)}")
        self.kinds = tuple(kinds)
        self.regions = tuple(phone_regions)
        self.counts: Counter[Key] = Counter()

    def text(self, text: str | None, table: str, column: str, page: int | None = None, ref: str | None = None) -> str | None:
        if not text:
            return text
        spans = pii.find(text, self.kinds, self.regions)
        for span in spans:
            self.counts[(span.kind, table, column, page, ref)] += 1
        return pii.replace(text, spans) if spans else text

    def html(self, html: str | None, table: str, column: str, page: int | None, ref: str | None) -> str | None:
        if not html:
            return html
        parts = _TAG.split(html)  # odd indexes are tags
        return "".join(p if i % 2 else self.text(p, table, column, page, ref) for i, p in enumerate(parts))

    def value(self, value: Any, table: str, column: str, path: str) -> Any:
        """Strings anywhere inside a value (dicts, lists, tuples) redacted; other types kept."""
        if isinstance(value, str):
            return self.text(value, table, column, None, path)
        if isinstance(value, dict):
            return {k: self.value(v, table, column, f"{path}.{k}") for k, v in value.items()}
        if isinstance(value, list | tuple):
            out = [self.value(v, table, column, f"{path}[{i}]") for i, v in enumerate(value, start=1)]
            return type(value)(out) if isinstance(value, tuple) else out
        return value

    def records(self) -> tuple[Redaction, ...]:
        return tuple(
            Redaction(kind=k, table=t, column=c, page_number=p, ref=r, count=n)
            for (k, t, c, p, r), n in sorted(self.counts.items(), key=lambda kv: tuple(str(x) for x in kv[0]))
        )


def _words(r: _Redactor, words: tuple[Word, ...]) -> tuple[Word, ...]:
    """Redact words line by line: detect on the joined line, replace every word a detection touches."""
    if not words:
        return words
    out = list(words)
    lines: dict[tuple[int, int], list[int]] = {}
    for i, w in enumerate(words):
        lines.setdefault((w.block, w.line), []).append(i)
    for indexes in lines.values():
        joined, offsets = "", []
        for i in indexes:
            if joined:
                joined += " "
            offsets.append((len(joined), len(joined) + len(words[i].text), i))
            joined += words[i].text
        for span in pii.find(joined, r.kinds, r.regions):
            for start, end, i in offsets:
                if start < span.end and span.start < end:
                    out[i] = out[i].model_copy(update={"text": pii.TOKENS[span.kind]})
    return tuple(out)


def _element(r: _Redactor, e: Element) -> Element:
    text = r.text(e.text, "elements", "text", e.page_number, e.element_id)
    table = e.table
    if table is not None:  # its cells are written as table_html
        cells = [c.model_copy(update={"text": r.text(c.text, "elements", "table_html", e.page_number, e.element_id)})
                 for c in table.cells]
        if cells != table.cells:
            table = table.model_copy(update={"cells": cells})
    return e.model_copy(update={"text": text, "table": table}) if (text, table) != (e.text, e.table) else e


def _page(r: _Redactor, p: PageResult) -> PageResult:
    parsed = p.parsed
    update = {
        "text": r.text(parsed.text, "pages", "text", parsed.page_number),
        "words": _words(r, parsed.words),
        "elements": tuple(_element(r, e) for e in parsed.elements),
    }
    return p.model_copy(update={"parsed": parsed.model_copy(update=update)})


def _raw_json(r: _Redactor, raw: str, table: str) -> str:
    try:
        data = json.loads(raw)
    except ValueError:
        return r.text(raw, table, "raw_json") or raw
    redacted = r.value(data, table, "raw_json", "$")
    return json.dumps(redacted, sort_keys=True, ensure_ascii=False) if redacted != data else raw


def _extraction(r: _Redactor, ex: Extraction) -> Extraction:
    table = f"extractions/{ex.schema_name}"
    data = {k: r.value(v, table, k, k) for k, v in ex.data.items()}
    quiet = _Redactor(r.kinds, r.regions)  # field values are not written (data is): redact, do not count
    fields = {
        name: fv.model_copy(update={
            "value": quiet.value(fv.value, table, name, name),
            "raw_text": r.text(fv.raw_text, table, "field_provenance.raw_text", fv.page_number, name),
        })
        for name, fv in ex.fields.items()
    }
    return ex.model_copy(update={"data": data, "fields": fields, "raw_json": _raw_json(r, ex.raw_json, table)})


def redact(result: DocumentResult, options: RedactOptions) -> DocumentResult:
    """Return ``result`` with the PII kinds of ``options`` redacted and recorded. No kinds: unchanged."""
    kinds, phone_regions = options.kinds, options.phone_regions
    if not kinds:
        return result
    r = _Redactor(kinds, phone_regions)
    pages = tuple(_page(r, p) for p in result.pages)
    extractions = tuple(_extraction(r, ex) for ex in result.extractions)
    return result.model_copy(update={"pages": pages, "extractions": extractions, "redactions": r.records()})
