"""Isolation: a document that kills, hangs or balloons its worker process becomes a failed row with the
reason, the worker is replaced, and the next document in the same pool is processed normally.

The misbehaving "parsers" below run in the real pebble worker pool (forkserver, memory limit set by
the worker initializer) through the same ``run_in_worker`` the flow uses.
"""

from __future__ import annotations

import os
import signal
import time
from hashlib import sha256
from pathlib import Path

from docroute.flows.isolation import run_in_worker, worker_pool
from docroute.pipelines.process import process_document
from docroute.pipelines.settings import Settings
from docroute.pipelines.sink import DeltaSink

from conftest import SAMPLES, committed


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


def test_crash_hang_and_balloon_become_failed_rows_and_the_pool_goes_on(tmp_path, fault_record):
    settings = Settings(workers=1, document_timeout_s=3, worker_memory_mb=256)
    doc = SAMPLES / "invoice_ruled.pdf"
    sink = DeltaSink(tmp_path / "out", "invoice")
    # one doc_id per document given to the pool; the last one the real parser reads: its own sha256
    ids = [f"{i:064x}" for i in range(4)] + [sha256(doc.read_bytes()).hexdigest()]
    kills = 0
    with worker_pool(1, settings.worker_memory_mb):
        first = pid = run_in_worker(doc, "p" * 64, settings, fn=worker_pid)

        def run(doc_id: str, fn=None):
            nonlocal kills, pid
            r = run_in_worker(doc, doc_id, settings, **({"fn": fn} if fn else {}))
            sink.write(r, "isolation")
            now = run_in_worker(doc, "p" * 64, settings, fn=worker_pid)
            kills += now != pid  # the worker that ran it is gone: replaced
            pid = now
            return r

        r = run(ids[0], die)
        assert r.status == "failed" and "worker process died" in r.error and "-9" in r.error
        assert r.document.doc_id == ids[0] and r.document.file_name == "invoice_ruled.pdf"

        t0 = time.monotonic()
        r = run(ids[1], hang)
        assert r.status == "failed" and "timed out after 3 s" in r.error
        assert time.monotonic() - t0 < 30  # cut at the timeout, not left to sleep its 600 s

        r = run(ids[2], balloon)
        assert r.status == "failed" and "more memory than allowed" in r.error and "256 MB" in r.error

        r = run(ids[3], explode)
        assert r.status == "failed" and "internal error" in r.error and "escaped" in r.error

        assert pid != first, "the dead worker was replaced"
        r = run(ids[4])  # the real parser, in the same pool, still works
        assert r.status == "ok" and r.extractions[0].data["invoice_number"], r.error
    written, duplicated = committed(tmp_path / "out")
    fault_record(inputs=len(ids), kills=kills, lost=len(set(ids) - written), duplicated=duplicated)
    assert (written, duplicated) == (set(ids), 0), "every document has its row, once"
    assert kills >= 2, "the SIGKILLed and the hung worker were replaced"


def test_a_real_parse_over_the_memory_limit_is_a_failed_row_that_says_so(tmp_path, fault_record):
    """MuPDF under a tiny limit: its malloc fails and the row says out of memory, nothing crashes."""
    settings = Settings(workers=1, worker_memory_mb=8, document_timeout_s=60)
    sink = DeltaSink(tmp_path / "out", "invoice")
    docs = [SAMPLES / "invoice_photo.png", SAMPLES / "broken_empty.pdf"]
    ids = [sha256(d.read_bytes()).hexdigest() for d in docs]
    with worker_pool(1, settings.worker_memory_mb):
        r = run_in_worker(docs[0], ids[0], settings)
        sink.write(r, "oom")
        assert r.status in {"failed", "partial"}, (r.status, r.error)
        assert "out of memory" in r.error.lower(), r.error
        r = run_in_worker(docs[1], ids[1], settings)
        sink.write(r, "oom")
        assert r.status == "failed" and "empty" in r.error, "small documents still go through"
    written, duplicated = committed(tmp_path / "out")
    fault_record(inputs=len(ids), lost=len(set(ids) - written), duplicated=duplicated)
    assert (written, duplicated) == (set(ids), 0)


def test_without_a_pool_the_same_function_runs_in_process():
    r = run_in_worker(SAMPLES / "broken_empty.pdf", "z" * 64, Settings(workers=1))
    assert r.status == "failed" and "empty" in r.error
    assert process_document(SAMPLES / "broken_empty.pdf", Settings(workers=1)).error == r.error


def test_the_default_memory_limit_is_not_applied_where_the_vlm_lives_in_the_worker():
    from docroute.flows.extract import worker_memory_limit

    assert worker_memory_limit(Settings()) == 3072
    assert worker_memory_limit(Settings(vlm_backend="transformers")) == 0
    assert worker_memory_limit(Settings(vlm_backend="transformers", worker_memory_mb=20000)) == 20000
