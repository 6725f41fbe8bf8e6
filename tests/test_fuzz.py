"""Fuzz: mutated PDFs through the ingest and parse entry, in the real worker pool.

Hypothesis derives each input from a seed PDF (a text invoice, a hand-built raw PDF, an encrypted
one) by structure-aware mutations: byte flips, truncation, deleted or duplicated slices, inserted
junk, and numbers in the PDF syntax (object numbers, lengths, offsets, sizes) replaced by extreme
values. Every input must give one row: ok, partial or failed with a reason, never an exception, a
lost document or a stuck run; the row must be writable by the sink. The examples are derandomized
(the same FUZZ_EXAMPLES inputs on every run, so README "Fault tests" can say how many were tried);
each is bounded by the per-document timeout, not by a wall-clock budget that a busy machine would cut short.
"""

from __future__ import annotations

import hashlib
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_hostile import _encrypted, _one_page, raw_pdf

from docroute.flows.isolation import run_in_worker, worker_pool
from docroute.pipelines.ingest import ingest
from docroute.pipelines.settings import Settings
from docroute.pipelines.sink import DeltaSink

from conftest import SAMPLES, committed

FUZZ_EXAMPLES = 100
SEEDS = [
    (SAMPLES / "invoice_ruled.pdf").read_bytes(),
    raw_pdf(_one_page()),
    _encrypted("fuzz"),
]
_NUMBER = re.compile(rb"\d+")
EXTREMES = [0, 1, 2, 7, 255, 65535, 2**31 - 1, 2**31, 2**32, 2**63, 10**20]


@st.composite
def mutated_pdf(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "flip", "truncate", "delete", "duplicate", "insert", "number", "number"]))
        n = len(data)
        if n < 16:
            break
        at = draw(st.integers(0, n - 1))
        if op == "flip":
            data[at] = draw(st.integers(0, 255))
        elif op == "truncate":
            del data[max(8, at):]
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 512))]
        elif op == "duplicate":
            chunk = data[at:at + draw(st.integers(1, 2048))]
            data[at:at] = chunk * draw(st.integers(1, 4))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        else:  # a number of the PDF syntax: an object number, a /Length, an xref offset, a box size
            numbers = list(_NUMBER.finditer(data))
            if numbers:
                m = numbers[draw(st.integers(0, len(numbers) - 1))]
                value = draw(st.sampled_from(EXTREMES) | st.integers(-10, 10**6))
                data[m.start():m.end()] = str(value).encode()
    return bytes(data)


def test_mutated_pdfs_always_give_one_clean_row(tmp_path, fault_record):
    passwords = tmp_path / "pw.txt"
    passwords.write_text("fuzz\n")
    cfg = Settings(workers=1, document_timeout_s=20, worker_memory_mb=1024, max_pages=50, ocr_timeout_s=10,
                   password_file=passwords)
    sink = DeltaSink(tmp_path / "out", "invoice")
    seen = {"examples": 0, "ok": 0, "partial": 0, "failed": 0, "poppler_pages": 0}
    tried: set[str] = set()

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(mutated_pdf())
    def check(data: bytes) -> None:
        path = tmp_path / "fuzz.pdf"
        path.write_bytes(data)
        doc_id = ingest(path).doc_id
        assert doc_id == hashlib.sha256(data).hexdigest()
        tried.add(doc_id)
        result = run_in_worker(path, doc_id, cfg)
        assert result.status in ("ok", "partial", "failed")
        assert result.document.doc_id == doc_id
        if result.status != "ok":
            assert result.error and len(result.error) > 10, result.error
        sink.write(result, "fuzz")  # whatever the parser produced, the contract holds it
        seen["examples"] += 1
        seen[result.status] += 1
        seen["poppler_pages"] += sum(p.renderer == "poppler" for p in result.pages)

    with worker_pool(1, cfg.worker_memory_mb):
        check()
    ids, duplicated = committed(tmp_path / "out")
    fault_record(inputs=seen["examples"], lost=len(tried - ids), duplicated=duplicated,
                 poppler_pages=seen["poppler_pages"])
    assert (len(tried - ids), duplicated) == (0, 0), "every input has its row in the sink's output, once"
    assert seen["examples"] == FUZZ_EXAMPLES, seen
    assert seen["failed"] + seen["partial"] > 0 and seen["ok"] > 0, seen
    print("fuzz outcomes", seen)
