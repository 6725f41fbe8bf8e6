"""A run's work without an orchestrator's server: plan, process, commit in batches, report.

:func:`extract` is the one body of a run, whoever schedules its document tasks: Prefect's task
runners (flows/extract.py: the ``extract_folder`` flow, for a Prefect API, ``docroute serve``,
deployments and Dask), or a plain thread pool (:func:`run_direct`, the default when no Prefect API is
configured: a local run starts no server, so one invoice takes seconds, not the 13 s of Prefect's
embedded server start). :func:`run_extract` picks one. This module never imports Prefect.

Tasks return each document's rows staged as Arrow tables; the run commits them to the Delta tables in
batches (``Batcher``: every ``commit_every_documents`` documents or ``commit_every_s`` seconds, the rest
at the end; one transaction per table, documents last, each idempotent), then compacts a table whose
live files passed ``compact_files``. Commits happen on the run's own thread only (delta-rs writers of one
table must not race): it waits for finished documents with a timeout, so a batch goes in once
``commit_every_s`` has passed even while the next document is still being parsed.

A run holds the output's lock (``runlog.output_lock``) from before planning to the end and keeps a
manifest with a commit journal (``runlog.RunManifest``), one line per committed document naming the
host and process that did it and its batch. Both live in the run state folder (``runlog.state_folder``:
the output folder, or a local folder for an object-store output such as ``s3://bucket/prefix``), with
the HTML report and the run's VLM page ledger.
"""

from __future__ import annotations

import os
import platform
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from docroute.flows import prefect_env

prefect_env.apply()

import pyarrow as pa  # noqa: E402

from docroute import PIPELINE_VERSION  # noqa: E402
from docroute.flows import progress  # noqa: E402
from docroute.flows.html_report import write_run_report  # noqa: E402
from docroute.flows.isolation import failed_result, run_in_worker, worker_memory_limit, worker_pool  # noqa: E402
from docroute.pipelines.batch import (  # noqa: E402
    DocumentSummary,
    PlannedFile,
    RunSummary,
    RunTotals,
    document_summary,
    plan,
)
from docroute.pipelines.budget import run_context  # noqa: E402
from docroute.pipelines.context import RunContext  # noqa: E402
from docroute.pipelines.ingest import display_path  # noqa: E402
from docroute.pipelines.runlog import RunManifest, claim_state_folder, is_uri, output_lock, state_folder  # noqa: E402
from docroute.pipelines.settings import Settings  # noqa: E402
from docroute.pipelines.sink import DeltaSink, Staged, new_run_id  # noqa: E402
from docroute.schemas import DocumentResult  # noqa: E402
from docroute.schemas.contract import CONTRACT_VERSION  # noqa: E402

__all__ = ["extract", "run_extract", "worker_memory_limit"]
TRANSIENT = (BrokenPipeError, ConnectionError, InterruptedError, BlockingIOError)
_held: dict[str, str] = {}  # state folder -> the run_id whose lock this process holds
Submit = Callable[[PlannedFile, Settings, str, RunContext], Future]


@contextmanager
def run_lock(out: str, settings: Settings, run_id: str, input_spec: str):
    """Hold ``out``'s lock (in its state folder) for ``run_id``, unless this process already does
    (``run_extract`` takes it before the flow starts so that a busy output fails fast; a deployment run
    takes it here). Raises ``runlog.StateFolderError`` for a state folder that serves another output."""
    state = state_folder(out, settings.state_dir)
    key = str(state.resolve())
    if _held.get(key) == run_id:
        yield
        return
    state.mkdir(parents=True, exist_ok=True)
    claim_state_folder(state, out)
    with output_lock(state, run_id, input_spec, output=str(out) if is_uri(out) or state != Path(out) else None):
        _held[key] = run_id
        try:
            yield
        finally:
            _held.pop(key, None)


def process(item: PlannedFile, settings: Settings, out: str, context: RunContext) -> Finished:
    """One document task: parse it in a worker process, stage its rows (the run commits them)."""
    result = run_in_worker(item.source or item.path, item.doc_id, settings, context=context)
    return stage(item.path, result, context.run_id or "", settings.schema_name)


def stage(path: Path, result: DocumentResult, run_id: str, schema_name: str) -> Finished:
    """One document's rows, ready for the flow to commit in a batch, and its summary."""
    sink = DeltaSink(Path("."), schema_name)  # staging touches no storage
    try:
        staged = sink.stage(result, run_id)
    except (pa.ArrowException, UnicodeError, ValueError, TypeError, OverflowError) as exc:
        # rows the contract cannot hold (a value out of range, text that is not UTF-8): keep the document
        # as a failed row with the reason rather than losing it or stopping the run
        result = failed_result(path, result.document.doc_id,
                               f"its rows could not be written: {type(exc).__name__}: {exc}")
        staged = sink.stage(result, run_id)
    return Finished(document_summary(result, worker=f"{socket.gethostname()}:{os.getpid()}"), staged)


@dataclass(frozen=True)
class Finished:
    """What a document task returns to the flow: its summary and its staged rows."""

    summary: DocumentSummary
    staged: Staged


class Batcher:
    """Commits finished documents in batches: every ``commit_every_documents``, or once ``commit_every_s``
    has passed since the last commit (:meth:`due_in` tells the run loop how long it may wait), and what
    is left at the end. Journals each committed document."""

    def __init__(self, sink: DeltaSink, manifest: RunManifest, run_id: str, settings: Settings):
        self.sink, self.manifest, self.run_id = sink, manifest, run_id
        self.every, self.every_s = settings.commit_every_documents, settings.commit_every_s
        self.pending: list[Finished] = []
        self.number = 0
        self.last = time.monotonic()
        self.commit_s = 0.0  # time spent committing (the run's counts record it as commit_ms)

    def add(self, done: Finished) -> None:
        self.pending.append(done)
        if len(self.pending) >= self.every:
            self.flush()
        self.tick()

    def due_in(self) -> float | None:
        """Seconds until the pending documents are due (None: nothing pending, nothing due)."""
        return max(0.0, self.last + self.every_s - time.monotonic()) if self.pending else None

    def tick(self) -> None:
        """Commit the pending documents if ``commit_every_s`` has passed since the last commit."""
        if self.pending and time.monotonic() - self.last >= self.every_s:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.number += 1
            t0 = time.perf_counter()
            self.sink.commit([d.staged for d in self.pending], self.run_id, self.number)
            self.commit_s += time.perf_counter() - t0
            for d in self.pending:
                self.manifest.commit(d.summary.doc_id, d.summary.status, worker=d.summary.worker,
                                     batch=self.number)
            self.pending = []
        self.last = time.monotonic()


def _versions() -> dict[str, str]:
    out = {"docroute": PIPELINE_VERSION, "contract": CONTRACT_VERSION, "python": platform.python_version()}
    for dist in ("pymupdf", "prefect", "unstructured", "pydantic", "pyarrow"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def extract(input: str, out: str, settings: Settings, retry_failed: bool, reprocess_schema: bool, run_id: str,
            submit: Submit, completed: Callable[[Iterable], Iterator], local_pool: bool, mode: str) -> RunSummary:
    """The run: ``submit`` schedules a document task, ``completed`` yields futures as they finish;
    ``local_pool``: the tasks run in this process (open the worker-process pool here); ``mode`` says
    in words what orchestrates it (shown in the summary and recorded in the runs row)."""
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    state = state_folder(out, settings.state_dir)  # lock, manifests, journals, report, VLM ledger
    output = str(out).rstrip("/") if is_uri(out) else str(Path(out).resolve())
    sink = DeltaSink(out, settings.schema_name, settings.storage_options)
    maintenance: dict[str, int] = {}  # batches, commit time, tables compacted
    interrupted = RunManifest.interrupted(state)
    the_plan = plan(input, sink.committed(), force=settings.force, retry_failed=retry_failed,
                    pipeline_version=PIPELINE_VERSION, schema_name=sink.schema.schema_name,
                    schema_version=sink.schema.schema_version, reprocess_schema=reprocess_schema,
                    exclude=(state,) if is_uri(out) else (Path(out), state))
    manifest = RunManifest(state, run_id)
    manifest.start(started_at=started, input=input, output=output, state_folder=str(state.resolve()),
                   runner=settings.runner,
                   orchestrator=mode,
                   schema=f"{sink.schema.schema_name}@{sink.schema.schema_version}", discovered=the_plan.discovered,
                   planned=[{"doc_id": i.doc_id, "path": display_path(i.path)} for i in the_plan.todo],
                   skipped=len(the_plan.skipped), stale_schema=len(the_plan.stale_schema),
                   duplicates=len(the_plan.duplicates), resumes=[r["run_id"] for r in interrupted])
    progress.emit(progress.Planned(todo=len(the_plan.todo), skipped=len(the_plan.skipped),
                                   duplicates=len(the_plan.duplicates), run_id=run_id))
    totals = RunTotals(skipped=len(the_plan.skipped), duplicates=len(the_plan.duplicates),
                       stale_schema=len(the_plan.stale_schema))
    context = run_context(settings.router, state, run_id)  # with the run's VLM page ledger, when capped
    if the_plan.todo:
        with _local_pool(settings, len(the_plan.todo), local_pool):
            submitted = {submit(item, settings, out, context): item for item in the_plan.todo}
            batcher = Batcher(sink, manifest, run_id, settings)
            for fut in _finished(completed, list(submitted), batcher):
                item = submitted.pop(fut)  # a future holds its result: let a committed one go
                try:
                    done = fut.result()
                except Exception as exc:  # the task as a whole failed (a lost Dask worker): a failed row
                    result = failed_result(item.path, item.doc_id, f"its task failed on the {settings.runner} runner "
                                           f"({type(exc).__name__}: {exc}); rerun with --retry-failed")
                    done = stage(item.path, result, run_id, settings.schema_name)
                batcher.add(done)
                totals.add(done.summary)
                progress.emit(done.summary)
            batcher.flush()
            maintenance |= {"batches": batcher.number, "commit_ms": round(batcher.commit_s * 1000)}
        maintenance |= _compact(sink, settings)
    elapsed = time.perf_counter() - t0
    run = {
        "run_id": run_id, "started_at": started, "finished_at": datetime.now(UTC), "input": input,
        "output": output, "config": _recorded(settings) | {"orchestrator": mode},
        "counts": totals.counts() | maintenance | {"resumed_runs": len(interrupted)}, "versions": _versions(),
    }
    sink.write_run(run)
    manifest.finish(finished_at=run["finished_at"], counts=run["counts"])
    vlm = vlm_in_use(settings, totals)
    report = write_run_report(state, run, vlm, sink)
    if not progress.listened():  # a deployment run: one line for the log of whoever serves it
        print(_one_line(run_id, totals, report, time.perf_counter() - t0), file=sys.stderr, flush=True)
    return RunSummary(run=run, totals=totals, report=str(report), schema=sink.schema.schema_name,
                      schema_version=sink.schema.schema_version, elapsed_s=elapsed, vlm=vlm,
                      interrupted=tuple(interrupted), maintenance=maintenance, orchestrator=mode)


def _recorded(settings: Settings) -> dict:
    """The settings as the runs row and the report record them: storage option values (credentials) masked."""
    config = settings.model_dump(mode="json")
    config["storage_options"] = {k: "***" for k in config.get("storage_options") or {}}
    return config


def _finished(completed: Callable[[Iterable], Iterator], futures: list, batcher: Batcher) -> Iterator:
    """The futures as they finish (``completed`` runs on a thread of its own), committing ``batcher``'s
    pending documents on this thread whenever they fall due while none finishes."""
    done: queue.SimpleQueue = queue.SimpleQueue()
    end = object()

    def feed() -> None:
        try:
            for fut in completed(futures):
                done.put(fut)
        except BaseException as exc:  # noqa: BLE001 -- handed to the run's thread, raised there
            done.put(exc)
        done.put(end)

    threading.Thread(target=feed, name="docroute-completed", daemon=True).start()
    while True:
        try:
            item = done.get(timeout=batcher.due_in())
        except queue.Empty:
            batcher.tick()
            continue
        if item is end:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


def _compact(sink: DeltaSink, settings: Settings) -> dict[str, int]:
    """Compact every table whose live data files passed ``settings.compact_files``; how many were."""
    compacted = [name for name in sink.tables() if sink.live_files(name) > settings.compact_files]
    for name in compacted:
        sink.compact(name)
    return {"compacted_tables": len(compacted)} if compacted else {}


def vlm_in_use(settings: Settings, totals: RunTotals) -> str:
    """Which VLM this run used, in words: the backend and the model(s) that answered, or why none."""
    backend = settings.vlm.resolved_backend()
    if backend == "none":
        return f"none: {settings.vlm.why_none()}"
    answered = ", ".join(f"{m} ({n} document(s))" for m, n in totals.vlm_models.most_common())
    return f"{backend}: {answered or (settings.vlm.model or 'the server default') + ' (no page needed it)'}"


def _one_line(run_id: str, totals: RunTotals, report: Path, elapsed: float) -> str:
    line = (f"docroute run {run_id}: {totals.documents} document(s) processed ({totals.ok} ok, {totals.partial} "
            f"partial, {totals.failed} failed), {totals.skipped} already done, {totals.pages} page(s) in "
            f"{elapsed:.1f} s; {totals.needs_review} need review; report {report}")
    for path, error in totals.failures[:20]:
        line += f"\n  {path}: {error}"
    return line


@contextmanager
def _local_pool(settings: Settings, n_documents: int, local: bool):
    """The run's worker-process pool when tasks run in this process; Dask workers open their own."""
    if not local:
        yield
        return
    with worker_pool(min(settings.workers, n_documents), worker_memory_limit(settings)):
        yield


def _direct_submit(pool: ThreadPoolExecutor) -> Submit:
    def submit(item: PlannedFile, settings: Settings, out: str, context: RunContext) -> Future:
        return pool.submit(_with_retries, item, settings, out, context)
    return submit


def _with_retries(item: PlannedFile, settings: Settings, out: str, context: RunContext) -> Finished:
    """As the Prefect task does: retried twice, after a second, only for transient infrastructure errors."""
    for attempt in range(3):
        try:
            return process(item, settings, out, context)
        except TRANSIENT:
            if attempt == 2:
                raise
            time.sleep(1)
    raise AssertionError("unreachable")


DIRECT = "direct (a thread pool in this process; no Prefect API configured, so no Prefect server is started)"


def run_direct(input: str, out: str, settings: Settings, retry_failed: bool, reprocess_schema: bool,
               run_id: str) -> RunSummary:
    with ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="docroute") as pool:
        return extract(input, out, settings, retry_failed, reprocess_schema, run_id, _direct_submit(pool),
                       as_completed, True, DIRECT)


def use_prefect(settings: Settings) -> bool:
    """Prefect orchestrates a run when there is a Prefect API to report to, or Dask workers to reach."""
    if settings.orchestrator != "auto":
        return settings.orchestrator == "prefect"
    return settings.runner == "dask" or prefect_env.api_url_configured()


def run_extract(input: str, out: str, settings: Settings, retry_failed: bool = False,
                reprocess_schema: bool = False) -> RunSummary:
    """Run, holding the output lock: on Prefect (:func:`use_prefect`) or directly on a thread pool.

    Raises ``runlog.OutputLocked`` (before anything starts) when another run holds ``out``,
    ``runlog.StateFolderError`` when the state folder serves another output, and
    ``runners.RunnerError`` when the runner cannot work as configured.
    """
    run_id = new_run_id()
    with run_lock(out, settings, run_id, input):
        if not use_prefect(settings):
            return run_direct(input, out, settings, retry_failed, reprocess_schema, run_id)
        from docroute.flows.extract import run_on_prefect

        return run_on_prefect(input, out, settings, retry_failed, reprocess_schema, run_id)
