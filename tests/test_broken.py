"""Bad input gets a clear error and loses nothing: failed rows with the reason, never an exception."""

from __future__ import annotations

import pytest

from docroute.pipelines.process import process_document
from docroute.pipelines.settings import Settings

from conftest import SAMPLES, all_expected

BROKEN = [e for e in all_expected() if e["kind"] == "broken"]


@pytest.mark.parametrize("case", BROKEN, ids=lambda e: e["file"])
def test_broken_sample_gives_expected_status_and_reason(case):
    result = process_document(SAMPLES / case["file"], Settings(workers=1))
    assert result.status == case["status"]
    assert case["error_contains"] in result.error.lower()
    assert result.document.file_name == case["file"] and len(result.document.doc_id) == 64


def test_encrypted_pdf_opens_with_password_file(tmp_path):
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("nope\n")
    result = process_document(SAMPLES / "broken_encrypted.pdf", Settings(workers=1, password_file=wrong))
    assert result.status == "failed" and "none of the 1 password" in result.error
    good = tmp_path / "pw.txt"
    good.write_text("nope\nsecret\n")
    result = process_document(SAMPLES / "broken_encrypted.pdf", Settings(workers=1, password_file=good))
    assert result.status == "ok" and result.document.n_pages == 1
    assert result.pages[0].parsed.has_text_layer


def test_directory_posing_as_file_is_a_failed_row(tmp_path):
    result = process_document(tmp_path, Settings(workers=1))
    assert result.status == "failed" and "cannot read" in result.error


def test_inspect_and_review_honour_the_password_file(tmp_path):
    """``inspect`` and ``review``'s crops open encrypted PDFs with the passwords a run used."""
    import subprocess
    import sys
    from pathlib import Path

    import pymupdf

    from docroute.pipelines import review
    from docroute.pipelines.sink import DeltaSink

    pw = tmp_path / "pw.txt"
    pw.write_text("secret\n")
    src = tmp_path / "locked_invoice.pdf"
    with pymupdf.open(SAMPLES / "invoice_ruled.pdf") as doc:
        src.write_bytes(doc.tobytes(encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="secret", owner_pw="owner"))
    exe = str(Path(sys.executable).with_name("docroute"))
    denied = subprocess.run([exe, "inspect", str(src), "--out", str(tmp_path / "a.png")], capture_output=True, text=True)
    assert denied.returncode == 2 and "encrypted" in denied.stderr and "--password-file" in denied.stderr
    ok = subprocess.run([exe, "inspect", str(src), "--out", str(tmp_path / "b.png"), "--password-file", str(pw)],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "b.png").stat().st_size > 0 and "route" in ok.stdout

    out = tmp_path / "out"
    result = process_document(src, Settings(workers=1, password_file=pw))
    assert result.status == "ok" and result.document_type.kind == "invoice"
    DeltaSink(out, "invoice").write(result, "r1")
    without = review.export(out, tmp_path / "r0", threshold=1.0)  # every field, to have crops to make
    assert without and all(item["crop"] is None for item in without), "no password: fields, but no crops"
    with_pw = review.export(out, tmp_path / "r1", threshold=1.0, passwords=("secret",))
    assert with_pw and all(item["crop"] for item in with_pw)
    assert all((tmp_path / "r1" / item["crop"]).stat().st_size > 0 for item in with_pw)
