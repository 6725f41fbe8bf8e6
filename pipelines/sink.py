"""The Parquet sink: one folder per table, written atomically and idempotently.

Each document's rows go to ``<table>/<doc_id>.parquet`` in every table, written under a temporary
name and renamed. The ``documents`` file is written last: it is the commit marker. A document counts
as done only when its documents row exists, and a rerun rewrites the same file names, so a run killed
at any point and rerun leaves each document exactly once in every table.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from docroute.schemas import DocumentResult, Extraction
from docroute.schemas.contract import DOCUMENTS, ELEMENTS, PAGES, RUNS, extraction_schema
from docroute.schemas.registry import get_schema
from docroute.schemas.targets import TargetSchema


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


def _write(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _rows(schema: pa.Schema, rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schema)


def _map(d: dict) -> list[tuple]:
    return sorted(d.items())


def page_rows(result: DocumentResult, run_id: str) -> list[dict]:
    return [
        {
            "doc_id": result.document.doc_id, "page_number": p.page_number, "width": p.parsed.width,
            "height": p.parsed.height, "has_text_layer": p.parsed.has_text_layer, "parser": p.parsed.parser,
            "route": p.decision.route, "route_reasons": list(p.decision.reasons),
            "route_scores": _map(p.decision.scores), "route_explanation": p.decision.explanation,
            "policy_version": p.decision.policy_version, "signals": _map(p.signals), "vlm_status": p.vlm_status,
            "ocr_confidence": p.parsed.ocr_confidence, "text": p.parsed.text, "n_words": len(p.parsed.words),
            "n_elements": len(p.parsed.elements), "duration_ms": p.duration_ms, "run_id": run_id,
        }
        for p in result.pages
    ]


def element_rows(result: DocumentResult, run_id: str) -> list[dict]:
    return [
        {
            "doc_id": result.document.doc_id, "page_number": e.page_number, "element_id": e.element_id,
            "kind": e.kind, "text": e.text, "x0": e.bbox.x0, "y0": e.bbox.y0, "x1": e.bbox.x1, "y1": e.bbox.y1,
            "confidence": e.confidence, "source": e.source, "table_html": e.table_html, "run_id": run_id,
        }
        for p in result.pages
        for e in p.parsed.elements
    ]


def extraction_row(result: DocumentResult, ex: Extraction, run_id: str) -> dict:
    provenance = [
        {"field": name, "page_number": fv.page_number, "x0": fv.bbox.x0, "y0": fv.bbox.y0, "x1": fv.bbox.x1,
         "y1": fv.bbox.y1, "raw_text": fv.raw_text}
        for name, fv in sorted(ex.fields.items()) if fv.bbox is not None
    ]
    return {
        "doc_id": result.document.doc_id, "file_name": result.document.file_name, **ex.data,
        "field_confidence": _map({k: v.confidence for k, v in ex.fields.items()}),
        "field_source": _map({k: v.source for k, v in ex.fields.items()}),
        "field_provenance": provenance, "needs_review": ex.needs_review,
        "review_reasons": list(ex.review_reasons), "validation_errors": list(ex.validation_errors),
        "raw_json": ex.raw_json, "model": ex.model, "schema_version": ex.schema_version,
        "pipeline_version": result.pipeline_version, "run_id": run_id, "processed_at": result.processed_at,
        "row_version": 1,
    }


def document_row(result: DocumentResult, run_id: str, schema: type[TargetSchema]) -> dict:
    d = result.document
    return {
        "doc_id": d.doc_id, "source_path": d.source_path, "file_name": d.file_name, "mime_type": d.mime_type,
        "size_bytes": d.size_bytes, "n_pages": d.n_pages, "status": result.status, "error": result.error,
        "schema_name": schema.schema_name, "schema_version": schema.schema_version,
        "duration_ms": result.duration_ms, "run_id": run_id, "processed_at": result.processed_at,
        "pipeline_version": result.pipeline_version,
    }


class ParquetSink:
    def __init__(self, out: Path, schema_name: str):
        self.out = Path(out)
        self.schema = get_schema(schema_name)
        self.extraction_dir = self.out / "extractions" / self.schema.schema_name
        self.extraction_arrow = extraction_schema(self.schema)

    def write(self, result: DocumentResult, run_id: str) -> None:
        doc_id = result.document.doc_id
        name = f"{doc_id}.parquet"
        _write(_rows(ELEMENTS, element_rows(result, run_id)), self.out / "elements" / name)
        _write(_rows(PAGES, page_rows(result, run_id)), self.out / "pages" / name)
        ex_rows = [extraction_row(result, ex, run_id) for ex in result.extractions
                   if ex.schema_name == self.schema.schema_name]
        _write(_rows(self.extraction_arrow, ex_rows), self.extraction_dir / name)
        _write(_rows(DOCUMENTS, [document_row(result, run_id, self.schema)]), self.out / "documents" / name)

    def done(self, pipeline_version: str) -> dict[str, str]:
        """doc_id -> status of documents already committed with this pipeline and schema version."""
        folder = self.out / "documents"
        if not folder.is_dir() or not any(folder.glob("*.parquet")):
            return {}
        # one dataset scan; temporary files start with "." and are ignored by the dataset reader
        columns = ["doc_id", "status", "pipeline_version", "schema_name", "schema_version"]
        rows = pq.read_table(folder, columns=columns).to_pylist()
        key = (pipeline_version, self.schema.schema_name, self.schema.schema_version)
        return {
            r["doc_id"]: r["status"] for r in rows
            if (r["pipeline_version"], r["schema_name"], r["schema_version"]) == key
        }

    def write_run(self, run: dict) -> None:
        row = dict(run)
        row["config"] = json.dumps(row["config"], sort_keys=True, default=str)
        row["counts"] = _map(row["counts"])
        row["versions"] = _map(row["versions"])
        _write(_rows(RUNS, [row]), self.out / "runs" / f"{run['run_id']}.parquet")


TABLE_DIRS = ("documents", "pages", "elements", "runs")


def read_tables(out: str | Path) -> dict:
    """The output tables as pandas DataFrames: documents, pages, elements, runs, extractions/<schema>."""
    import pandas as pd

    out = Path(out)
    names: Iterable[str] = list(TABLE_DIRS) + [
        f"extractions/{p.name}" for p in sorted((out / "extractions").glob("*")) if p.is_dir()
    ]
    frames = {}
    for name in names:
        files = sorted((out / name).glob("*.parquet"))
        frames[name] = (
            pa.concat_tables([pq.read_table(f) for f in files], promote_options="permissive").to_pandas()
            if files else pd.DataFrame()
        )
    return frames
