"""One pass over each document: hashed once when the run plans, opened and read once by the pipeline,
pages OCRed once, pixels for every stage from the one handle.

The probes count the real functions (the planner's hashing, MuPDF's open, reads of the file's bytes,
tesseract) while a multi-page scanned document with a routed handwriting region goes through planning
and then the pipeline with ``--parser unstructured`` and a real (tiny) VLM that receives its crops.
"""

from __future__ import annotations

import builtins
import hashlib
import sys
from collections import Counter
from pathlib import Path

import pymupdf
import pytest
import tiny_vlm

from docroute.extractors import ocr
from docroute.pipelines import batch, ingest
from docroute.pipelines.process import process_document
from docroute.pipelines.settings import Settings

from conftest import SAMPLES, realdoc


@pytest.fixture(scope="module")
def scanned_with_handwriting(tmp_path_factory) -> Path:
    """The sample scanned invoice plus a real handwritten will (a routed handwriting region): two scans."""
    out = tmp_path_factory.mktemp("one_pass") / "in"
    out.mkdir()
    doc = pymupdf.open()
    with pymupdf.open(SAMPLES / "invoice_scanned.pdf") as scan:
        doc.insert_pdf(scan)
    will = realdoc("testaments_de_poilus/TestamentsDePoilus_will_AN_0077-0.jpg")
    with pymupdf.open(will) as img:
        doc.insert_pdf(pymupdf.open("pdf", img.convert_to_pdf()))
    path = out / "scan_and_will.pdf"
    doc.save(path)
    return path


def test_each_file_is_hashed_once_and_opened_once(scanned_with_handwriting, monkeypatch):
    path = scanned_with_handwriting
    calls: Counter = Counter()
    real_sha, real_open = hashlib.sha256, pymupdf.open
    real_builtin_open, real_path_open, real_ocr = builtins.open, Path.open, ocr.ocr_words

    def sha256(*a, **k):  # docroute's own hashing (RapidOCR checks its model files' sha256 as it loads them)
        calls["sha256"] += sys._getframe(1).f_globals.get("__name__", "").startswith("docroute.")
        return real_sha(*a, **k)

    def mupdf_open(*a, **k):
        calls["pymupdf.open"] += 1
        return real_open(*a, **k)

    def opener(file, *a, **k):
        if isinstance(file, str | Path) and Path(file) == path:
            calls["read"] += 1
        return real_builtin_open(file, *a, **k)

    def path_open(self, *a, **k):  # Path.read_bytes opens through here too
        if Path(self) == path:
            calls["read"] += 1
        return real_path_open(self, *a, **k)

    def ocr_words(image, dpi, options, **kw):
        calls["tesseract"] += 1
        return real_ocr(image, dpi, options, **kw)

    monkeypatch.setattr(ingest.hashlib, "sha256", sha256)
    monkeypatch.setattr(pymupdf, "open", mupdf_open)
    monkeypatch.setattr(builtins, "open", opener)
    monkeypatch.setattr(Path, "open", path_open)
    monkeypatch.setattr(ocr, "ocr_words", ocr_words)

    the_plan = batch.plan(str(path.parent), {})
    assert calls == {"sha256": 1, "read": 1}, "planning hashes the file once, in one read"
    (item,) = the_plan.todo
    assert item.source is not None and item.source.doc_id == item.doc_id

    calls.clear()
    o = tiny_vlm.options("qwen2_5_vl")
    vlm = dict(backend="transformers", model=o.model, min_pixels=o.min_pixels, max_pixels=o.max_pixels,
               max_new_tokens=o.max_new_tokens, max_string_chars=o.max_string_chars,
               max_list_items=o.max_list_items, loop_window=0, dtype="float32")
    result = process_document(item.source, Settings(workers=1, parser="unstructured", vlm=vlm))
    pages = result.pages
    assert [p.parsed.parser for p in pages] == ["unstructured"] * 2 and all(p.parsed.elements for p in pages)
    assert pages[1].decision.route == "vlm" and "handwriting" in pages[1].decision.reasons
    assert pages[1].vlm_status != "unavailable", "the VLM stage ran and took its crop from the open document"
    assert any(ex.schema_name == "handwriting" for ex in result.extractions)
    assert calls["sha256"] == 0, "the worker takes the planned doc_id: no second hash"
    assert calls["pymupdf.open"] == 1, "the pipeline opens the document once (MuPDF from the bytes read once)"
    assert calls["read"] == 1, "the file's bytes are read once by the pipeline (unstructured gets those bytes)"
    assert calls["tesseract"] == 2, "each scanned page is OCRed once, by tesseract, whatever the parser"
    assert result.document.doc_id == item.doc_id
