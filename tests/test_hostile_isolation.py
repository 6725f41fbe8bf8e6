"""Isolation: a document that kills, hangs or balloons its worker process becomes a failed row with the
reason, the worker is replaced, and the next document in the same pool is processed normally.

The misbehaving "parsers" below run in the real pebble worker pool (forkserver, memory limit set by
the worker initializer) through the same ``run_in_worker`` the flow uses.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from docroute.flows.isolation import run_in_worker, worker_pool
from docroute.pipelines.process import process_document
from docroute.pipelines.settings import Settings

from conftest import SAMPLES


def die(path: Path, settings: Settings, context=None):
    os.kill(os.getpid(), signal.SIGKILL)  # as a segfault or the OOM killer would


def hang(path: Path, settings: Settings, context=None):
    time.sleep(600)


def balloon(path: Path, settings: Settings, context=None):
    chunks = []
    for _ in range(64):  # 64 x 64 MB = 4 GB, well over the limit
        chunks.append(bytearray(64 << 20))
    return chunks


def explode(path: Path, settings: Settings, context=None):
    raise RuntimeError("an engine bug that escaped process_document")


def worker_pid(path: Path, settings: Settings, context=None) -> int:
    return os.getpid()


def test_crash_hang_and_balloon_become_failed_rows_and_the_pool_goes_on():
    settings = Settings(workers=1, document_timeout_s=3, worker_memory_mb=256)
    doc = SAMPLES / "invoice_ruled.pdf"
    doc_id = "x" * 64
    with worker_pool(1, settings.worker_memory_mb):
        first = run_in_worker(doc, doc_id, settings, fn=worker_pid)

        r = run_in_worker(doc, doc_id, settings, fn=die)
        assert r.status == "failed" and "worker process died" in r.error and "-9" in r.error
        assert r.document.doc_id == doc_id and r.document.file_name == "invoice_ruled.pdf"

        t0 = time.monotonic()
        r = run_in_worker(doc, doc_id, settings, fn=hang)
        assert r.status == "failed" and "timed out after 3 s" in r.error
        assert time.monotonic() - t0 < 30

        r = run_in_worker(doc, doc_id, settings, fn=balloon)
        assert r.status == "failed" and "more memory than allowed" in r.error and "256 MB" in r.error

        r = run_in_worker(doc, doc_id, settings, fn=explode)
        assert r.status == "failed" and "internal error" in r.error and "escaped" in r.error

        assert run_in_worker(doc, doc_id, settings, fn=worker_pid) != first, "the dead worker was replaced"
        r = run_in_worker(doc, doc_id, settings)  # the real parser, in the same pool, still works
        assert r.status == "ok" and r.extractions[0].data["invoice_number"]


def test_a_real_parse_over_the_memory_limit_is_a_failed_row_that_says_so():
    """MuPDF under a tiny limit: its malloc fails and the row says out of memory, nothing crashes."""
    settings = Settings(workers=1, worker_memory_mb=8, document_timeout_s=60)
    with worker_pool(1, settings.worker_memory_mb):
        r = run_in_worker(SAMPLES / "invoice_photo.png", "y" * 64, settings)
        assert r.status in {"failed", "partial"}, (r.status, r.error)
        assert "out of memory" in r.error.lower(), r.error
        r = run_in_worker(SAMPLES / "broken_empty.pdf", "y" * 64, settings)
        assert r.status == "failed" and "empty" in r.error, "small documents still go through"


def test_without_a_pool_the_same_function_runs_in_process():
    r = run_in_worker(SAMPLES / "broken_empty.pdf", "z" * 64, Settings(workers=1))
    assert r.status == "failed" and "empty" in r.error
    assert process_document(SAMPLES / "broken_empty.pdf", Settings(workers=1)).error == r.error


def test_the_default_memory_limit_is_not_applied_where_the_vlm_lives_in_the_worker():
    from docroute.flows.extract import worker_memory_limit

    assert worker_memory_limit(Settings()) == 3072
    assert worker_memory_limit(Settings(vlm_backend="transformers")) == 0
    assert worker_memory_limit(Settings(vlm_backend="transformers", worker_memory_mb=20000)) == 20000
