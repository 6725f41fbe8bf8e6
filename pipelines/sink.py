"""The Delta Lake sink: one Delta table per output table, committed in batches, exactly once.

Each table (``documents``, ``pages``, ``elements``, ``extractions/<schema>``, ``runs``) is a Delta Lake
table written with ``deltalake`` (delta-rs): Parquet data files plus a transaction log, so a commit is
atomic and a reader sees a whole batch or none of it. The output is a local folder or any URI deltalake
supports (``s3://``, ``az://``, ``gs://``, with ``storage_options``).

A run stages each finished document's rows (:meth:`DeltaSink.stage`, Arrow tables built against the
contract) and commits them in batches (:meth:`DeltaSink.commit`): one transaction per table, the part
tables first and ``documents`` last, so a document counts as done only once its documents row is in.
Every commit replaces the batch's documents' rows where the table has any: an overwrite with a
``doc_id IN (...)`` predicate (the old rows of a reprocessed document, or those a killed run left,
go in the same transaction as the new ones), else a plain append (the sink reads each table's doc_ids
once, then keeps them). A reprocessed document's documents row is deleted first, so until its batch's
last commit it is not done. So a replayed or rerun batch changes nothing, and a run killed between
two commits of a batch, then rerun, leaves each document exactly once in every table. Each commit
also records a Delta application transaction (``docroute:<run_id>``, version = batch number): a
table whose log already holds the batch is skipped, and a batch whose documents commit is in the log is
skipped whole (before the un-commit of a rewrite, which would otherwise delete its documents rows).

Around that (pipelines/runlog.py): the run state folder (the output folder, or a local folder for an
object-store output) with the output's lock and each run's manifest and journal.

On an object store, the commits are what keep a retried batch from counting twice: the lock is local.
delta-rs commits a new log version with a put-if-absent (on S3 a conditional write, If-None-Match, which
AWS S3 has had since 2024 and deltalake 1.x uses without a locking provider); a writer that loses the race
re-reads the log, checks for a conflict and commits the next version. Two machines on one output are
therefore safe for different documents; the same document from both at once can append it twice (the
doc_id sets each sink keeps are per process): run one writer per output.

A new nullable column is added to a table's schema on the next write (``schema_mode="merge"``); old
rows read null there.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import TableNotFoundError

from docroute.pipelines.runlog import is_uri
from docroute.schemas import DocumentResult, Extraction
from docroute.schemas.contract import DOCUMENTS, ELEMENTS, PAGES, RUNS, extraction_schema
from docroute.schemas.registry import BUILTIN, get_schema
from docroute.schemas.targets import TargetSchema


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


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
            "policy_version": p.decision.policy_version, "signals": _map(p.signals.as_map()), "vlm_status": p.vlm_status,
            "ocr_confidence": p.parsed.ocr_confidence, "text": p.parsed.text, "n_words": len(p.parsed.words),
            "n_elements": len(p.parsed.elements), "duration_ms": p.duration_ms, "run_id": run_id,
            "route_regions": [
                {"address": f"{result.document.doc_id}/{r.address}", "kind": r.kind, "reason": r.reason,
                 "route": r.route, "score": r.score, "x0": r.bbox.x0, "y0": r.bbox.y0, "x1": r.bbox.x1,
                 "y1": r.bbox.y1, "source": r.source, "evidence": _map(r.evidence), "why": r.why}
                for r in p.decision.regions
            ],
            "vlm_scope": p.decision.vlm_scope, "renderer": p.renderer, "renderer_note": p.renderer_note,
        }
        for p in result.pages
    ]


def element_rows(result: DocumentResult, run_id: str) -> list[dict]:
    return [
        {
            "doc_id": result.document.doc_id, "page_number": e.page_number, "element_id": e.element_id,
            "kind": e.kind, "text": e.text, "x0": e.bbox.x0, "y0": e.bbox.y0, "x1": e.bbox.x1, "y1": e.bbox.y1,
            "confidence": e.confidence, "source": e.source, "run_id": run_id,
            "table_html": e.table.html() if e.table else None,  # the one place a table becomes HTML
        }
        for p in result.pages
        for e in p.parsed.elements
    ]


def extraction_row(result: DocumentResult, ex: Extraction, run_id: str) -> dict:
    # a field read from the page has a box; one read from an e-invoice's XML has its element path instead
    provenance = [
        {"field": name, "page_number": fv.page_number, "x0": fv.bbox and fv.bbox.x0, "y0": fv.bbox and fv.bbox.y0,
         "x1": fv.bbox and fv.bbox.x1, "y1": fv.bbox and fv.bbox.y1, "raw_text": fv.raw_text}
        for name, fv in sorted(ex.fields.items()) if fv.bbox is not None or fv.source == "einvoice"
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
        "redactions": None if result.redactions is None else [r.model_dump() for r in result.redactions],
        "document_type": t.kind if (t := result.document_type) else None,
        "document_type_confidence": t.confidence if t else None,
        "document_type_evidence": _map(t.evidence) if t else None,
    }


class DeltaSink:
    """The output's Delta tables for one target schema (``out``: a folder or a deltalake URI)."""

    def __init__(self, out: str | Path, schema_name: str, storage_options: dict[str, str] | None = None):
        self.out = str(out).rstrip("/") if is_uri(out) else Path(out)
        self.storage_options = dict(storage_options or {}) or None
        self.schema = get_schema(schema_name)
        self.extraction_table = f"extractions/{self.schema.schema_name}"
        self.extraction_arrow = extraction_schema(self.schema)
        self._batch = 0
        self._ids: dict[str, set[str]] = {}
        self._loaded: dict[str, DeltaTable] = {}

    def uri(self, table: str) -> str:
        return f"{self.out}/{table}" if isinstance(self.out, str) else str(self.out / table)

    def table(self, name: str) -> DeltaTable | None:
        """The Delta table ``name`` at its latest version, or None when nothing was ever committed to it.

        Loaded once per sink, then brought up to date by reading only the newer commits of its log."""
        dt = self._loaded.get(name)
        if dt is not None:
            dt.update_incremental()
            return dt
        try:
            dt = DeltaTable(self.uri(name), storage_options=self.storage_options)
        except TableNotFoundError:
            return None
        self._loaded[name] = dt
        return dt

    def stage(self, result: DocumentResult, run_id: str) -> Staged:
        """One document's rows as Arrow tables (raises what the contract cannot hold: Arrow, Unicode errors)."""
        tables = {
            "pages": _rows(PAGES, page_rows(result, run_id)),
            "elements": _rows(ELEMENTS, element_rows(result, run_id)),
            self.extraction_table: _rows(self.extraction_arrow, [
                extraction_row(result, ex, run_id) for ex in result.extractions
                if ex.schema_name == self.schema.schema_name]),
        }
        # region targets from the VLM stage (table, chart, handwriting): one row per routed region
        for other in sorted({ex.schema_name for ex in result.extractions} - {self.schema.schema_name}):
            cls = get_schema(other)
            tables[f"extractions/{cls.schema_name}"] = _rows(extraction_schema(cls), [
                extraction_row(result, ex, run_id) for ex in result.extractions if ex.schema_name == other])
        tables["documents"] = _rows(DOCUMENTS, [document_row(result, run_id, self.schema)])
        return Staged(result.document.doc_id, result.status, tables)

    def commit(self, batch: list[Staged], run_id: str, number: int) -> list[str]:
        """Commit ``batch`` (batch ``number`` of ``run_id``): one transaction per table, documents last.

        Each transaction replaces the batch's documents' rows in that table (pipeline rows only in an
        extraction table: a reviewer's corrections, row_version > 1, stay). Returns the tables written.
        """
        if not batch or self._in_log("documents", run_id, number):
            return []  # the batch's last commit is in the log: the whole batch is (a replay changes nothing)
        ids = sorted({s.doc_id for s in batch})
        names = sorted({n for s in batch for n in s.tables} - {"documents"}) + ["documents"]
        if self.extraction_table not in names:
            names.insert(0, self.extraction_table)
        written = []
        redo = self._committed_among(ids)
        if redo:  # reprocessing: un-commit first, so a kill before the last commit leaves them not done
            self._uncommit(_in("doc_id", redo))
        for name in names:
            parts = [s.tables[name] for s in batch if name in s.tables]
            schema = parts[0].schema if parts else self.extraction_arrow
            data = pa.concat_tables(parts) if parts else schema.empty_table()
            keep = " AND row_version = 1" if name.startswith("extractions/") else ""
            present = self._present(name)
            # rows of these documents in the table (a rewrite, or what a killed run left): replace them;
            # none: a plain append, which need not scan the table
            predicate = _in("doc_id", ids) + keep if present.intersection(ids) else None
            if self._commit(name, data, predicate, run_id, number):
                written.append(name)
            present.update(ids)
        return written

    def write(self, result: DocumentResult, run_id: str) -> None:
        """Stage and commit one document as a batch of its own (tests, tools)."""
        self._batch += 1
        self.commit([self.stage(result, run_id)], run_id, self._batch)

    def _present(self, name: str) -> set[str]:
        """The doc_ids with rows in table ``name``: read once, then kept up to date by this sink's commits
        (only one writer holds the output)."""
        if name not in self._ids:
            dt = self.table(name)
            self._ids[name] = set() if dt is None else set(
                dt.to_pyarrow_dataset().to_table(columns=["doc_id"])["doc_id"].to_pylist())
        return self._ids[name]

    def _committed_among(self, ids: list[str]) -> list[str]:
        dt = self.table("documents") if self._present("documents").intersection(ids) else None
        if dt is None:
            return []
        found = dt.to_pyarrow_dataset().to_table(columns=["doc_id"], filter=pc.field("doc_id").isin(ids))
        return sorted(set(found["doc_id"].to_pylist()))

    def _uncommit(self, predicate: str) -> None:
        self.table("documents").delete(predicate)

    def _in_log(self, name: str, run_id: str, number: int) -> bool:
        """Whether table ``name``'s log holds batch ``number`` of ``run_id`` (its application transaction)."""
        dt = self.table(name)
        return dt is not None and (dt.transaction_version(f"docroute:{run_id}") or 0) >= number

    def _commit(self, name: str, data: pa.Table, predicate: str | None, run_id: str, number: int) -> bool:
        app = f"docroute:{run_id}"
        if self._in_log(name, run_id, number):
            return False  # this batch is in the log already: a replay changes nothing
        dt = self.table(name)
        props = CommitProperties(app_transactions=[Transaction(app_id=app, version=number)])
        if dt is None or predicate is None:
            write_deltalake(dt if dt is not None else self.uri(name), data, mode="append", schema_mode="merge",
                            storage_options=None if dt is not None else self.storage_options,
                            commit_properties=props)
        else:
            write_deltalake(dt, data, mode="overwrite", predicate=predicate, schema_mode="merge",
                            commit_properties=props)
        return True

    def committed(self) -> dict[str, Committed]:
        """Every document with a documents row: doc_id -> what it was committed with."""
        columns = ["doc_id", "status", "pipeline_version", "schema_name", "schema_version"]
        rows = read_table(self, "documents", columns).to_pylist()
        return {r["doc_id"]: Committed(r["status"], r["pipeline_version"], r["schema_name"], r["schema_version"])
                for r in rows}

    def write_run(self, run: dict) -> None:
        row = dict(run)
        row["config"] = json.dumps(row["config"], sort_keys=True, default=str)
        row["counts"] = _map(row["counts"])
        row["versions"] = _map(row["versions"])
        self._commit("runs", _rows(RUNS, [row]), _in("run_id", [run["run_id"]]), run["run_id"], 1)

    def tables(self) -> list[str]:
        """The names of the tables that exist in this output."""
        names = list(TABLE_DIRS)
        if isinstance(self.out, Path):
            names += [f"extractions/{p.name}" for p in sorted((self.out / "extractions").glob("*")) if p.is_dir()]
        else:  # an object store has no folders to list: the built-in schemas' tables and this sink's own
            names += [f"extractions/{n}" for n in sorted(set(BUILTIN) | {self.schema.schema_name})]
        return [n for n in names if self.table(n) is not None]

    def live_files(self, name: str) -> int:
        dt = self.table(name)
        return 0 if dt is None else len(dt.file_uris())

    def compact(self, name: str, retention_hours: int | None = None) -> dict:
        """Merge ``name``'s small files into few (one commit); then vacuum files older than the retention
        that no version in it needs, and files no commit references (a killed writer's)."""
        dt = self.table(name)
        if dt is None:
            return {}
        metrics = dt.optimize.compact()
        removed = self.vacuum(name, retention_hours)
        return {"files_added": metrics.get("numFilesAdded", 0), "files_removed": metrics.get("numFilesRemoved", 0),
                "vacuumed": removed}

    def vacuum(self, name: str, retention_hours: int | None = None) -> int:
        dt = self.table(name)
        if dt is None:
            return 0
        hours = VACUUM_HOURS if retention_hours is None else retention_hours
        return len(dt.vacuum(retention_hours=hours, dry_run=False, enforce_retention_duration=False, full=True))


@dataclass(frozen=True)
class Staged:
    """One finished document's rows, ready to commit: table name -> Arrow table."""

    doc_id: str
    status: str
    tables: dict[str, pa.Table]


def _in(column: str, values: list[str]) -> str:
    quoted = ", ".join("'" + v.replace("'", "''") + "'" for v in values)
    return f"{column} IN ({quoted})"


def read_table(sink: DeltaSink, name: str, columns: list[str] | None = None) -> pa.Table:
    """A table's current version through its log (an empty table when it does not exist).

    ``to_pyarrow_dataset().to_table()``, never ``DeltaTable.to_pyarrow_table()``: a process that calls
    the latter may abort at exit (delta-rs issue 2184).
    """
    dt = sink.table(name)
    if dt is None:
        schema = {"documents": DOCUMENTS, "pages": PAGES, "elements": ELEMENTS, "runs": RUNS}.get(name)
        schema = schema or sink.extraction_arrow
        return schema.empty_table().select(columns) if columns else schema.empty_table()
    return dt.to_pyarrow_dataset().to_table(columns=columns)


VACUUM_HOURS = 7 * 24


def sql_connection(out: str | Path, storage_options: dict[str, str] | None = None):
    """A DuckDB connection with every table of ``out`` registered by name (``documents``, ``pages``,
    ``elements``, ``runs``, and each ``extractions/<schema>`` as ``<schema>``), read through the Delta
    logs as Arrow datasets: no DuckDB extension needed."""
    import duckdb

    sink = DeltaSink(out, "invoice", storage_options)
    con = duckdb.connect()
    for name in sink.tables():
        con.register(name.rpartition("/")[2], sink.table(name).to_pyarrow_dataset())
    return con
TABLE_DIRS = ("documents", "pages", "elements", "runs")
@dataclass(frozen=True)
class Committed:
    status: str
    pipeline_version: str | None
    schema_name: str | None
    schema_version: str | None


def read_tables(out: str | Path, storage_options: dict[str, str] | None = None) -> dict:
    """The output tables as pandas DataFrames: documents, pages, elements, runs, extractions/<schema>."""
    import pandas as pd

    sink = DeltaSink(out, "invoice", storage_options)
    names = list(TABLE_DIRS) + [n for n in sink.tables() if n not in TABLE_DIRS]
    return {n: (read_table(sink, n).to_pandas() if sink.table(n) is not None else pd.DataFrame()) for n in names}
