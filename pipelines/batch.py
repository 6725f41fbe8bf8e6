"""Planning and summarising a batch: which files to process, which are done, what happened."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from docroute.pipelines.ingest import discover, ingest, unreadable_id
from docroute.pipelines.sink import Committed
from docroute.schemas import DocumentResult


@dataclass(frozen=True)
class PlannedFile:
    path: Path
    doc_id: str


@dataclass(frozen=True)
class RunPlan:
    todo: tuple[PlannedFile, ...]
    skipped: tuple[PlannedFile, ...]  # already done with this pipeline and schema version
    duplicates: tuple[PlannedFile, ...]  # same bytes as another input of this run
    discovered: int
    stale_schema: tuple[PlannedFile, ...] = ()  # done under another version of the schema: kept as they are


def plan(input_spec: str, done: Mapping[str, str | Committed], *, force: bool = False, retry_failed: bool = False,
         pipeline_version: str | None = None, schema_name: str | None = None, schema_version: str | None = None,
         reprocess_schema: bool = False, exclude: tuple[Path, ...] = ()) -> RunPlan:
    """Which discovered files to process.

    ``done`` maps doc_id to a committed status (only entries that count as done) or to a
    :class:`Committed` record, judged here: another pipeline version or another schema is not done;
    the same schema under another schema version is done ("stale") unless ``reprocess_schema``.
    """
    todo, skipped, duplicates, stale = [], [], [], []
    seen: set[str] = set()
    paths = discover(input_spec, exclude)
    for path in paths:
        try:
            doc_id = ingest(path).doc_id
        except OSError:
            doc_id = unreadable_id(path)
        item = PlannedFile(path=path, doc_id=doc_id)
        if doc_id in seen:
            duplicates.append(item)
            continue
        seen.add(doc_id)
        entry = done.get(doc_id)
        status, is_stale = entry, False
        if isinstance(entry, Committed):
            status = entry.status
            if pipeline_version is not None and entry.pipeline_version != pipeline_version:
                status = None
            elif schema_name is not None and entry.schema_name != schema_name:
                status = None
            elif schema_version is not None and entry.schema_version != schema_version:
                is_stale = True
                status = None if reprocess_schema else status
        if status is not None and not force and not (retry_failed and status == "failed"):
            (stale if is_stale else skipped).append(item)
        else:
            todo.append(item)
    return RunPlan(tuple(todo), tuple(skipped), tuple(duplicates), len(paths), tuple(stale))


def document_summary(result: DocumentResult) -> dict:
    """The small per-document record that travels to progress display and the run summary."""
    routes = Counter(p.decision.route for p in result.pages)
    reasons = Counter(r for p in result.pages for r in p.decision.reasons)
    review_fields = sum(
        1 for ex in result.extractions for r in ex.review_reasons if r.startswith(("missing:", "low_confidence:"))
    )
    return {
        "doc_id": result.document.doc_id,
        "file_name": result.document.file_name,
        "source_path": result.document.source_path,
        "status": result.status,
        "error": result.error,
        "pages": len(result.pages),
        "pages_layout": routes.get("layout", 0),
        "pages_vlm": routes.get("vlm", 0),
        "route_reasons": dict(reasons),
        "needs_review": any(ex.needs_review for ex in result.extractions),
        "fields_review": review_fields,
        "duration_ms": result.duration_ms,
    }


@dataclass
class RunTotals:
    documents: int = 0
    ok: int = 0
    partial: int = 0
    failed: int = 0
    skipped: int = 0
    stale_schema: int = 0
    duplicates: int = 0
    pages: int = 0
    pages_layout: int = 0
    pages_vlm: int = 0
    needs_review: int = 0
    fields_review: int = 0
    reasons: Counter = field(default_factory=Counter)
    failures: list[tuple[str, str]] = field(default_factory=list)

    def add(self, s: dict) -> None:
        self.documents += 1
        setattr(self, s["status"], getattr(self, s["status"]) + 1)
        self.pages += s["pages"]
        self.pages_layout += s["pages_layout"]
        self.pages_vlm += s["pages_vlm"]
        self.needs_review += bool(s["needs_review"])
        self.fields_review += s["fields_review"]
        self.reasons.update(s["route_reasons"])
        if s["status"] != "ok":
            self.failures.append((s["source_path"], s["error"] or ""))

    def counts(self) -> dict[str, int]:
        keys = ("documents", "ok", "partial", "failed", "skipped", "stale_schema", "duplicates", "pages", "pages_layout",
                "pages_vlm", "needs_review", "fields_review")
        return {k: int(getattr(self, k)) for k in keys} | {f"reason_{k}": v for k, v in self.reasons.items()}
