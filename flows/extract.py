"""The Prefect flow ``extract_folder``: one task per document, work done in worker processes.

Tasks run on a thread pool (``--workers`` wide); each hands its document to a pool of worker
processes (pebble) so that PyMuPDF and tesseract run truly in parallel and a document that crashes or
hangs its worker becomes a ``failed`` row (the worker is replaced) instead of taking the run down.
Prefect retries a task only for transient infrastructure errors, never for a bad document.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from docroute.flows import prefect_env

prefect_env.apply()

from pebble import ProcessExpired, ProcessPool  # noqa: E402
from prefect import flow, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

from docroute import PIPELINE_VERSION  # noqa: E402
from docroute.flows import progress  # noqa: E402
from docroute.flows.html_report import write_run_report  # noqa: E402
from docroute.pipelines.batch import RunTotals, document_summary, plan  # noqa: E402
from docroute.pipelines.process import process_document  # noqa: E402
from docroute.pipelines.settings import Settings  # noqa: E402
from docroute.pipelines.sink import ParquetSink, new_run_id  # noqa: E402
from docroute.schemas import Document, DocumentResult  # noqa: E402
from docroute.schemas.contract import CONTRACT_VERSION  # noqa: E402

_pool_lock = threading.Lock()
_pool: ProcessPool | None = None
TRANSIENT = (BrokenPipeError, ConnectionError, InterruptedError, BlockingIOError)


def _worker_init() -> None:
    prefect_env.apply()
    import docroute.pipelines.process  # noqa: F401  (engines load once per worker, not per document)


@contextmanager
def worker_pool(workers: int):
    global _pool
    pool = ProcessPool(
        max_workers=workers, max_tasks=200, initializer=_worker_init,
        context=multiprocessing.get_context("forkserver"),
    )
    with _pool_lock:
        _pool = pool
    try:
        yield pool
    finally:
        with _pool_lock:
            _pool = None
        pool.close()
        pool.join(timeout=30)
        pool.stop()


def _failed_result(path: Path, doc_id: str, error: str) -> DocumentResult:
    size = path.stat().st_size if path.exists() else 0
    return DocumentResult(
        document=Document(doc_id=doc_id, source_path=str(path), file_name=path.name,
                          mime_type="application/octet-stream", size_bytes=size, n_pages=0),
        status="failed", error=error, processed_at=datetime.now(UTC), pipeline_version=PIPELINE_VERSION,
    )


def run_in_worker(path: Path, doc_id: str, settings: Settings) -> DocumentResult:
    """Process one document in a worker process, turning timeouts and worker deaths into failed rows."""
    pool = _pool
    if pool is None:  # called outside a flow run (tests, library use): run in this process
        return process_document(path, settings)
    future = pool.schedule(process_document, args=(path, settings), timeout=settings.document_timeout_s)
    try:
        return future.result()
    except FutureTimeout:
        return _failed_result(path, doc_id, f"timed out after {settings.document_timeout_s:.0f} s "
                                            "(raise DOCROUTE_DOCUMENT_TIMEOUT_S for very large documents)")
    except ProcessExpired as exc:
        return _failed_result(path, doc_id, f"the worker process died while parsing (exit code {exc.exitcode}); "
                                            "the file may be malformed or too large for memory")


def _transient(task, task_run, state) -> bool:
    try:
        state.result()
    except TRANSIENT:
        return True
    except Exception:
        return False
    return False


@task(name="process-document", retries=2, retry_delay_seconds=1, retry_condition_fn=_transient,
      cache_policy=NO_CACHE, log_prints=False)
def process_document_task(path: str, doc_id: str, settings: Settings, out: str, run_id: str) -> dict:
    result = run_in_worker(Path(path), doc_id, settings)
    ParquetSink(Path(out), settings.schema_name).write(result, run_id)
    summary = document_summary(result)
    progress.emit({"event": "document", **summary})
    return summary


def _versions() -> dict[str, str]:
    out = {"docroute": PIPELINE_VERSION, "contract": CONTRACT_VERSION, "python": platform.python_version()}
    for dist in ("pymupdf", "prefect", "unstructured", "pydantic", "pyarrow"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


@flow(name="extract_folder", log_prints=False, validate_parameters=False)
def extract_folder(input: str, out: str, settings: Settings, retry_failed: bool = False) -> dict:
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    run_id = new_run_id()
    sink = ParquetSink(Path(out), settings.schema_name)
    the_plan = plan(input, sink.done(PIPELINE_VERSION), force=settings.force, retry_failed=retry_failed)
    progress.emit({"event": "planned", "todo": len(the_plan.todo), "skipped": len(the_plan.skipped),
                   "duplicates": len(the_plan.duplicates), "run_id": run_id})
    totals = RunTotals(skipped=len(the_plan.skipped), duplicates=len(the_plan.duplicates))
    if the_plan.todo:
        with worker_pool(min(settings.workers, len(the_plan.todo))):
            futures = [
                process_document_task.submit(str(item.path), item.doc_id, settings, out, run_id)
                for item in the_plan.todo
            ]
            for fut in futures:
                totals.add(fut.result())
    elapsed = time.perf_counter() - t0
    run = {
        "run_id": run_id, "started_at": started, "finished_at": datetime.now(UTC), "input": input,
        "output": str(Path(out).resolve()), "config": settings.model_dump(mode="json"),
        "counts": totals.counts(), "versions": _versions(),
    }
    sink.write_run(run)
    report = write_run_report(Path(out), run)
    return {**run, "report": str(report), "schema": sink.schema.schema_name, "elapsed_s": elapsed, "pages_per_s": totals.pages / elapsed if elapsed else 0.0,
            "failures": totals.failures, "totals": totals}


def run_extract(input: str, out: str, settings: Settings, retry_failed: bool = False) -> dict:
    """Run the flow with a thread pool as wide as ``settings.workers``."""
    os.makedirs(out, exist_ok=True)
    runner = ThreadPoolTaskRunner(max_workers=settings.workers)
    return extract_folder.with_options(task_runner=runner)(input, out, settings, retry_failed)
