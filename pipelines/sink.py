"""The Parquet sink: one folder per table, written atomically and idempotently.

Each document's rows go to ``<table>/<doc_id>.parquet`` in every table, written under a temporary
name, fsynced and renamed. The ``documents`` file is written last: it is the commit marker. A document
counts as done only when its documents row exists; reprocessing a committed document first removes
its documents file (un-commits it), so a committed row never sits beside parts of another run. A rerun
rewrites the same file names, so a run killed at any point and rerun leaves each document exactly
once in every table. :meth:`ParquetSink.recover` (run under the lock at the start of every run)
deletes what a killed run left half-written: temporary files, and part files of documents without a
documents row.

Around that: :func:`output_lock` refuses a second run on the same output folder while one runs (an
``flock`` on ``OUT/.docroute.lock``, released by the kernel when its holder dies, however it dies),
and :class:`RunManifest` keeps ``OUT/_manifests/<run_id>.json`` (what the run planned, what it
committed, whether it finished) with an append-only journal of commits beside it, so an interrupted
run is visible and named by the next one.

Old files stay readable beside new ones when a column is added: readers unify schemas by name
(:func:`read_tables`; DuckDB ``read_parquet(..., union_by_name=true)``), missing columns are null.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import socket
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from docroute.schemas import DocumentResult, Extraction
from docroute.schemas.contract import DOCUMENTS, ELEMENTS, PAGES, RUNS, extraction_schema
from docroute.schemas.registry import get_schema
from docroute.schemas.targets import TargetSchema

_OUR_TMP = re.compile(r"\..+\.\d+\.[0-9a-f]{6}\.tmp")  # what _write and _write_json leave when killed
_PART = re.compile(r"[0-9a-f]{64}\.parquet")  # a document's part file: <doc_id>.parquet


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


def _write(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make a rename or unlink in ``folder`` durable (not needed against SIGKILL, only power loss)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_json(data: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str), encoding="utf-8")
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


class ParquetSink:
    def __init__(self, out: Path, schema_name: str):
        self.out = Path(out)
        self.schema = get_schema(schema_name)
        self.extraction_dir = self.out / "extractions" / self.schema.schema_name
        self.extraction_arrow = extraction_schema(self.schema)

    def write(self, result: DocumentResult, run_id: str) -> None:
        doc_id = result.document.doc_id
        name = f"{doc_id}.parquet"
        marker = self.out / "documents" / name
        if marker.exists():  # reprocessing: un-commit first, so a kill mid-way leaves it not done
            marker.unlink()
            _fsync_dir(marker.parent)
        _write(_rows(ELEMENTS, element_rows(result, run_id)), self.out / "elements" / name)
        _write(_rows(PAGES, page_rows(result, run_id)), self.out / "pages" / name)
        ex_rows = [extraction_row(result, ex, run_id) for ex in result.extractions
                   if ex.schema_name == self.schema.schema_name]
        _write(_rows(self.extraction_arrow, ex_rows), self.extraction_dir / name)
        # region targets from the VLM stage (table, chart, handwriting): one row per routed region
        for other in sorted({ex.schema_name for ex in result.extractions} - {self.schema.schema_name}):
            cls = get_schema(other)
            rows = [extraction_row(result, ex, run_id) for ex in result.extractions if ex.schema_name == other]
            _write(_rows(extraction_schema(cls), rows), self.out / "extractions" / cls.schema_name / name)
        _write(_rows(DOCUMENTS, [document_row(result, run_id, self.schema)]), marker)

    def committed(self) -> dict[str, Committed]:
        """Every document with a documents row: doc_id -> what it was committed with.

        One dataset scan with an explicit schema, so files written before a column existed read as
        null there; temporary files (``.`` prefix) are ignored.
        """
        folder = self.out / "documents"
        if not folder.is_dir() or not any(folder.glob("*.parquet")):
            return {}
        columns = ["doc_id", "status", "pipeline_version", "schema_name", "schema_version"]
        schema = pa.schema([DOCUMENTS.field(c) for c in columns])
        rows = pads.dataset(folder, schema=schema, format="parquet").to_table(columns=columns).to_pylist()
        return {r["doc_id"]: Committed(r["status"], r["pipeline_version"], r["schema_name"], r["schema_version"])
                for r in rows}

    def recover(self) -> dict[str, int]:
        """Delete what a killed run left half-written; call only while holding :func:`output_lock`.

        Temporary files of interrupted writes, and part files (pages, elements, extractions) of
        documents whose documents row was never written. Returns how many of each were removed.
        """
        tmp = orphans = 0
        committed = {p.stem for p in (self.out / "documents").glob("*.parquet")}
        part_dirs = [self.out / t for t in PART_TABLES] + sorted(
            p for p in (self.out / "extractions").glob("*") if p.is_dir())
        for folder in [self.out / "documents", self.out / "runs", *part_dirs]:
            if not folder.is_dir():
                continue
            for f in folder.iterdir():
                if _OUR_TMP.fullmatch(f.name):  # only the sink's own (review writes its own kind)
                    f.unlink(missing_ok=True)
                    tmp += 1
                elif folder in part_dirs and _PART.fullmatch(f.name) and f.stem not in committed:
                    # only <doc_id>.parquet: a reviewer's <doc_id>.vN.parquet correction is never touched
                    f.unlink(missing_ok=True)
                    orphans += 1
        return {"recovered_tmp_files": tmp, "recovered_orphan_parts": orphans}

    def write_run(self, run: dict) -> None:
        row = dict(run)
        row["config"] = json.dumps(row["config"], sort_keys=True, default=str)
        row["counts"] = _map(row["counts"])
        row["versions"] = _map(row["versions"])
        _write(_rows(RUNS, [row]), self.out / "runs" / f"{run['run_id']}.parquet")


TABLE_DIRS = ("documents", "pages", "elements", "runs")
PART_TABLES = ("pages", "elements")  # with extractions/<schema>: written before the commit marker
LOCK_FILE = ".docroute.lock"
MANIFESTS = "_manifests"


class OutputLocked(RuntimeError):
    """Another run holds the output folder."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def output_lock(out: Path, run_id: str, input_spec: str = "") -> Iterator[dict]:
    """Hold ``OUT/.docroute.lock`` for the run, or raise :class:`OutputLocked` naming the holder.

    The lock is an ``flock``: the kernel drops it when the holder exits or is killed, so a lock file
    left by a dead run is stale and simply taken over (the holder it names is reported as
    ``previous``). Yields the holder record written into the file.
    """
    import fcntl

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        with os.fdopen(os.dup(fd), "r", encoding="utf-8", errors="replace") as fh:
            previous_text = fh.read()
        try:
            previous = json.loads(previous_text) if previous_text.strip() else None
        except ValueError:
            previous = None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            h = previous or {}
            where = f"pid {h.get('pid', '?')} on host {h.get('host', '?')}"
            if h.get("host") == socket.gethostname() and isinstance(h.get("pid"), int) and not _pid_alive(h["pid"]):
                where += " (that pid is gone: a child process it started still holds the lock)"
            raise OutputLocked(
                f"output folder {out} is in use by another docroute run: run {h.get('run_id', '?')}, "
                f"{where}, started {h.get('started_at', '?')}, input {h.get('input', '?')!s}. "
                "Two runs must not write one output folder at once: wait for it to finish, or use another --out."
            ) from None
        holder = {"run_id": run_id, "pid": os.getpid(), "host": socket.gethostname(),
                  "started_at": datetime.now(UTC).isoformat(timespec="seconds"), "input": input_spec,
                  "previous": previous}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({k: v for k, v in holder.items() if k != "previous"}).encode(), 0)
        os.fsync(fd)
        try:
            yield holder
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the flock


@dataclass(frozen=True)
class Committed:
    status: str
    pipeline_version: str | None
    schema_name: str | None
    schema_version: str | None


class RunManifest:
    """``OUT/_manifests/<run_id>.json`` and its journal ``<run_id>.commits.jsonl``.

    The JSON (written atomically) says what the run planned and, once it ends, that it finished and
    what it committed. The journal gets one line per committed document as it is committed
    (appended, flushed), so a run killed at any moment still tells what it had done. A manifest still
    in state ``running`` when the next run takes the lock belongs to an interrupted run.
    """

    def __init__(self, out: Path, run_id: str):
        self.folder = Path(out) / MANIFESTS
        self.run_id = run_id
        self.path = self.folder / f"{run_id}.json"
        self.journal = self.folder / f"{run_id}.commits.jsonl"
        self._lock = threading.Lock()
        self.data: dict = {}

    def start(self, **info) -> None:
        self.data = {"run_id": self.run_id, "state": "running", "pid": os.getpid(), "host": socket.gethostname(),
                     **info}
        _write_json(self.data, self.path)

    def commit(self, doc_id: str, status: str, **info) -> None:
        line = json.dumps({"doc_id": doc_id, "status": status, "at": datetime.now(UTC).isoformat(), **info}) + "\n"
        with self._lock, open(self.journal, "a", encoding="utf-8") as fh:
            fh.write(line)

    def finish(self, **info) -> None:
        committed = read_journal(self.journal)
        self.data |= {"state": "finished", "committed": len(committed), **info}
        _write_json(self.data, self.path)

    @staticmethod
    def interrupted(out: Path) -> list[dict]:
        """Manifests of runs that never finished (killed, crashed), oldest first; marks them so."""
        found = []
        for path in sorted((Path(out) / MANIFESTS).glob("*.json")):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if data.get("state") != "running":
                continue
            committed = read_journal(path.with_name(f"{data.get('run_id', path.stem)}.commits.jsonl"))
            data |= {"state": "interrupted", "committed": len(committed)}
            _write_json(data, path)
            found.append({"run_id": data.get("run_id"), "planned": len(data.get("planned", ())),
                          "committed": len(committed), "started_at": data.get("started_at")})
        return found


def read_journal(path: Path) -> dict[str, str]:
    """doc_id -> status from a commits journal; a torn last line (a kill mid-write) is ignored."""
    out: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            rec = json.loads(line)
            out[rec["doc_id"]] = rec["status"]
        except (ValueError, KeyError, TypeError):
            continue
    return out


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
