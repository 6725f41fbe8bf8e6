"""``docroute.extract(path, schema=MyModel, **settings)``: one document, in memory, from Python.

The same pipeline as a run (``process_document``: pages, OCR, layout, routing, the field extractor,
the VLM stage when one is configured, validation) with no Prefect, no worker process and nothing
written. Returns an :class:`Extracted`: the validated model instance and, per field, its confidence and
provenance, with the review reasons.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from docroute.pipelines.process import process_document
from docroute.pipelines.settings import Settings
from docroute.schemas import DocumentResult, FieldValue
from docroute.schemas.registry import get_schema
from docroute.schemas.targets import TargetSchema


class Extracted(BaseModel):
    """One document extracted into one schema (frozen)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    value: BaseModel | None  # the validated schema instance; None when the document failed
    fields: dict[str, FieldValue]  # per field: value, confidence, source, page_number, bbox, raw_text
    needs_review: bool
    review_reasons: tuple[str, ...]
    validation_errors: tuple[str, ...] = ()
    status: str  # ok | partial | failed (DocumentResult.status)
    error: str | None = None
    result: DocumentResult  # everything a run would write for the document (pages, elements, signals)

    def confidence(self, name: str) -> float | None:
        fv = self.fields.get(name)
        return fv.confidence if fv else None


def extract(path: str | Path, schema: type[TargetSchema] | str = "invoice", **settings: Any) -> Extracted:
    """Extract one document into ``schema`` (a ``TargetSchema`` class, a built-in name or ``module:Class``).

    ``settings`` are :class:`~docroute.pipelines.settings.Settings` fields (``layout=...``, ``ocr=...``,
    ``vlm={"backend": "none"}``...); unset ones come from the environment and ``docroute.toml`` as for a run.
    """
    cls = get_schema(schema) if isinstance(schema, str) else schema
    if not (isinstance(cls, type) and issubclass(cls, TargetSchema)):
        raise TypeError(f"schema must be a TargetSchema subclass, a built-in name or module:Class, not {schema!r}")
    result = process_document(Path(path), Settings(workers=1, **settings), schema=cls)
    ex = next((e for e in result.extractions if e.schema_name == cls.schema_name), None)
    if ex is None:
        return Extracted(value=None, fields={}, needs_review=True, review_reasons=("document_failed",),
                         status=result.status, error=result.error, result=result)
    try:
        value = cls.model_validate(ex.data)
    except ValueError:  # the schema's own validators reject it (a failed check): the fields as extracted
        value = cls.model_construct(**ex.data)
    return Extracted(value=value, fields=dict(ex.fields), needs_review=ex.needs_review,
                     review_reasons=ex.review_reasons, validation_errors=ex.validation_errors,
                     status=result.status, error=result.error, result=result)

