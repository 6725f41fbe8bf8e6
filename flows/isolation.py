"""Each document is parsed in a worker process of its own pool, so that a crash, a hang or a memory
balloon becomes a ``failed`` row with the reason instead of taking the run down.

The pool is pebble's (forkserver): ``document_timeout_s`` bounds a document, ``worker_memory_mb`` (an
RLIMIT_DATA set in each worker and inherited by tesseract) bounds its memory, a dead worker is
replaced. With the thread runner the flow opens one pool for the run (:func:`worker_pool`). On a Dask
worker each worker process opens its own pool the first time it gets a document
(:func:`_dask_worker_pool`): that needs non-daemonic Dask workers (``distributed.worker.daemon:
false``, which ``--runner dask`` sets on the cluster it starts); a daemonic worker cannot have child
processes, so there documents run inside the Dask worker, without the timeout and memory limit.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import sys
import threading
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pebble import ProcessExpired, ProcessPool

from docroute import PIPELINE_VERSION
from docroute.extractors.document import SourceFile
from docroute.flows import prefect_env
from docroute.pipelines.context import RunContext
from docroute.pipelines.ingest import display_path
from docroute.pipelines.process import process_document
from docroute.pipelines.settings import Settings
from docroute.schemas import Document, DocumentResult

_pool_lock = threading.Lock()
_pool: ProcessPool | None = None  # the pool of the flow run going on in this process (thread runner)
_dask_pools: dict[int, ProcessPool] = {}  # memory limit -> the pool of this Dask worker process


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
    if settings.vlm.resolved_backend() == "transformers" and "worker_memory_mb" not in settings.model_fields_set:
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


def _new_pool(workers: int, memory_mb: int) -> ProcessPool:
    return ProcessPool(
        max_workers=workers, max_tasks=200, initializer=_worker_init, initargs=(memory_mb,),
        context=multiprocessing.get_context("forkserver"),
    )


def _stop(pool: ProcessPool) -> None:
    pool.close()
    pool.join(timeout=30)
    pool.stop()


@contextmanager
def worker_pool(workers: int, memory_mb: int = 0):
    """The flow run's pool of ``workers`` processes, used by :func:`run_in_worker` while it is open."""
    global _pool
    pool = _new_pool(workers, memory_mb)
    with _pool_lock:
        _pool = pool
    try:
        yield pool
    finally:
        with _pool_lock:
            _pool = None
        _stop(pool)


def _dask_worker():
    """The Dask worker this code runs in, or None (not on a Dask worker)."""
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return None
    try:
        return distributed.get_worker()
    except ValueError:
        return None


def _dask_worker_pool(settings: Settings) -> ProcessPool | None:
    """On a non-daemonic Dask worker, its own pool (as wide as its threads), opened on first use."""
    worker = _dask_worker()
    if worker is None or multiprocessing.current_process().daemon:
        return None
    memory_mb = worker_memory_limit(settings)
    with _pool_lock:
        pool = _dask_pools.get(memory_mb)
        if pool is None or not pool.active:
            pool = _dask_pools[memory_mb] = _new_pool(max(1, worker.state.nthreads), memory_mb)
            atexit.register(_stop, pool)
    return pool


def failed_result(path: Path, doc_id: str, error: str) -> DocumentResult:
    """A ``failed`` row for a document whose processing did not return a result of its own."""
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


def run_in_worker(source: Path | SourceFile, doc_id: str, settings: Settings, fn=process_document,
                  context: RunContext | None = None) -> DocumentResult:
    """Process one document in a worker process, turning timeouts and worker deaths into failed rows.

    ``source`` is the planned file (doc_id and type already read off its bytes) or a path;
    ``fn(source, settings, context=...) -> DocumentResult`` is ``process_document``; tests pass
    misbehaving ones. Outside a pool (library use, a daemonic Dask worker) the document runs in this process.
    """
    path = source.path if isinstance(source, SourceFile) else source
    pool = _pool or _dask_worker_pool(settings)
    if pool is None:
        return fn(source, settings, context=context)
    future = pool.schedule(fn, args=(source, settings), kwargs={"context": context}, timeout=settings.document_timeout_s)
    try:
        return future.result()
    except FutureTimeout:
        return failed_result(path, doc_id, f"timed out after {settings.document_timeout_s:g} s "
                                           "(raise DOCROUTE_DOCUMENT_TIMEOUT_S for very large documents)")
    except ProcessExpired as exc:
        return failed_result(path, doc_id, f"the worker process died while parsing (exit code {exc.exitcode}); "
                                           f"the file may be malformed or need more memory ({_memory_note(settings)}?)")
    except MemoryError:
        return failed_result(path, doc_id, f"the document needs more memory than allowed: {_memory_note(settings)}")
    except Exception as exc:  # a bug or an engine error that escaped process_document: this file only
        return failed_result(path, doc_id, f"internal error while processing: {type(exc).__name__}: {exc}")
