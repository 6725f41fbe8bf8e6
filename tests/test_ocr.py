"""OCR engines on real pages: RapidOCR on a real till receipt, the ``auto`` policy's choice of engine, and
the calibration of RapidOCR's scores (extractors/ocr.py, extractors/ocr_rapid.py)."""

from __future__ import annotations

import json
import shutil

import pytest

from docroute.extractors import doctype, ocr, pdf
from docroute.pipelines.ingest import open_file

from conftest import SAMPLES, realdoc

needs_tesseract = pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract is not installed")

RECEIPT = "softmatic_receipts/lidl_02032020_02_00716.jpg"  # a German till receipt, 300 dpi flatbed scan
PHOTO = "azure_formrecognizer/contoso-allinone.jpg"  # the photographed restaurant receipt
TOTAL_LABELS = ("zu zahlen", "summe", "total", "gesamt", "betrag")  # generic words for the amount payable


def page_image(path):
    """The page image the pipeline OCRs (process_page: read_page, render_dpi, render)."""
    with open_file(path) as doc:
        content = pdf.read_page(doc.page(0), 0)
        dpi = pdf.render_dpi(content)
        return doc.render(0, dpi, gray=content.native_gray), dpi, content


def test_rapidocr_reads_a_real_receipt():
    path = realdoc(RECEIPT)
    label = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))  # amount: euro cents, as published
    cents = int(label["amount"])
    total = f"{cents // 100},{cents % 100:02d}"  # printed German style
    image, dpi, content = page_image(path)
    words = ocr.ocr_words(image, dpi, ocr.OcrOptions(engine="rapidocr"))

    assert len(words) >= 20
    for w in words:
        assert -1 <= w.bbox.x0 < w.bbox.x1 <= content.width + 1 and -1 <= w.bbox.y0 < w.bbox.y1 <= content.height + 1
        assert 0.0 <= w.confidence <= 1.0 and w.source == "ocr" and w.text.strip()
    lines: dict[int, list] = {}
    for w in words:
        lines.setdefault(w.line, []).append(w)
    on_total = [ws for ws in lines.values() if any(w.text == total for w in ws)]
    assert on_total, f"the labelled total {total} is read as a word of its own"
    labelled = [" ".join(w.text for w in ws) for ws in on_total
                if any(lab in doctype.fold(" ".join(w.text for w in ws)) for lab in TOTAL_LABELS)]
    assert labelled, f"a total label and the amount {total} share a line: {[[w.text for w in ws] for ws in on_total]}"
    for ws in lines.values():  # a line's words go left to right and overlap vertically
        assert [w.bbox.x0 for w in ws] == sorted(w.bbox.x0 for w in ws)


@needs_tesseract
@pytest.mark.parametrize("rel", [RECEIPT, PHOTO])
def test_auto_reads_receipts_with_rapidocr(rel):
    image, dpi, _ = page_image(realdoc(rel))
    engine, words = ocr.read_auto(image, dpi, ocr.OcrOptions())
    assert engine == "rapidocr"
    assert words == ocr.ocr_words(image, dpi, ocr.OcrOptions(engine="rapidocr")), "RapidOCR's (calibrated) words"


@needs_tesseract
@pytest.mark.parametrize("path", [SAMPLES / "invoice_scanned.pdf", "tapuscorpus/bljd__bljd_DSN113_00027.jpg"])
def test_auto_keeps_tesseract_for_clean_scans(path):
    image, dpi, _ = page_image(path if not isinstance(path, str) else realdoc(path))
    engine, words = ocr.read_auto(image, dpi, ocr.OcrOptions())
    assert engine == "tesseract"
    assert words == ocr.ocr_words(image, dpi, ocr.OcrOptions(engine="tesseract")), "tesseract's words, read once"


def test_calibration_is_monotone_in_unit_interval_and_in_effect():
    from docroute.pipelines.route import RouterOptions

    grid = [i / 200 for i in range(201)]
    mapped = [ocr.calibrate(s) for s in grid]
    assert all(0.0 <= m <= 1.0 for m in mapped)
    assert all(a <= b for a, b in zip(mapped, mapped[1:], strict=False)), "monotone"
    assert [x for x, _ in ocr.RAPID_CALIBRATION] == sorted(x for x, _ in ocr.RAPID_CALIBRATION)
    # the recogniser's 0.62 on a garbage line must read as low confidence to the router
    assert ocr.calibrate(0.62) < RouterOptions().ocr_mean_conf_min
    assert ocr.calibrate(-1) == ocr.calibrate(0.0) and ocr.calibrate(2) == ocr.calibrate(1.0)
