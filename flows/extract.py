"""The Prefect flow ``extract_folder``: one task per document, work done in worker processes.

Tasks run on a thread pool (``--workers`` wide); each hands its document to a pool of worker
processes (pebble) so that PyMuPDF and tesseract run truly in parallel and a document that crashes,
hangs (``document_timeout_s``) or balloons its worker (``worker_memory_mb``, an RLIMIT_DATA set in
each worker and inherited by tesseract) becomes a ``failed`` row with the reason (the worker is
replaced) instead of taking the run down. Prefect retries a task only for transient infrastructure
errors, never for a bad document.

A run holds the output folder's lock (``sink.output_lock``) from before planning to the end, first
cleans up what a killed run left (``ParquetSink.recover``), and keeps a manifest with a commit
journal (``sink.RunManifest``).
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

import pyarrow as pa  # noqa: E402
from pebble import ProcessExpired, ProcessPool  # noqa: E402
from prefect import flow, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

from docroute import PIPELINE_VERSION  # noqa: E402
from docroute.flows import progress  # noqa: E402
from docroute.flows.html_report import write_run_report  # noqa: E402
from docroute.pipelines.batch import RunTotals, document_summary, plan  # noqa: E402
from docroute.pipelines.budget import with_run_budget  # noqa: E402
from docroute.pipelines.ingest import display_path  # noqa: E402
from docroute.pipelines.process import process_document  # noqa: E402
from docroute.pipelines.settings import Settings  # noqa: E402
from docroute.pipelines.sink import ParquetSink, RunManifest, new_run_id, output_lock  # noqa: E402
from docroute.schemas import Document, DocumentResult  # noqa: E402
from docroute.schemas.contract import CONTRACT_VERSION  # noqa: E402

_pool_lock = threading.Lock()
_pool: ProcessPool | None = None
_manifests: dict[str, RunManifest] = {}  # run_id -> manifest of the run going on in this process
TRANSIENT = (BrokenPipeError, ConnectionError, InterruptedError, BlockingIOError)


def _data_segment_bytes() -> int:
    """What this process has mapped that RLIMIT_DATA counts (VmData), 0 where /proc is missing."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmData:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def limit_memory(memory_mb: int) -> None:
    """Let this process allocate at most ``memory_mb`` more of data segment than it holds now.

    RLIMIT_DATA (heap and private writable maps: what a parse allocates) rather than RLIMIT_AS, so
    address space that is only reserved (a GPU driver's) does not count. It is set above what the
    worker already holds after loading its engines, because some of that is reserved, not used
    (pyarrow's allocator maps a 1 GB arena up front). Past the limit malloc fails: Python raises
    MemoryError, MuPDF an error, tesseract (a child, which inherits the limit) exits; each becomes a
    failed page or row.
    """
    if not memory_mb:
        return
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    limit = _data_segment_bytes() + memory_mb * 1024 * 1024
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))


# Modules the default pipeline imports lazily, loaded by each worker before its memory limit is set:
# a native library that initialises under memory pressure can spin instead of failing (OpenBLAS,
# loaded by scipy, did: a worker at its limit hung in the import until the document timeout).
WARM_MODULES = ("numpy", "scipy.ndimage", "PIL.Image", "PIL.ImageFilter", "pytesseract", "filetype",
                "phonenumbers", "stdnum.iban", "stdnum.luhn", "stdnum.us.ssn")


def worker_memory_limit(settings: Settings) -> int:
    """The worker memory limit in MB (0: none). With the transformers VLM backend the model lives in
    the worker, so the default limit is not applied; an explicit ``worker_memory_mb`` always is."""
    if settings.vlm_backend == "transformers" and "worker_memory_mb" not in settings.model_fields_set:
        return 0
    return settings.worker_memory_mb


def _worker_init(memory_mb: int = 0) -> None:
    import importlib

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # documents run in parallel processes already
    prefect_env.apply()
    import docroute.pipelines.process  # noqa: F401  (engines load once per worker, not per document)
    from docroute.extractors import pdf

    pdf._pymupdf()  # MuPDF loads here, so the memory limit below is what documents get
    if memory_mb:
        for name in WARM_MODULES:
            try:
                importlib.import_module(name)
            except ImportError:
                pass
    limit_memory(memory_mb)


@contextmanager
def worker_pool(workers: int, memory_mb: int = 0):
    global _pool
    pool = ProcessPool(
        max_workers=workers, max_tasks=200, initializer=_worker_init, initargs=(memory_mb,),
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
    try:
        size = path.stat().st_size
    except OSError:
        size = 0
    return DocumentResult(
        document=Document(doc_id=doc_id, source_path=display_path(path), file_name=display_path(path.name),
                          mime_type="application/octet-stream", size_bytes=size, n_pages=0),
        status="failed", error=error, processed_at=datetime.now(UTC), pipeline_version=PIPELINE_VERSION,
    )


def _memory_note(settings: Settings) -> str:
    if settings.worker_memory_mb:
        return f"over the worker memory limit of {settings.worker_memory_mb} MB (DOCROUTE_WORKER_MEMORY_MB)"
    return "out of memory"


def run_in_worker(path: Path, doc_id: str, settings: Settings, fn=process_document) -> DocumentResult:
    """Process one document in a worker process, turning timeouts and worker deaths into failed rows.

    ``fn(path, settings) -> DocumentResult`` is ``process_document``; tests pass misbehaving ones.
    """
    pool = _pool
    if pool is None:  # called outside a flow run (tests, library use): run in this process
        return fn(path, settings)
    future = pool.schedule(fn, args=(path, settings), timeout=settings.document_timeout_s)
    try:
        return future.result()
    except FutureTimeout:
        return _failed_result(path, doc_id, f"timed out after {settings.document_timeout_s:.0f} s "
                                            "(raise DOCROUTE_DOCUMENT_TIMEOUT_S for very large documents)")
    except ProcessExpired as exc:
        return _failed_result(path, doc_id, f"the worker process died while parsing (exit code {exc.exitcode}); "
                                            f"the file may be malformed or need more memory ({_memory_note(settings)}?)")
    except MemoryError:
        return _failed_result(path, doc_id, f"the document needs more memory than allowed: {_memory_note(settings)}")
    except Exception as exc:  # a bug or an engine error that escaped process_document: this file only
        return _failed_result(path, doc_id, f"internal error while processing: {type(exc).__name__}: {exc}")


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
    sink = ParquetSink(Path(out), settings.schema_name)
    try:
        sink.write(result, run_id)
    except (pa.ArrowException, UnicodeError, ValueError, TypeError, OverflowError) as exc:
        # rows the contract cannot hold (a value out of range, text that is not UTF-8): keep the document
        # as a failed row with the reason rather than losing it or stopping the run
        result = _failed_result(Path(path), doc_id, f"its rows could not be written: {type(exc).__name__}: {exc}")
        sink.write(result, run_id)
    manifest = _manifests.get(run_id)
    if manifest is not None:
        manifest.commit(result.document.doc_id, result.status)
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
def extract_folder(input: str, out: str, settings: Settings, retry_failed: bool = False,
                   reprocess_schema: bool = False, run_id: str | None = None) -> dict:
    """Plan, process and commit; call through :func:`run_extract`, which holds the output lock."""
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    run_id = run_id or new_run_id()
    out_path = Path(out)
    sink = ParquetSink(out_path, settings.schema_name)
    recovered = sink.recover()
    interrupted = RunManifest.interrupted(out_path)
    the_plan = plan(input, sink.committed(), force=settings.force, retry_failed=retry_failed,
                    pipeline_version=PIPELINE_VERSION, schema_name=sink.schema.schema_name,
                    schema_version=sink.schema.schema_version, reprocess_schema=reprocess_schema,
                    exclude=(out_path,))
    manifest = RunManifest(out_path, run_id)
    manifest.start(started_at=started, input=input, output=str(out_path.resolve()),
                   schema=f"{sink.schema.schema_name}@{sink.schema.schema_version}", discovered=the_plan.discovered,
                   planned=[{"doc_id": i.doc_id, "path": display_path(i.path)} for i in the_plan.todo],
                   skipped=len(the_plan.skipped), stale_schema=len(the_plan.stale_schema),
                   duplicates=len(the_plan.duplicates), resumes=[r["run_id"] for r in interrupted], recovered=recovered)
    _manifests[run_id] = manifest
    progress.emit({"event": "planned", "todo": len(the_plan.todo), "skipped": len(the_plan.skipped),
                   "duplicates": len(the_plan.duplicates), "run_id": run_id})
    totals = RunTotals(skipped=len(the_plan.skipped), duplicates=len(the_plan.duplicates),
                       stale_schema=len(the_plan.stale_schema))
    settings = with_run_budget(settings, out_path, run_id)  # the run's VLM page ledger, when capped
    try:
        if the_plan.todo:
            with worker_pool(min(settings.workers, len(the_plan.todo)), worker_memory_limit(settings)):
                futures = [
                    process_document_task.submit(str(item.path), item.doc_id, settings, out, run_id)
                    for item in the_plan.todo
                ]
                for fut in futures:
                    totals.add(fut.result())
    finally:
        _manifests.pop(run_id, None)
    elapsed = time.perf_counter() - t0
    run = {
        "run_id": run_id, "started_at": started, "finished_at": datetime.now(UTC), "input": input,
        "output": str(out_path.resolve()), "config": settings.model_dump(mode="json"),
        "counts": totals.counts() | recovered | {"resumed_runs": len(interrupted)}, "versions": _versions(),
    }
    sink.write_run(run)
    manifest.finish(finished_at=run["finished_at"], counts=run["counts"])
    report = write_run_report(out_path, run)
    return {**run, "report": str(report), "schema": sink.schema.schema_name, "elapsed_s": elapsed,
            "pages_per_s": totals.pages / elapsed if elapsed else 0.0, "failures": totals.failures,
            "totals": totals, "interrupted": interrupted, "recovered": recovered,
            "schema_version": sink.schema.schema_version}


def run_extract(input: str, out: str, settings: Settings, retry_failed: bool = False,
                reprocess_schema: bool = False) -> dict:
    """Run the flow with a thread pool as wide as ``settings.workers``, holding the output lock.

    Raises ``sink.OutputLocked`` (before any Prefect flow run starts) when another run holds ``out``.
    """
    run_id = new_run_id()
    with output_lock(Path(out), run_id, input):
        runner = ThreadPoolTaskRunner(max_workers=settings.workers)
        return extract_folder.with_options(task_runner=runner)(input, out, settings, retry_failed,
                                                               reprocess_schema, run_id)
