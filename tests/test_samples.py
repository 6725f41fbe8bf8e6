"""The committed sample documents in sample_docs/ are fresh, complete and what their expected JSON says."""

import json
import os
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pymupdf
import pytest

SAMPLES = Path(__file__).resolve().parent.parent / "sample_docs"
GENERATOR = SAMPLES / "make_samples.py"
DATA_SUFFIXES = {".pdf", ".png", ".json", ".xml"}
EXPECTED = {p.name.removesuffix(".expected.json"): json.loads(p.read_text(encoding="utf-8"))
            for p in sorted(SAMPLES.glob("*.expected.json"))}
DIGITAL_PDFS = [e["file"] for e in EXPECTED.values() if e["kind"] != "broken" and e["file"].endswith(".pdf")]


def data_files(folder: Path) -> dict[str, bytes]:
    """Every generated file by its path under ``folder`` (sample_docs/other/ too)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.suffix in DATA_SUFFIXES and p.is_file()}


def test_generator_reproduces_committed_samples(tmp_path):
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, str(GENERATOR), "--out", str(tmp_path)], check=True, env=env,
                   capture_output=True, timeout=300)
    fresh, committed = data_files(tmp_path), data_files(SAMPLES)
    assert sorted(fresh) == sorted(committed), "sample set changed: run python sample_docs/make_samples.py"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale samples (regenerate with python sample_docs/make_samples.py): {stale}"


def test_every_expected_json_has_its_document_and_size_budget():
    assert len(EXPECTED) == 19  # 13 drawn by make_samples.py, 6 machine-readable by make_einvoice_samples.py
    for stem, exp in EXPECTED.items():
        assert exp["file"].rsplit(".", 1)[0] == stem
        assert (SAMPLES / exp["file"]).is_file(), exp["file"]
    documents = {p.name for p in SAMPLES.iterdir() if p.suffix in {".pdf", ".png", ".xml"}}
    assert documents == {e["file"] for e in EXPECTED.values()}
    assert sum(p.stat().st_size for p in SAMPLES.rglob("*") if p.is_file()) < 5 * 1024 * 1024


def test_expected_json_shape():
    for exp in EXPECTED.values():
        pages = exp["n_pages"] or 0
        assert len(exp["has_text_layer"]) == len(exp["expected_route"]) == len(exp["expected_reasons"]) == pages
        assert set(exp["expected_route"]) <= {"layout", "vlm"}
        assert (exp["status"] != "ok") == (exp["kind"] == "broken")
        assert (exp["invoice"] is not None) == (exp["kind"] == "invoice")


@pytest.mark.parametrize("stem", [s for s, e in EXPECTED.items() if e["kind"] == "invoice"])
def test_invoice_arithmetic(stem):
    inv = EXPECTED[stem]["invoice"]
    amounts = []
    for item in inv["line_items"]:
        assert Decimal(item["quantity"]) * Decimal(item["unit_price"]) == Decimal(item["amount"]), item
        amounts.append(Decimal(item["amount"]))
    assert sum(amounts) == Decimal(inv["subtotal"])
    assert Decimal(inv["subtotal"]) + Decimal(inv["tax_total"]) == Decimal(inv["total"])


@pytest.mark.parametrize("name", DIGITAL_PDFS)
def test_pdf_pages_and_text_layer(name):
    exp = EXPECTED[name.rsplit(".", 1)[0]]
    with pymupdf.open(SAMPLES / name) as doc:
        assert doc.page_count == exp["n_pages"]
        texts = [page.get_text() for page in doc]
    assert [len(t.strip()) > 20 for t in texts] == exp["has_text_layer"]
    if any(exp["has_text_layer"]):
        flat = " ".join(" ".join(texts).split())
        missing = [s for s in exp["text_contains"] if s not in flat]
        assert not missing, missing


def test_broken_inputs():
    assert (SAMPLES / "broken_empty.pdf").stat().st_size == 0
    assert not (SAMPLES / "broken_not_a_pdf.pdf").read_bytes().startswith(b"%PDF")
    truncated = (SAMPLES / "broken_truncated.pdf").read_bytes()
    assert truncated.startswith(b"%PDF") and b"%%EOF" not in truncated and b"startxref" not in truncated
    with pymupdf.open(SAMPLES / "broken_encrypted.pdf") as doc:
        assert doc.needs_pass
        assert doc.authenticate("secret")
        assert "256-bit AES" in doc.metadata["encryption"]
        assert doc.page_count == 1


def ocr(image: Path) -> str:
    result = subprocess.run(["tesseract", str(image), "-"], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "OMP_THREAD_LIMIT": "1"}, check=True)
    return result.stdout


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract is not installed")
@pytest.mark.parametrize("stem", ["invoice_scanned", "invoice_photo"])
def test_ocr_reads_invoice_number_and_total(stem, tmp_path):
    exp = EXPECTED[stem]
    image = SAMPLES / exp["file"]
    if image.suffix == ".pdf":
        with pymupdf.open(image) as doc:
            assert not doc[0].get_text().strip()
            [(xref, *_)] = doc[0].get_images()  # the one image is the whole page
            extracted = doc.extract_image(xref)
        image = tmp_path / f"page.{extracted['ext']}"
        image.write_bytes(extracted["image"])
    text = ocr(image)
    assert exp["invoice"]["invoice_number"] in text
    us = f"{Decimal(exp['invoice']['total']):,.2f}"
    eu = us.replace(",", "_").replace(".", ",").replace("_", ".")
    assert us in text or eu in text, text
