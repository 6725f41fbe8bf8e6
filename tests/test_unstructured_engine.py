"""The unstructured engine on real files, offline: fast, ocr_only, mixed PDFs, coordinates, the spaCy trap.

Documents come from ../shared/realdocs (see its SOURCES.md); they are read in place.
"""

from __future__ import annotations

import os

os.environ["OMP_THREAD_LIMIT"] = "1"  # tesseract single-threaded (set before any tesseract runs)

import csv
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REALDOCS = Path(__file__).resolve().parents[2] / "shared" / "realdocs"
SCOTUS = REALDOCS / "pdfplumber" / "scotus-transcript-p1.pdf"
SCOTUS_GT = REALDOCS / "pdfplumber" / "scotus-transcript-p1.txt"
M27_ROTATED = REALDOCS / "camelot" / "m27.pdf"  # /Rotate 90
POPULATION_CROPPED = REALDOCS / "camelot" / "population_growth.pdf"  # cropbox inside the mediabox
TABLE_PNG = REALDOCS / "unstructured" / "table-multi-row-column-cells.png"
TABLE_GT = REALDOCS / "unstructured" / "table-multi-row-column-cells-actual.csv"

needs_realdocs = pytest.mark.skipif(not REALDOCS.is_dir(), reason="realdocs corpus not present")
needs_tesseract = pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract not installed")

HEADING = "Quarterly Report"
PARAGRAPH = "The board approved the budget for the next fiscal year."
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


def _page_sizes(path: Path) -> tuple[dict[int, tuple[float, float]], set[int]]:
    pymupdf = _pymupdf()
    with pymupdf.open(path) as doc:
        sizes = {p.number + 1: (p.rect.width, p.rect.height) for p in doc}
        text_pages = {p.number + 1 for p in doc if len(p.get_text().strip()) > 20} if doc.is_pdf else set()
    return sizes, text_pages


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


def _assert_inside_pages(out: dict, sizes: dict) -> None:
    for page_number, elements in out.items():
        w, h = sizes[page_number]
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


def test_hi_res_unavailable_without_cached_model_and_no_network(monkeypatch, tmp_path):
    import huggingface_hub.constants

    from docroute.extractors import unstructured_engine as ue

    def no_network(*args, **kwargs):
        raise AssertionError("unstructured_available_hi_res() tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.delenv("UNSTRUCTURED_HI_RES_MODEL_NAME", raising=False)
    assert "HF_HUB_OFFLINE" in os.environ  # set (setdefault) when the module was imported
    assert ue.unstructured_available_hi_res() is False  # nothing cached on this machine

    # With the file laid out as huggingface_hub caches it, the same check says yes (still offline).
    snapshot = tmp_path / "models--unstructuredio--yolo_x_layout" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "yolox_l0.05.onnx").write_bytes(b"not really a model")
    (tmp_path / "models--unstructuredio--yolo_x_layout" / "refs").mkdir()
    (tmp_path / "models--unstructuredio--yolo_x_layout" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    assert ue.unstructured_available_hi_res() is True
    monkeypatch.setenv("UNSTRUCTURED_HI_RES_MODEL_NAME", "yolox_tiny")  # that file is not there
    assert ue.unstructured_available_hi_res() is False


def test_offline_pipeline_is_installed_only_when_en_core_web_sm_is_absent(engine, monkeypatch):
    import spacy.util
    import unstructured.nlp.tokenize as tokenize

    real_model = spacy.util.is_package("en_core_web_sm")
    first = engine.ensure_nlp_pipeline()
    if real_model:  # a machine with the official model: unstructured's loader is left alone
        assert first == "en_core_web_sm"
        assert not getattr(tokenize._get_nlp, "_docroute_offline", False)
        return
    assert first == "offline-rules"
    ours = tokenize._get_nlp
    assert getattr(ours, "_docroute_offline", False)
    assert engine.ensure_nlp_pipeline() == "offline-rules" and tokenize._get_nlp is ours  # idempotent
    assert ours().pipe_names == ["sentencizer", engine.OFFLINE_TAGGER_NAME]

    # Once the model is installed, unstructured's own loader is used (put back), not ours.
    monkeypatch.setattr(spacy.util, "is_package", lambda name: name == "en_core_web_sm")
    try:
        assert engine.ensure_nlp_pipeline() == "en_core_web_sm"
        assert not getattr(tokenize._get_nlp, "_docroute_offline", False)
    finally:
        monkeypatch.undo()
        assert engine.ensure_nlp_pipeline() == "offline-rules"
    assert getattr(tokenize._get_nlp, "_docroute_offline", False)


def test_offline_tagger_gives_unstructured_the_verbs_it_needs(engine):
    import spacy.util

    if spacy.util.is_package("en_core_web_sm"):
        pytest.skip("the real en_core_web_sm is installed; the offline tagger is not in use")
    from unstructured.nlp.tokenize import pos_tag, sent_tokenize
    from unstructured.partition.text_type import contains_verb, is_possible_narrative_text

    tags = dict(pos_tag("The court holds that the statute was repealed"))
    assert tags["holds"] == "VBZ" and tags["was"] == "VBD" and tags["repealed"] == "VBN"
    assert dict(pos_tag("We use OCR to read scans"))["read"] == "VB"
    assert dict(pos_tag("Payments must be made on time"))["must"] == "MD"
    for sentence in (PARAGRAPH, "It provides an overview of the results", "Our revenue grew by 12 percent"):
        assert contains_verb(sentence), sentence
        assert is_possible_narrative_text(sentence), sentence
    for heading in ("Results and discussion", "Annual report 2023", "Invoice number and date",
                    "Table of contents", "Related work", "IBM i security"):
        assert not contains_verb(heading), heading
    assert sent_tokenize("One sentence here. And another one!") == ["One sentence here.", "And another one!"]


# ------------------------------------------------------------------------------------------------
# fast (text layer)


@needs_realdocs
def test_fast_on_scotus_transcript_matches_ground_truth_and_pymupdf(engine):
    sizes, text_pages = _page_sizes(SCOTUS)
    assert text_pages == {1}
    out = engine.partition_elements(SCOTUS, "application/pdf", sizes, text_pages)
    elements = out[1]
    assert len(elements) > 30
    assert {el.source for el in elements} == {"unstructured:fast"}
    assert all(el.confidence == 1.0 for el in elements)
    _assert_inside_pages(out, sizes)
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
    sizes, text_pages = _page_sizes(path)
    out = engine.partition_elements(path, "application/pdf", sizes, text_pages)
    _assert_inside_pages(out, sizes)
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


def test_fast_heading_is_title_and_one_sentence_paragraph_is_text(engine, heading_pdf):
    """A one-sentence paragraph is NarrativeText only if the POS tagger finds its verb."""
    pymupdf = _pymupdf()
    sizes, text_pages = _page_sizes(heading_pdf)
    out = engine.partition_elements(heading_pdf, "application/pdf", sizes, text_pages)
    by_text = {el.text: el for el in out[1]}
    assert set(by_text) == {HEADING, PARAGRAPH}
    assert by_text[HEADING].kind == "title" and by_text[HEADING].element_id == "/page/1/title/1"
    assert by_text[PARAGRAPH].kind == "text" and by_text[PARAGRAPH].element_id == "/page/1/text/1"
    with pymupdf.open(heading_pdf) as doc:
        for text, el in by_text.items():
            (hit,) = doc[0].search_for(text)
            # pdfminer boxes span the font size, PyMuPDF's the ascender-to-descender height
            assert abs(el.bbox.x0 - hit.x0) <= 1 and abs(el.bbox.x1 - hit.x1) <= 1, (el.bbox, hit)
            assert abs(el.bbox.y1 - hit.y1) <= 2.5 and abs(el.bbox.y0 - hit.y0) <= 6, (el.bbox, hit)


# ------------------------------------------------------------------------------------------------
# ocr_only (no text layer)


@needs_realdocs
@needs_tesseract
def test_ocr_only_on_png_reads_the_table_words_where_tesseract_sees_them(engine):
    import pytesseract
    from PIL import Image

    sizes, text_pages = _page_sizes(TABLE_PNG)
    assert text_pages == set()
    out = engine.partition_elements(TABLE_PNG, "image/png", sizes, text_pages)
    elements = out[1]
    assert elements and {el.source for el in elements} == {"unstructured:ocr_only"}
    assert all(el.confidence == engine.OCR_CONFIDENCE for el in elements)
    _assert_inside_pages(out, sizes)
    _assert_ids(out)

    produced = " ".join(el.text for el in elements).lower()
    with TABLE_GT.open(newline="") as fh:
        gt_words = {w.lower() for row in csv.reader(fh) for cell in row for w in re.findall(r"[A-Za-z]{4,}", cell)}
    found = {w for w in gt_words if w in produced}
    assert {"blind", "vision", "dexterity", "mobility"} <= found
    assert len(found) >= 0.6 * len(gt_words), sorted(gt_words - found)

    # The box of the element holding "Dexterity" covers tesseract's own box of that word, scaled
    # from pixels to the page's points.
    with Image.open(TABLE_PNG) as image:
        px_w, _ = image.size
        data = pytesseract.image_to_data(image, output_type=pytesseract.Output.DICT)
    i = next(k for k, t in enumerate(data["text"]) if t.strip() == "Dexterity")
    scale = sizes[1][0] / px_w
    x0, y0 = data["left"][i] * scale, data["top"][i] * scale
    x1, y1 = x0 + data["width"][i] * scale, y0 + data["height"][i] * scale
    (holder,) = [el for el in elements if "Dexterity" in el.text]
    b = holder.bbox
    assert b.x0 - 2 <= x0 and x1 <= b.x1 + 2 and b.y0 - 2 <= y0 and y1 <= b.y1 + 2, (b, (x0, y0, x1, y1))


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
def test_mixed_pdf_uses_fast_for_text_pages_and_ocr_only_for_the_scan(engine, mixed_pdf):
    path, expected = mixed_pdf
    sizes, text_pages = _page_sizes(path)
    assert text_pages == {1, 3}
    out = engine.partition_elements(path, "application/pdf", sizes, text_pages)
    assert set(out) == {1, 2, 3}
    assert {el.source for el in out[1] + out[3]} == {"unstructured:fast"}
    assert out[2] and {el.source for el in out[2]} == {"unstructured:ocr_only"}
    _assert_inside_pages(out, sizes)
    _assert_ids(out)
    (line,) = [el for el in out[2] if "invoices" in el.text]
    assert _norm(line.text) == SCANNED_LINE
    # OCR pixels -> points: the OCR box (ink) sits where the text was drawn before rasterising
    # (PyMuPDF's box also spans the font's ascender and descender).
    b = line.bbox
    assert abs(b.x0 - expected.x0) <= 3 and abs(b.x1 - expected.x1) <= 3, (b, expected)
    assert expected.y0 - 2 <= b.y0 < b.y1 <= expected.y1 + 2 and b.height >= 0.5 * expected.height, (b, expected)


# ------------------------------------------------------------------------------------------------
# errors


def test_timeout_raises_a_clear_error(engine, mixed_pdf):
    path, _ = mixed_pdf
    sizes, text_pages = _page_sizes(path)
    with pytest.raises(engine.UnstructuredTimeoutError, match=r"mixed\.pdf.*within 0\.01 s"):
        engine.partition_elements(path, "application/pdf", sizes, set(), timeout_s=0.01)


def test_broken_pdf_raises_unstructured_error_naming_the_file(engine, tmp_path):
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.7\nthis is not a pdf body\n")
    with pytest.raises(engine.UnstructuredError, match=r"broken\.pdf: unstructured \(fast\) failed.*What to do"):
        engine.partition_elements(path, "application/pdf", {1: (612.0, 792.0)}, {1})


def test_unsupported_type_is_refused(engine, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(ValueError, match="not 'text/plain'"):
        engine.partition_elements(path, "text/plain", {1: (612.0, 792.0)}, {1})
