"""The unstructured engine on real files, offline and OCR-free: fast, OCR words, mixed PDFs, coordinates.

The engine is given the document's bytes and the pages of docroute's own page step
(``pipelines.process.process_page``), as the pipeline gives them. Documents come from
../shared/realdocs (see its SOURCES.md); they are read in place.
"""

from __future__ import annotations

import os

os.environ["OMP_THREAD_LIMIT"] = "1"  # tesseract single-threaded (set before any tesseract runs)

import collections
import csv
import json
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_docs"
REALDOCS = REPO.parent / "shared" / "realdocs"
SCOTUS = REALDOCS / "pdfplumber" / "scotus-transcript-p1.pdf"
SCOTUS_GT = REALDOCS / "pdfplumber" / "scotus-transcript-p1.txt"
M27_ROTATED = REALDOCS / "camelot" / "m27.pdf"  # /Rotate 90
POPULATION_CROPPED = REALDOCS / "camelot" / "population_growth.pdf"  # cropbox inside the mediabox
TABLE_PNG = REALDOCS / "unstructured" / "table-multi-row-column-cells.png"
TABLE_GT = REALDOCS / "unstructured" / "table-multi-row-column-cells-actual.csv"
DOCLING_SCAN = REALDOCS / "docling" / "ocr_test.pdf"
DOCLING_SCAN_GT = REALDOCS / "docling" / "ocr_test.tesseract.full_page.md"

needs_realdocs = pytest.mark.skipif(not REALDOCS.is_dir(), reason="realdocs corpus not present")
needs_tesseract = pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract not installed")

HEADING = "Quarterly Report"
PARAGRAPH = "The board approved the budget for the next fiscal year. It takes effect in January."
SCANNED_LINE = "Scanned invoices are processed every morning"


@pytest.fixture(scope="module")
def engine():
    from docroute.extractors import unstructured_engine

    unstructured_engine.ensure_nlp_pipeline()
    import unstructured.partition.pdf  # noqa: F401  (pay the import once: about 6-8 s)

    return unstructured_engine


def _pymupdf():
    import pymupdf

    return pymupdf


def _pages(path: Path) -> list:
    """The document's ParsedPages from the pipeline's own page step (tesseract for pages without text)."""
    from docroute.pipelines.ingest import open_file
    from docroute.pipelines.process import process_page
    from docroute.pipelines.settings import Settings

    settings = Settings()
    with open_file(path) as doc:
        return [process_page(doc, i + 1, settings)[0].parsed for i in range(doc.page_count)]


def _run(data: bytes, mime: str, pages: list) -> dict:
    from docroute.extractors.layout import UnstructuredEngine

    return UnstructuredEngine().elements(data, mime, pages, ("eng",))


def _partition(path: Path, mime: str = "application/pdf") -> tuple[dict, dict]:
    pages = _pages(path)
    return _run(path.read_bytes(), mime, pages), {p.page_number: p for p in pages}


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _page_words(page) -> list:
    """PyMuPDF words as (rect, text), in rotated-page coordinates (those of PyMuPDF's page.rect)."""
    pymupdf = _pymupdf()
    return [(pymupdf.Rect(w[:4]) * page.rotation_matrix, w[4]) for w in page.get_text("words", sort=False)]


def _words_in(words: list, bbox) -> list:
    """The words whose centre lies in ``bbox``."""
    out = []
    for r, text in words:
        cx, cy = (r.x0 + r.x1) / 2, (r.y0 + r.y1) / 2
        if bbox.x0 - 1 <= cx <= bbox.x1 + 1 and bbox.y0 - 1 <= cy <= bbox.y1 + 1:
            out.append((r, text))
    return out


def _check_against_pymupdf(path: Path, out: dict) -> tuple[int, int, int]:
    """(elements, elements whose box holds exactly their words, of those: boxes that fit the words).

    pdfminer's text boxes include leading/trailing spaces (fixed-width forms pad fields with
    runs of them) and use the font size rather than the font's ascender, so a box may extend past
    its words (by a space on both sides, or by a long run on one side) and its top may differ by a
    few points. So: the box holds the words; one of its vertical edges is within 2 pt or one
    character (60% of the line height) of them; its bottom within 2 pt, its top within 40% of a line.
    """
    pymupdf = _pymupdf()
    n = matched = fitting = 0
    with pymupdf.open(path) as doc:
        for page_number, elements in out.items():
            words = _page_words(doc[page_number - 1])
            for el in elements:
                n += 1
                inside = _words_in(words, el.bbox)
                if not inside or sorted(el.text.split()) != sorted(w for _, w in inside):
                    continue
                matched += 1
                u = pymupdf.Rect(inside[0][0])
                for r, _ in inside[1:]:
                    u |= r
                h = u.height
                dx0, dx1 = u.x0 - el.bbox.x0, el.bbox.x1 - u.x1
                if min(dx0, dx1) >= -2 and min(abs(dx0), abs(dx1)) <= max(2, 0.6 * h) and abs(el.bbox.y1 - u.y1) <= 2 \
                        and abs(el.bbox.y0 - u.y0) <= max(2, 0.4 * h):
                    fitting += 1
    return n, matched, fitting


def _assert_inside_pages(out: dict, pages: dict) -> None:
    for page_number, elements in out.items():
        w, h = pages[page_number].width, pages[page_number].height
        for el in elements:
            assert 0 <= el.bbox.x0 <= el.bbox.x1 <= w + 1e-6, el
            assert 0 <= el.bbox.y0 <= el.bbox.y1 <= h + 1e-6, el
            assert el.page_number == page_number


def _assert_ids(out: dict) -> None:
    for page_number, elements in out.items():
        counts: dict[str, int] = {}
        for el in elements:
            counts[el.kind] = counts.get(el.kind, 0) + 1
            assert el.element_id == f"/page/{page_number}/{el.kind}/{counts[el.kind]}"


@pytest.fixture
def ocr_calls(monkeypatch) -> collections.Counter:
    """Counts every way an OCR could start: pytesseract, unstructured_pytesseract, unstructured's OCR agents."""
    import pytesseract
    import unstructured_pytesseract
    from unstructured.partition.utils.ocr_models import ocr_interface, tesseract_ocr

    calls: collections.Counter = collections.Counter()

    def counting(name: str, real):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)

        return wrapper

    targets = [(pytesseract, n) for n in ("image_to_data", "image_to_string", "image_to_pdf_or_hocr")]
    targets += [(pytesseract.pytesseract, "run_tesseract")]
    targets += [(unstructured_pytesseract, n) for n in ("image_to_data", "image_to_string", "image_to_pdf_or_hocr")]
    targets += [(unstructured_pytesseract.pytesseract, "run_tesseract")]
    targets += [(ocr_interface.OCRAgent, n) for n in ("get_agent", "get_instance")]
    targets += [(tesseract_ocr.OCRAgentTesseract, n) for n in
                ("get_text_from_image", "get_layout_from_image", "get_layout_elements_from_image")]
    for owner, name in targets:
        monkeypatch.setattr(owner, name, counting(f"{getattr(owner, '__name__', owner)}.{name}", getattr(owner, name)))
    return calls


# ------------------------------------------------------------------------------------------------
# cheap checks


def test_importing_the_module_does_not_import_unstructured():
    code = (
        "import sys, docroute.extractors.unstructured_engine as m; "
        "assert m.NAME == 'unstructured'; "
        "bad = [k for k in ('unstructured', 'spacy', 'torch', 'unstructured_inference') if k in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_without_the_spacy_model_unstructured_gets_spacy_blank_en(engine):
    import spacy.util
    import unstructured.nlp.tokenize as tokenize

    if spacy.util.is_package("en_core_web_sm"):
        pytest.skip("the official en_core_web_sm is installed: unstructured loads it itself")
    nlp = tokenize._get_nlp()
    assert engine.ensure_nlp_pipeline() == "blank-en" and tokenize._get_nlp() is nlp  # idempotent
    assert nlp.lang == "en" and nlp.pipe_names == ["sentencizer"]  # only what spaCy ships
    assert tokenize.sent_tokenize("One sentence here. And another one!") == ["One sentence here.", "And another one!"]


def test_with_the_spacy_model_installed_unstructured_is_left_alone():
    code = (
        "import spacy.util; spacy.util.is_package = lambda name: name == 'en_core_web_sm'\n"
        "import unstructured.nlp.tokenize as t; original = t._get_nlp\n"
        "from docroute.extractors import unstructured_engine as m\n"
        "assert m.ensure_nlp_pipeline() == 'en_core_web_sm'\n"
        "assert t._get_nlp is original, t._get_nlp\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ------------------------------------------------------------------------------------------------
# fast (text layer)


@needs_realdocs
def test_fast_on_scotus_transcript_matches_ground_truth_and_pymupdf(engine):
    out, pages = _partition(SCOTUS)
    assert [p.has_text_layer for p in pages.values()] == [True]
    elements = out[1]
    assert len(elements) > 30
    assert {el.source for el in elements} == {"unstructured:fast"}
    assert all(el.confidence == 1.0 for el in elements)
    _assert_inside_pages(out, pages)
    _assert_ids(out)

    # Every phrase of pdfplumber's layout text (line numbers stripped) is in the output.
    produced = _norm(" ".join(el.text for el in elements))
    phrases = []
    for line in SCOTUS_GT.read_text().splitlines():
        for segment in re.split(r"\s{2,}", line.strip()):
            segment = re.sub(r"^\d+\s+", "", segment).strip()
            if len(segment) >= 4 and not set(segment) <= set("- x:"):
                phrases.append(_norm(segment))
    assert len(phrases) >= 15
    missing = [p for p in phrases if p not in produced]
    assert not missing, missing
    for known in ("IN THE SUPREME COURT OF THE UNITED STATES", "MICHAEL A. KNOWLES,",
                  "Tuesday, January 13, 2009", "No. 07-1315"):
        assert any(known in el.text for el in elements), known

    n, matched, fitting = _check_against_pymupdf(SCOTUS, out)
    assert matched >= 0.9 * n and fitting >= 0.95 * matched, (n, matched, fitting)


@needs_realdocs
@pytest.mark.parametrize("path", [M27_ROTATED, POPULATION_CROPPED], ids=["rotate90", "cropbox"])
def test_fast_boxes_follow_rotation_and_cropbox(engine, path):
    pymupdf = _pymupdf()
    with pymupdf.open(path) as doc:
        page = doc[0]
        assert page.rotation == 90 or page.cropbox != page.mediabox  # the case under test
    out, pages = _partition(path)
    _assert_inside_pages(out, pages)
    n, matched, fitting = _check_against_pymupdf(path, out)
    # A wrong conversion (axes not swapped, or off by the crop margin) puts nearly every box on the
    # wrong words.
    assert n > 100 and matched >= 0.85 * n and fitting >= 0.95 * matched, (n, matched, fitting)


def _heading_paragraph_page(doc):
    page = doc.new_page(width=595, height=842)
    page.insert_text((72, 90), HEADING, fontsize=20, fontname="helv")
    page.insert_text((72, 140), PARAGRAPH, fontsize=11, fontname="helv")
    return page


@pytest.fixture(scope="module")
def heading_pdf(tmp_path_factory) -> Path:
    pymupdf = _pymupdf()
    path = tmp_path_factory.mktemp("docs") / "heading-paragraph.pdf"
    with pymupdf.open() as doc:
        _heading_paragraph_page(doc)
        doc.save(path)
    return path


def test_fast_heading_is_title_and_paragraph_is_text_with_no_network(engine, heading_pdf, monkeypatch):
    """unstructured classifies offline: a network attempt (its spaCy model download) fails the test."""
    def no_network(*args, **kwargs):
        raise AssertionError("the unstructured engine tried to open a network connection")

    pages = _pages(heading_pdf)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    out = _run(heading_pdf.read_bytes(), "application/pdf", pages)
    by_text = {el.text: el for el in out[1]}
    assert set(by_text) == {HEADING, PARAGRAPH}
    assert by_text[HEADING].kind == "title" and by_text[HEADING].element_id == "/page/1/title/1"
    assert by_text[PARAGRAPH].kind == "text" and by_text[PARAGRAPH].element_id == "/page/1/text/1"
    with _pymupdf().open(heading_pdf) as doc:
        for text, el in by_text.items():
            (hit,) = doc[0].search_for(text)
            # pdfminer boxes span the font size, PyMuPDF's the ascender-to-descender height
            assert abs(el.bbox.x0 - hit.x0) <= 1 and abs(el.bbox.x1 - hit.x1) <= 1, (el.bbox, hit)
            assert abs(el.bbox.y1 - hit.y1) <= 2.5 and abs(el.bbox.y0 - hit.y0) <= 6, (el.bbox, hit)


def test_engine_reads_bytes_not_the_path(engine, tmp_path):
    """The engine is given bytes: it works on the bytes of a file that no longer exists."""
    path = tmp_path / "plain_text.pdf"
    shutil.copy(SAMPLES / "plain_text.pdf", path)
    pages = _pages(path)
    data = path.read_bytes()
    path.unlink()
    out = _run(data, "application/pdf", pages)
    (page,) = pages
    elements = out[1]
    assert {el.source for el in elements} == {"unstructured:fast"}
    assert {"title", "text"} <= {el.kind for el in elements}
    # every word of the text layer is in an element, in order
    assert _norm(" ".join(el.text for el in elements)).split() == [w.text for w in page.words]


@needs_realdocs
def test_pdf_too_complex_for_pdfminer_falls_back_to_the_text_layer_words(engine, ocr_calls, caplog):
    """unstructured refuses docling's amt_handbook_sample.pdf (vector drawings): not OCRed, its words kept."""
    path = REALDOCS / "docling" / "amt_handbook_sample.pdf"
    pages = _pages(path)
    assert [p.has_text_layer for p in pages] == [True]
    out = _run(path.read_bytes(), "application/pdf", pages)
    assert not +ocr_calls, dict(ocr_calls)
    assert "too complex" in caplog.text
    elements = out[1]
    assert elements and {el.source for el in elements} == {"unstructured:words"}
    assert " ".join(el.text for el in elements).split() == [w.text for w in pages[0].words]
    _assert_inside_pages(out, {1: pages[0]})
    _assert_ids(out)


# ------------------------------------------------------------------------------------------------
# pages without a text layer: the page step's OCR words, classified by unstructured, never OCRed again


def _assert_words_are_the_page_steps(out: dict, pages: dict) -> None:
    """Each page's elements hold exactly its OCR words, in order, each paragraph with its mean confidence."""
    for number, page in pages.items():
        assert not page.has_text_layer and page.words and {w.source for w in page.words} == {"ocr"}
        elements = out[number]
        assert elements and {el.source for el in elements} == {"unstructured:ocr"}
        assert " ".join(el.text for el in elements).split() == [w.text for w in page.words]
        assert any(el.confidence < 0.99 for el in elements)  # tesseract's own, not a fixed value
    _assert_inside_pages(out, pages)
    _assert_ids(out)


@needs_realdocs
@needs_tesseract
def test_scanned_multi_page_pdf_is_not_ocred_again(engine, tmp_path, ocr_calls):
    pymupdf = _pymupdf()
    path = tmp_path / "two-scans.pdf"
    with pymupdf.open() as doc:
        for scan in (SAMPLES / "invoice_scanned.pdf", DOCLING_SCAN):
            with pymupdf.open(scan) as src:
                doc.insert_pdf(src)
        doc.save(path)
    pages = {p.page_number: p for p in _pages(path)}  # tesseract reads each page here, once
    assert ocr_calls["pytesseract.image_to_data"] == 2
    ocr_calls.clear()

    out = _run(path.read_bytes(), "application/pdf", list(pages.values()))

    assert not +ocr_calls, dict(ocr_calls)
    assert set(out) == {1, 2}
    _assert_words_are_the_page_steps(out, pages)
    invoice = json.loads((SAMPLES / "invoice_scanned.expected.json").read_text())["invoice"]
    assert any(invoice["invoice_number"] in el.text for el in out[1])
    gt_words = DOCLING_SCAN_GT.read_text().split()
    produced = _norm(" ".join(el.text for el in out[2])).split()
    assert sum(w in produced for w in gt_words) >= 0.8 * len(gt_words), (gt_words, produced)


@needs_realdocs
@needs_tesseract
def test_png_table_words_come_from_the_page_step(engine, ocr_calls):
    pages = {p.page_number: p for p in _pages(TABLE_PNG)}
    ocr_calls.clear()
    out = _run(TABLE_PNG.read_bytes(), "image/png", list(pages.values()))
    assert not +ocr_calls, dict(ocr_calls)
    _assert_words_are_the_page_steps(out, pages)

    produced = " ".join(el.text for el in out[1]).lower()
    with TABLE_GT.open(newline="") as fh:
        gt_words = {w.lower() for row in csv.reader(fh) for cell in row for w in re.findall(r"[A-Za-z]{4,}", cell)}
    found = {w for w in gt_words if w in produced}
    # The page step's tesseract misses the "Dexterity" row of this table (unstructured's own OCR,
    # at its own resolution, read it); the engine carries what the page step read.
    assert {"blind", "vision", "mobility", "accuracy", "completed"} <= found
    assert len(found) >= 0.5 * len(gt_words), sorted(gt_words - found)
    # The element holding "Mobility" covers the page step's box of that word.
    (word,) = [w for w in pages[1].words if w.text == "Mobility"]
    (holder,) = [el for el in out[1] if "Mobility" in el.text.split()]
    b, w = holder.bbox, word.bbox
    assert b.x0 <= w.x0 and w.x1 <= b.x1 and b.y0 <= w.y0 and w.y1 <= b.y1, (b, w)


@pytest.fixture(scope="module")
def mixed_pdf(tmp_path_factory) -> tuple[Path, object]:
    """Page 1: text layer; page 2: an image of a rendered text page (no text layer); page 3: text."""
    pymupdf = _pymupdf()
    path = tmp_path_factory.mktemp("docs") / "mixed.pdf"
    with pymupdf.open() as source:
        page = source.new_page(width=595, height=842)
        page.insert_text((72, 200), SCANNED_LINE, fontsize=16, fontname="helv")
        expected = page.search_for(SCANNED_LINE)[0]
        png = page.get_pixmap(dpi=200).tobytes("png")
    with pymupdf.open() as doc:
        _heading_paragraph_page(doc)
        scan = doc.new_page(width=595, height=842)
        scan.insert_image(scan.rect, stream=png)
        last = doc.new_page(width=595, height=842)
        last.insert_text((72, 90), "Closing remarks are given by the chair.", fontsize=11, fontname="helv")
        doc.save(path)
    return path, expected


@needs_tesseract
def test_mixed_pdf_uses_fast_for_text_pages_and_the_ocr_words_for_the_scan(engine, mixed_pdf, ocr_calls):
    path, expected = mixed_pdf
    pages = _pages(path)
    assert [p.has_text_layer for p in pages] == [True, False, True]
    ocr_calls.clear()
    out = _run(path.read_bytes(), "application/pdf", pages)
    assert not +ocr_calls, dict(ocr_calls)
    assert set(out) == {1, 2, 3}
    assert {el.source for el in out[1] + out[3]} == {"unstructured:fast"}
    _assert_words_are_the_page_steps({2: out[2]}, {2: pages[1]})
    (line,) = [el for el in out[2] if "invoices" in el.text]
    assert _norm(line.text) == SCANNED_LINE
    # The OCR box (ink) sits where the text was drawn before rasterising (PyMuPDF's box also spans
    # the font's ascender and descender).
    b = line.bbox
    assert abs(b.x0 - expected.x0) <= 3 and abs(b.x1 - expected.x1) <= 3, (b, expected)
    assert expected.y0 - 2 <= b.y0 < b.y1 <= expected.y1 + 2 and b.height >= 0.5 * expected.height, (b, expected)


# ------------------------------------------------------------------------------------------------
# errors


def _blank_page(has_text_layer: bool = True):
    from docroute.schemas import ParsedPage

    return ParsedPage(page_number=1, width=612.0, height=792.0, has_text_layer=has_text_layer, parser="pymupdf", text="")


def test_broken_pdf_raises_unstructured_error_saying_what_to_do(engine):
    # PyMuPDF cannot open it either, so the page is made by hand here.
    with pytest.raises(engine.UnstructuredError, match=r"unstructured \(fast\) failed.*What to do"):
        _run(b"%PDF-1.7\nthis is not a pdf body\n", "application/pdf", [_blank_page()])


def test_unsupported_type_is_refused(engine):
    with pytest.raises(ValueError, match="not 'text/plain'"):
        _run(b"hello", "text/plain", [_blank_page()])
