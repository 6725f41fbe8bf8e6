"""The warehouse contract: explicit Arrow schemas of the five output tables (Delta Lake tables since 2).

Column names and types are stable and versioned (CONTRACT_VERSION); a new column is nullable. The
extraction table's typed columns are derived from the target schema: dates -> date32, Decimal ->
decimal128(18, 4), nested models -> struct, lists -> list.
"""

from __future__ import annotations

import datetime as dt
import types
import typing
from decimal import Decimal

import pyarrow as pa
from pydantic import BaseModel

CONTRACT_VERSION = "2"  # 2: Delta Lake tables (same columns and types as 1)
MONEY = pa.decimal128(18, 4)
TS = pa.timestamp("us", tz="UTC")

REDACTION = pa.struct([
    ("kind", pa.string()),
    ("table", pa.string()),
    ("column", pa.string()),
    ("page_number", pa.int32()),
    ("ref", pa.string()),
    ("count", pa.int32()),
])

DOCUMENTS = pa.schema([
    ("doc_id", pa.string()),
    ("source_path", pa.string()),
    ("file_name", pa.string()),
    ("mime_type", pa.string()),
    ("size_bytes", pa.int64()),
    ("n_pages", pa.int32()),
    ("status", pa.string()),
    ("error", pa.string()),
    ("schema_name", pa.string()),
    ("schema_version", pa.string()),
    ("duration_ms", pa.float64()),
    ("run_id", pa.string()),
    ("processed_at", TS),
    ("pipeline_version", pa.string()),
    # PII redacted from this document's rows (null: redaction was off; empty: on, nothing found)
    ("redactions", pa.list_(REDACTION)),
    # invoice, receipt or other (extractors/doctype.py), how sure, and the cue counts it decided on
    ("document_type", pa.string()),
    ("document_type_confidence", pa.float64()),
    ("document_type_evidence", pa.map_(pa.string(), pa.float64())),
])

PAGES = pa.schema([
    ("doc_id", pa.string()),
    ("page_number", pa.int32()),
    ("width", pa.float64()),
    ("height", pa.float64()),
    ("has_text_layer", pa.bool_()),
    ("parser", pa.string()),
    ("route", pa.string()),
    ("route_reasons", pa.list_(pa.string())),
    ("route_scores", pa.map_(pa.string(), pa.float64())),
    ("route_explanation", pa.string()),
    ("policy_version", pa.string()),
    ("signals", pa.map_(pa.string(), pa.float64())),
    ("vlm_status", pa.string()),
    ("ocr_confidence", pa.float64()),
    ("text", pa.string()),
    ("n_words", pa.int32()),
    ("n_elements", pa.int32()),
    ("duration_ms", pa.float64()),
    ("run_id", pa.string()),
    # the router's candidate regions, routed or not (pipelines/route.py); address = doc_id/p3/table/2
    ("route_regions", pa.list_(pa.struct([
        ("address", pa.string()),
        ("kind", pa.string()),
        ("reason", pa.string()),
        ("route", pa.string()),
        ("score", pa.float64()),
        ("x0", pa.float64()),
        ("y0", pa.float64()),
        ("x1", pa.float64()),
        ("y1", pa.float64()),
        ("source", pa.string()),
        ("evidence", pa.map_(pa.string(), pa.float64())),
        ("why", pa.string()),
    ]))),
    ("vlm_scope", pa.string()),
    # what drew the page: pymupdf, or poppler where MuPDF failed on it; renderer_note says why (null: before)
    ("renderer", pa.string()),
    ("renderer_note", pa.string()),
])

ELEMENTS = pa.schema([
    ("doc_id", pa.string()),
    ("page_number", pa.int32()),
    ("element_id", pa.string()),
    ("kind", pa.string()),
    ("text", pa.string()),
    ("x0", pa.float64()),
    ("y0", pa.float64()),
    ("x1", pa.float64()),
    ("y1", pa.float64()),
    ("confidence", pa.float64()),
    ("source", pa.string()),
    ("table_html", pa.string()),
    ("run_id", pa.string()),
])

PROVENANCE = pa.struct([
    ("field", pa.string()),
    ("page_number", pa.int32()),
    ("x0", pa.float64()),
    ("y0", pa.float64()),
    ("x1", pa.float64()),
    ("y1", pa.float64()),
    ("raw_text", pa.string()),
])

EXTRACTION_HEAD = [("doc_id", pa.string()), ("file_name", pa.string())]
EXTRACTION_TAIL = [
    ("field_confidence", pa.map_(pa.string(), pa.float64())),
    ("field_source", pa.map_(pa.string(), pa.string())),
    ("field_provenance", pa.list_(PROVENANCE)),
    ("needs_review", pa.bool_()),
    ("review_reasons", pa.list_(pa.string())),
    ("validation_errors", pa.list_(pa.string())),
    ("raw_json", pa.string()),
    ("model", pa.string()),
    ("schema_version", pa.string()),
    ("pipeline_version", pa.string()),
    ("run_id", pa.string()),
    ("processed_at", TS),
    # review corrections: a corrected row is a new version beside the original (pipelines/review.py)
    ("row_version", pa.int32()),
    ("corrected_fields", pa.list_(pa.string())),
    ("corrected_by", pa.string()),
    ("corrected_at", TS),
]

RUNS = pa.schema([
    ("run_id", pa.string()),
    ("started_at", TS),
    ("finished_at", TS),
    ("input", pa.string()),
    ("output", pa.string()),
    ("config", pa.string()),
    ("counts", pa.map_(pa.string(), pa.int64())),
    ("versions", pa.map_(pa.string(), pa.string())),
])


def arrow_type(annotation: typing.Any) -> pa.DataType:
    """Arrow type of a pydantic field annotation (Optional unwrapped; nullable in Arrow anyway)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return arrow_type(args[0])
        return pa.string()
    if origin is typing.Literal:
        return pa.string()
    if origin in (list, tuple):
        return pa.list_(arrow_type(typing.get_args(annotation)[0]))
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return pa.struct([(n, arrow_type(f.annotation)) for n, f in annotation.model_fields.items()])
        if issubclass(annotation, bool):
            return pa.bool_()
        if issubclass(annotation, int):
            return pa.int64()
        if issubclass(annotation, float):
            return pa.float64()
        if issubclass(annotation, Decimal):
            return MONEY
        if issubclass(annotation, dt.datetime):
            return TS
        if issubclass(annotation, dt.date):
            return pa.date32()
        if issubclass(annotation, str):
            return pa.string()
    raise TypeError(f"no Arrow type for annotation {annotation!r}")


def extraction_schema(model: type[BaseModel]) -> pa.Schema:
    fields = [(name, arrow_type(f.annotation)) for name, f in model.model_fields.items()]
    return pa.schema(EXTRACTION_HEAD + fields + EXTRACTION_TAIL)


TABLES = {"documents": DOCUMENTS, "pages": PAGES, "elements": ELEMENTS, "runs": RUNS}
