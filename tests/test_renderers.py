"""Pages MuPDF cannot handle: poppler as the second renderer, and a budget per page.

Real damaged files, built deterministically: a realdocs invoice with one byte of its content stream
flipped (MuPDF stops at the zlib error and draws the page blank; poppler decodes on), a page whose
content stream MuPDF refuses outright (a PNG predictor with 100,000 colour components) and one neither
can draw; a content-stream bomb; a page over its time budget.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_hostile import (
    NOOPS,
    _stream,
    content_bomb,
    deflate_repeated,
    mupdf_rejected_page,
    raw_pdf,
    two_pages,
)

from docroute.extractors import pdf, poppler
from docroute.pipelines.process import process_document
from docroute.pipelines.settings import Settings
from docroute.pipelines.sink import page_rows

from conftest import SAMPLES, realdoc

pytestmark = pytest.mark.skipif(not poppler.available(), reason="poppler-utils is not installed")
FLIPKART_FLIP = (41485, 0xC4)  # inside FlipkartInvoice.pdf's compressed page content


def _run(tmp_path: Path, data: bytes, **settings) -> object:
    f = tmp_path / "doc.pdf"
    f.write_bytes(data)
    return process_document(f, Settings(workers=1, **settings))


def test_a_page_mupdf_refuses_is_read_by_poppler_and_marked(tmp_path):
    result = _run(tmp_path, mupdf_rejected_page())
    assert result.status == "partial", result.error
    first, second = result.pages
    assert (first.renderer, first.renderer_note) == ("pymupdf", None)
    assert second.renderer == "poppler" and "too many color components" in second.renderer_note
    assert "INVOICE 4471" in second.parsed.text and "312.50" in second.parsed.text, second.parsed.text
    assert {w.source for w in second.parsed.words} == {"ocr"}
    assert "page 2: MuPDF failed" in result.error and "read with poppler" in result.error
    rows = page_rows(result, "run")
    assert [r["renderer"] for r in rows] == ["pymupdf", "poppler"] and rows[1]["renderer_note"] == second.renderer_note
    before = _run(tmp_path, mupdf_rejected_page(), poppler_fallback=False)  # MuPDF alone: the page is lost
    assert len(before.pages) == 1 and "page 2: RuntimeError" in before.error, before.error


def test_poppler_opens_an_encrypted_pdf_with_the_password_that_opened_it(tmp_path):
    import pymupdf

    doc = pymupdf.open(stream=mupdf_rejected_page())
    data = doc.tobytes(encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="s3cret", owner_pw="owner-s3cret")
    passwords = tmp_path / "pw.txt"
    passwords.write_text("wrong\ns3cret\n")
    result = _run(tmp_path, data, password_file=passwords)
    assert [p.renderer for p in result.pages] == ["pymupdf", "poppler"], result.error
    assert "INVOICE 4471" in result.pages[1].parsed.text


def test_a_real_invoice_with_a_flipped_byte_is_read_by_poppler(tmp_path):
    data = bytearray(realdoc("invoice2data/FlipkartInvoice.pdf").read_bytes())
    at, value = FLIPKART_FLIP
    data[at] = value
    before = _run(tmp_path, bytes(data), poppler_fallback=False)
    assert before.status == "ok" and before.pages[0].parsed.text.strip() == "", "MuPDF alone: a blank page, no error"
    result = _run(tmp_path, bytes(data))
    page = result.pages[0]
    assert page.renderer == "poppler" and "MuPDF drew it blank" in page.renderer_note
    assert "zlib error" in page.renderer_note, page.renderer_note
    assert "Retail Invoice" in page.parsed.text and "BLR_WFLD20151000982590" in page.parsed.text, page.parsed.text[:300]
    assert result.status == "partial" and "page 1: MuPDF drew it blank" in result.error
    intact = _run(tmp_path, realdoc("invoice2data/FlipkartInvoice.pdf").read_bytes())
    assert intact.status == "ok" and intact.pages[0].renderer == "pymupdf", "an intact file never asks poppler"


def test_an_image_input_is_read_by_mupdf_alone(tmp_path):
    f = tmp_path / "photo.png"
    f.write_bytes((SAMPLES / "invoice_photo.png").read_bytes())
    result = process_document(f, Settings(workers=1))
    assert result.status == "ok" and [p.renderer for p in result.pages] == ["pymupdf"], result.error


def test_a_page_mupdf_cannot_render_is_redrawn_by_poppler(tmp_path, monkeypatch):
    """A scan page whose render raises in MuPDF (simulated: MuPDF's real render failures on a scan
    are rare) comes back from poppler with its OCR text; the page MuPDF did render is left alone."""
    real = pdf.render

    def failing(page, dpi, **kw):
        if page.number == 0:
            raise RuntimeError("code=2: simulated render failure")
        return real(page, dpi, **kw)

    monkeypatch.setattr(pdf, "render", failing)
    result = _run(tmp_path, (SAMPLES / "invoice_scanned.pdf").read_bytes())
    page = result.pages[0]
    assert page.renderer == "poppler" and "MuPDF failed to render it" in page.renderer_note
    assert len(page.parsed.words) > 20 and "invoice" in page.parsed.text.lower(), page.parsed.text[:200]


def test_a_page_neither_can_draw_is_a_clear_page_error_and_the_others_stay(tmp_path):
    t0 = time.perf_counter()
    result = _run(tmp_path, mupdf_rejected_page(b"not zlib data at all"))
    assert time.perf_counter() - t0 < 30
    assert result.status == "partial" and [p.page_number for p in result.pages] == [1]
    assert "page 2: PageUnreadable: MuPDF failed" in result.error and "poppler drew it blank" in result.error


def test_poppler_is_killed_at_its_timeout():
    data = two_pages(_stream(deflate_repeated(NOOPS, 16 * 400), b"/Filter /FlateDecode"))  # 400 MB of no-ops
    t0 = time.perf_counter()
    with pytest.raises(poppler.PopplerError, match="timed out after 1 s"):
        poppler.render(data, 2, 72, gray=True, timeout_s=0.5)
    assert time.perf_counter() - t0 < 10


def test_a_content_stream_bomb_is_a_page_error_within_seconds(tmp_path):
    """A page whose content stream inflates to 300 MB of no-op operators (300 KB on disk): refused
    before MuPDF interprets it, naming the limit and the setting; page 1 is kept."""
    t0 = time.perf_counter()
    result = _run(tmp_path, content_bomb(300))
    took = time.perf_counter() - t0
    assert took < 10, took
    assert result.status == "partial" and [p.page_number for p in result.pages] == [1]
    assert "page 2: PageBudgetExceeded" in result.error and "100 MB limit (max_content_stream_mb" in result.error
    assert "DOCROUTE_MAX_CONTENT_STREAM_MB" in result.error
    small = content_bomb(3)
    assert len(_run(tmp_path, small).pages) == 2, "3 MB of content is read under the default limit"
    refused = _run(tmp_path, small, max_content_stream_mb=2)
    assert len(refused.pages) == 1 and "2 MB limit (max_content_stream_mb" in refused.error


def test_a_form_drawn_many_times_counts_as_often_as_it_is_drawn(tmp_path):
    """A 1.4 MB content stream drawing one 2 KB form 100,000 times: 200 MB for MuPDF to interpret."""
    def drawing(content: bytes) -> bytes:
        form = _stream(NOOPS[:2048], b"/Type /XObject /Subtype /Form /BBox [0 0 10 10]")
        return raw_pdf([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
                        b"/Resources << /XObject << /Fm1 5 0 R >> >> >>", _stream(content), form])

    t0 = time.perf_counter()
    result = _run(tmp_path, drawing(b"/Fm1 Do\n" * 100_000))
    assert time.perf_counter() - t0 < 10
    assert result.status == "failed" and "100 MB limit (max_content_stream_mb" in result.error, result.error
    once = _run(tmp_path, drawing(b"/Fm1 Do\n" + b"% \n" * 100_000))  # the same size, the form drawn once
    assert once.status == "ok", once.error


def test_a_page_over_its_time_budget_is_a_page_error(tmp_path):
    """30 MB of no-ops (under the content limit) take MuPDF about a second per pass over the page;
    with a 0.3 s page budget the page ends at the check after the first pass, naming page_timeout_s."""
    t0 = time.perf_counter()
    result = _run(tmp_path, content_bomb(30), page_timeout_s=0.3)
    took = time.perf_counter() - t0
    assert [p.page_number for p in result.pages] == [1], result.error
    assert "page 2: PageBudgetExceeded" in result.error and "page_timeout_s, DOCROUTE_PAGE_TIMEOUT_S" in result.error
    assert "by the end of reading the text layer" in result.error, result.error
    assert took < 15, took


def test_tesseract_gets_only_the_time_left_in_the_page_budget(tmp_path):
    """A scan takes tesseract about a second here: with a 0.5 s page budget it is cut, and the page
    error names the page budget, not an OCR timeout."""
    t0 = time.perf_counter()
    result = _run(tmp_path, (SAMPLES / "invoice_scanned.pdf").read_bytes(), page_timeout_s=0.5)
    assert time.perf_counter() - t0 < 10
    assert result.status == "failed" and "over its 0.5 s budget (page_timeout_s" in result.error, result.error
