"""Planning and summarising a batch: which files to process, which are done, what happened."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from docroute.extractors.document import SourceFile
from docroute.pipelines.ingest import discover, ingest, unreadable_id
from docroute.pipelines.sink import Committed
from docroute.schemas import DocumentResult, Status


@dataclass(frozen=True)
class PlannedFile:
    path: Path
    doc_id: str
    source: SourceFile | None = None  # what planning read off the bytes; None: the file could not be read




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
            source: SourceFile | None = ingest(path)
            doc_id = source.doc_id
        except OSError:
            source, doc_id = None, unreadable_id(path)
        item = PlannedFile(path=path, doc_id=doc_id, source=source)
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


@dataclass(frozen=True)
class DocumentSummary:
    """The small per-document record that travels to the progress display, the journal and the summary."""

    doc_id: str
    file_name: str
    source_path: str
    status: Status
    error: str | None
    pages: int
    pages_layout: int
    pages_vlm: int
    route_reasons: tuple[tuple[str, int], ...]
    needs_review: bool
    fields_review: int
    duration_ms: float
    vlm_model: str | None = None  # the model that answered this document's VLM calls
    vlm_unanswered: int = 0  # routed pages that got no VLM answer
    vlm_why: str | None = None  # why they got none (vlm_status, and the error or the missing configuration)
    worker: str = ""  # host:pid of the process that committed it


def document_summary(result: DocumentResult, worker: str = "") -> DocumentSummary:
    routes = Counter(p.decision.route for p in result.pages)
    reasons = Counter(r for p in result.pages for r in p.decision.reasons)
    review_fields = sum(
        1 for ex in result.extractions for r in ex.review_reasons if r.startswith(("missing:", "low_confidence:"))
    )
    unanswered = [p for p in result.pages if p.decision.route == "vlm" and p.vlm_status != "ok"]
    why = None
    if unanswered:
        statuses = sorted({p.vlm_status for p in unanswered})
        calls = [json.loads(ex.raw_json).get("vlm_call") or {} for ex in result.extractions[:1]]
        error = next((c.get("error") for c in calls if c.get("error") and c.get("status") != "unavailable"), None)
        why = ", ".join(statuses) + (f": {error}" if error else "")
    return DocumentSummary(
        doc_id=result.document.doc_id, file_name=result.document.file_name,
        source_path=result.document.source_path, status=result.status, error=result.error,
        pages=len(result.pages), pages_layout=routes.get("layout", 0), pages_vlm=routes.get("vlm", 0),
        route_reasons=tuple(sorted(reasons.items())), needs_review=any(ex.needs_review for ex in result.extractions),
        fields_review=review_fields, duration_ms=result.duration_ms,
        vlm_model=next((ex.model for ex in result.extractions if ex.model), None),
        vlm_unanswered=len(unanswered), vlm_why=why, worker=worker,
    )


@dataclass
class RunTotals:
    """What a run did, summed over its documents as they complete (the flow owns it; not shared)."""

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
    vlm_unanswered: int = 0
    reasons: Counter = field(default_factory=Counter)
    vlm_models: Counter = field(default_factory=Counter)  # model -> documents it answered
    vlm_why: Counter = field(default_factory=Counter)  # why routed pages got no answer -> pages
    failures: list[tuple[str, str]] = field(default_factory=list)

    def add(self, s: DocumentSummary) -> None:
        self.documents += 1
        if s.status == "ok":
            self.ok += 1
        elif s.status == "partial":
            self.partial += 1
        else:
            self.failed += 1
        self.pages += s.pages
        self.pages_layout += s.pages_layout
        self.pages_vlm += s.pages_vlm
        self.needs_review += s.needs_review
        self.fields_review += s.fields_review
        self.reasons.update(dict(s.route_reasons))
        if s.vlm_model:
            self.vlm_models[s.vlm_model] += 1
        if s.vlm_unanswered:
            self.vlm_unanswered += s.vlm_unanswered
            self.vlm_why[s.vlm_why or "unknown"] += s.vlm_unanswered
        if s.status != "ok":
            self.failures.append((s.source_path, s.error or ""))

    def counts(self) -> dict[str, int]:
        keys = ("documents", "ok", "partial", "failed", "skipped", "stale_schema", "duplicates", "pages", "pages_layout",
                "pages_vlm", "needs_review", "fields_review", "vlm_unanswered")
        return {k: int(getattr(self, k)) for k in keys} | {f"reason_{k}": v for k, v in self.reasons.items()}


@dataclass(frozen=True)
class RunSummary:
    """What ``run_extract`` returns: the ``runs`` row as written, and what the user is shown."""

    run: dict  # the runs table's row (run_id, started_at, finished_at, input, output, config, counts, versions)
    totals: RunTotals
    report: str  # the HTML report's path
    schema: str
    schema_version: str
    elapsed_s: float
    vlm: str  # which VLM answered: "none (why)", or the backend and the model(s)
    interrupted: tuple[dict, ...] = ()  # earlier runs this one resumed
    maintenance: dict = field(default_factory=dict)  # batches, commit_ms, compacted_tables
    orchestrator: str = ""  # what scheduled the document tasks: direct (no Prefect server) or prefect

    @property
    def run_id(self) -> str:
        return self.run["run_id"]

    @property
    def pages_per_s(self) -> float:
        return self.totals.pages / self.elapsed_s if self.elapsed_s else 0.0
