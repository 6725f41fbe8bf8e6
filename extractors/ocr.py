"""tesseract OCR through pytesseract: words with per-word confidence, in PDF points.

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
    """tesseract's options, nested in Settings as ``ocr`` (``DOCROUTE_OCR__LANGUAGES='["eng","deu"]'``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    languages: tuple[str, ...] = Field(("eng",), description="tesseract language packs, in order")
    engine: Literal["tesseract", "rapidocr"] = Field(
        "tesseract", description="OCR engine: tesseract, or RapidOCR (PP-OCR ONNX models; receipts, photos)")
    psm: int = Field(3, ge=0, le=13, description="tesseract page segmentation mode")
    timeout_s: float = Field(120.0, gt=0, description="a page taking longer to OCR is a page error")


def tesseract_available() -> bool:
    return shutil.which("tesseract") is not None


def ocr_words(image: Image.Image, dpi: float, options: OcrOptions = OcrOptions()) -> tuple[Word, ...]:
    """OCR an image rendered at ``dpi``; word boxes come back in PDF points (top-left origin)."""
    if options.engine == "rapidocr":
        from docroute.extractors.ocr_rapid import RapidOcrError, rapid_words

        try:
            return rapid_words(image, dpi)
        except RapidOcrError as exc:
            raise OcrError(str(exc)) from exc
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
