"""OCR of page images: words with per-word confidence, in PDF points, by tesseract or RapidOCR.

``engine = "auto"`` (the default) picks per page, from what is known at OCR time (measured by
bench/ocr_eval.py, figures in the README's OCR section): RapidOCR reads till receipts far better
than tesseract, tesseract reads clean full-page scans about as well at a fraction of the cost.

tesseract reads the page first; when that text is a receipt's (:func:`_bill_kind`) RapidOCR reads the
page again and its words are the result. When tesseract read the page poorly (mean word confidence
under :data:`POOR_READ_MEAN_CONF`, or almost no words: faint thermal print, a photo) RapidOCR reads it
too, and its words are the result when they are a bill's (a receipt, an invoice, or a money total with
amounts) and confidently read (:data:`SECOND_READ_MEAN_CONF`: RapidOCR's garbage on handwriting can
still look like a receipt by its cues). Otherwise
tesseract's words are. A receipt costs both engines (the first pass is about a fifth of the total); a
page tesseract reads well costs what it cost before; a poorly read page that is no receipt (handwriting,
a chart, a faded letter) pays RapidOCR's second reading for nothing (about 5 s of one core).

RapidOCR's scores are the recogniser's own and run high; :func:`calibrate` maps them monotonically to
the tesseract confidence that is as often right (fitted on the tuning half of ../shared/realdocs:
``python bench/ocr_eval.py --fit``), so the OCR-quality signals and the router's
``low_ocr_confidence`` thresholds mean the same whichever engine read the page.

tesseract is run single-threaded (OMP_THREAD_LIMIT=1; two multi-threaded tesseracts at once hung on
the development machine) and always with a timeout; parallelism comes from worker processes.
"""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from docroute.schemas import BBox, Word

if TYPE_CHECKING:
    from PIL import Image

os.environ.setdefault("OMP_THREAD_LIMIT", "1")


class OcrError(RuntimeError):
    pass


class OcrOptions(BaseModel):
    """OCR options, nested in Settings as ``ocr`` (``DOCROUTE_OCR__ENGINE=rapidocr``,
    ``DOCROUTE_OCR__LANGUAGES='["eng","deu"]'``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    languages: tuple[str, ...] = Field(("eng",), description="tesseract language packs, in order")
    engine: Literal["auto", "tesseract", "rapidocr"] = Field(
        "auto", description="OCR engine: auto (RapidOCR for receipts, tesseract for other pages), tesseract, "
                            "or RapidOCR (PP-OCR ONNX models) for every page")
    psm: int = Field(3, ge=0, le=13, description="tesseract page segmentation mode")
    rapid_calibration: bool = Field(True, description="map RapidOCR's scores to tesseract-like confidences")
    timeout_s: float = Field(120.0, gt=0, description="a page taking longer to OCR is a page error")


def tesseract_available() -> bool:
    return shutil.which("tesseract") is not None


def ocr_words(image: Image.Image, dpi: float, options: OcrOptions = OcrOptions(),
              print_box: tuple[float, float, float, float] | None = None) -> tuple[Word, ...]:
    """OCR an image rendered at ``dpi``; word boxes come back in PDF points (top-left origin).
    ``print_box``: the page's :func:`ink_box` where the caller has it (else measured when needed)."""
    if options.engine == "rapidocr":
        return _rapid(image, dpi, options)
    if options.engine == "tesseract":
        return tesseract_words(image, dpi, options)
    return read_auto(image, dpi, options, print_box)[1]


POOR_READ_MEAN_CONF = 0.66  # tesseract's mean word confidence under this (the router's low-OCR minimum) ...
POOR_READ_WORDS = 5  # ... or fewer words than this: a poor read, which RapidOCR reads a second time
# RapidOCR's second reading is kept only this confident (calibrated mean). On the realdocs tuning half
# alone the bills tesseract read poorly score 0.89-0.93 and RapidOCR's readings of handwritten wills
# 0.68-0.80 (one of them with receipt cues): any bar between 0.80 and 0.89 separates them
SECOND_READ_MEAN_CONF = 0.82


def read_auto(image: Image.Image, dpi: float, options: OcrOptions,
              print_box: tuple[float, float, float, float] | None = None) -> tuple[str, tuple[Word, ...]]:
    """The ``auto`` policy: the engine that read the page, and its words."""
    words = tesseract_words(image, dpi, options)
    box = print_box or ink_box(image) or (0.0, 0.0, 1.0, 1.0)
    if _bill_kind(image, dpi, words, box) == "receipt":
        return "rapidocr", _rapid(image, dpi, options)
    mean = sum(w.confidence for w in words) / len(words) if words else 0.0
    if len(words) < POOR_READ_WORDS or mean < POOR_READ_MEAN_CONF:  # a bill tesseract could not read?
        rapid = _rapid(image, dpi, options)
        confident = bool(rapid) and sum(w.confidence for w in rapid) / len(rapid) >= SECOND_READ_MEAN_CONF
        if confident and _bill_kind(image, dpi, rapid, box) is not None:
            return "rapidocr", rapid
    return "tesseract", words


def _bill_kind(image: Image.Image, dpi: float, words: tuple[Word, ...],
               box: tuple[float, float, float, float]) -> str | None:
    """What OCR's words say the page is, by the document-type classifier (extractors/doctype.py), which
    takes the shape of the page's print ``box`` (:func:`ink_box`) for the page's shape (a till receipt
    scanned on a full sheet is still a narrow strip): ``receipt``, ``invoice``, ``bill`` (a money total
    and amounts, cues too weak to name it: ``receipt`` when its receipt cues outnumber its invoice cues),
    or None (no bill)."""
    from docroute.extractors import doctype
    from docroute.schemas import ParsedPage

    scale = 72.0 / dpi
    text = "\n".join(" ".join(w.text for w in line) for line in _lines(words))
    page = ParsedPage(page_number=0, width=image.width * scale, height=image.height * scale,
                      has_text_layer=False, parser="ocr", text=text, words=words,
                      print_box=print_bbox(box, image.width * scale, image.height * scale))
    kind = doctype.classify([page])
    ev = kind.evidence
    if kind.kind != "other":
        return kind.kind
    if ev.get("amounts", 0) >= doctype.MIN_AMOUNTS and ev.get("receipt_score", 0) > ev.get("invoice_score", 0):
        return "receipt"
    return "bill" if ev.get("total_label") and ev.get("amounts", 0) >= doctype.MIN_AMOUNTS else None


INK_LEVEL = 128  # grey level under which a pixel is ink
INK_TRIM = 0.01  # share of the inked rows (columns) cut off each side: specks, scanner dust, a stamp's edge


def print_bbox(box: tuple[float, float, float, float] | None, width: float, height: float) -> BBox | None:
    """An :func:`ink_box` (shares of the image) as a box in page points."""
    if box is None:
        return None
    x0, y0, x1, y1 = box
    return BBox(x0=x0 * width, y0=y0 * height, x1=x1 * width, y1=y1 * height)


def ink_box(image: Image.Image) -> tuple[float, float, float, float] | None:
    """The box (x0, y0, x1, y1, as shares of the image) of the rows and columns that carry ink, the
    outer :data:`INK_TRIM` of them cut off each side (a heavy logo counts like any line of print)."""
    import numpy as np

    small = image.convert("L")
    small.thumbnail((600, 600))
    ink = np.asarray(small) < INK_LEVEL
    w, h = small.size
    spans = []
    for profile, size in ((ink.sum(axis=0) >= 2, w), (ink.sum(axis=1) >= 2, h)):
        filled = np.cumsum(profile)
        if filled[-1] < 5:
            return None
        lo, hi = np.searchsorted(filled, [INK_TRIM * filled[-1], (1 - INK_TRIM) * filled[-1]])
        spans.append((float(lo) / size, float(min(size, hi + 1)) / size))
    (x0, x1), (y0, y1) = spans
    return x0, y0, x1, y1


def _lines(words: tuple[Word, ...]) -> list[list[Word]]:
    lines: dict[tuple[int, int], list[Word]] = {}
    for w in words:
        lines.setdefault((w.block, w.line), []).append(w)
    return list(lines.values())


# RapidOCR score -> tesseract-like confidence: (raw, calibrated) knots, linear between them, monotone.
# Fitted on the tuning half of ../shared/realdocs by ``python bench/ocr_eval.py --fit`` (a word is right
# when it occurs in the page's reference text); see the README's OCR section.
RAPID_CALIBRATION: tuple[tuple[float, float], ...] = (
    (0.0, 0.0), (0.618, 0.579), (0.965, 0.872), (0.998, 0.893), (1.0, 0.96))  # 2026-11-28, 1195 words


def calibrate(score: float, knots: tuple[tuple[float, float], ...] = RAPID_CALIBRATION) -> float:
    """A RapidOCR score as a tesseract-like confidence in [0, 1] (piecewise linear through ``knots``)."""
    score = min(1.0, max(0.0, score))
    for (x0, y0), (x1, y1) in zip(knots, knots[1:], strict=False):
        if score <= x1:
            return min(1.0, max(0.0, y0 + (y1 - y0) * (score - x0) / (x1 - x0) if x1 > x0 else y1))
    return min(1.0, max(0.0, knots[-1][1]))


def _rapid(image: Image.Image, dpi: float, options: OcrOptions) -> tuple[Word, ...]:
    words = rapid_raw(image, dpi)
    if not options.rapid_calibration:
        return words
    return tuple(w.model_copy(update={"confidence": round(calibrate(w.confidence), 4)}) for w in words)


def rapid_raw(image: Image.Image, dpi: float) -> tuple[Word, ...]:
    """RapidOCR's words with the recogniser's own scores."""
    from docroute.extractors.ocr_rapid import RapidOcrError, rapid_words

    try:
        return rapid_words(image, dpi)
    except RapidOcrError as exc:
        raise OcrError(str(exc)) from exc


def tesseract_words(image: Image.Image, dpi: float, options: OcrOptions) -> tuple[Word, ...]:
    import pytesseract

    if not tesseract_available():
        raise OcrError("tesseract is not installed: apt-get install tesseract-ocr (or see README)")
    scale = 72.0 / dpi
    try:
        data = pytesseract.image_to_data(
            image,
            lang="+".join(options.languages),
            config=f"--psm {options.psm}",
            output_type=pytesseract.Output.DICT,
            timeout=options.timeout_s,
        )
    except RuntimeError as exc:  # pytesseract raises RuntimeError on timeout
        raise OcrError(f"tesseract timed out after {options.timeout_s:.0f} s: {exc}") from exc
    except pytesseract.TesseractError as exc:
        raise OcrError(f"tesseract failed: {exc}") from exc
    words = []
    for i, text in enumerate(data["text"]):
        text = (text or "").strip()
        conf = float(data["conf"][i])
        if not text or conf < 0:
            continue
        x, y, w, h = (data[k][i] for k in ("left", "top", "width", "height"))
        words.append(
            Word(
                text=text,
                bbox=BBox(x0=x * scale, y0=y * scale, x1=(x + w) * scale, y1=(y + h) * scale),
                confidence=max(0.0, min(1.0, conf / 100.0)),
                block=int(data["block_num"][i]) * 1000 + int(data["par_num"][i]),
                line=int(data["line_num"][i]),
                size=round(h * scale, 2),
                source="ocr",
            )
        )
    return tuple(words)
