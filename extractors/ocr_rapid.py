"""RapidOCR (PP-OCR detection + recognition, ONNX models shipped inside the ``rapidocr`` wheel): words in
PDF points, the same ``Word`` shape tesseract's adapter returns.

RapidOCR returns text boxes (often an amount in a box of its own, apart from its label); with
``return_word_box`` each box carries its words. Boxes are grouped into visual lines here, so a label
and its amount on one printed line share ``Word.line`` the way tesseract's words do. One engine per
process (loading the models takes about 1 s), one onnxruntime thread (two were slower on 2 cores:
parallelism comes from worker processes). No network: the models are files of the installed wheel.

RapidOCR's scores are the recogniser's own and run high (a garbage line can score 0.6); they come
back unchanged here, and ``extractors/ocr.py`` maps them to tesseract-like confidences
(``RAPID_CALIBRATION``) before anything routes on them.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from docroute.extractors.lines import visual_lines
from docroute.schemas import BBox, Word

if TYPE_CHECKING:
    from PIL import Image


class RapidOcrError(RuntimeError):
    pass


@functools.cache
def _engine():
    try:
        from rapidocr import RapidOCR
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise RapidOcrError(f"rapidocr is not installed ({exc}): pip install rapidocr") from exc
    return RapidOCR(params={
        "Global.log_level": "error",
        "EngineConfig.onnxruntime.intra_op_num_threads": 1,
        "EngineConfig.onnxruntime.inter_op_num_threads": 1,
    })


def _bbox(points, scale: float) -> BBox:
    xs = [float(p[0]) for p in points]
    ys = [float(p[1]) for p in points]
    return BBox(x0=min(xs) * scale, y0=min(ys) * scale, x1=max(xs) * scale, y1=max(ys) * scale)


def rapid_words(image: Image.Image, dpi: float) -> tuple[Word, ...]:
    """OCR an image rendered at ``dpi`` with RapidOCR; word boxes in PDF points (top-left origin)."""
    import numpy as np

    scale = 72.0 / dpi
    try:
        result = _engine()(np.asarray(image.convert("RGB")), return_word_box=True)
    except RapidOcrError:
        raise
    except Exception as exc:  # onnxruntime/OpenCV errors carry no common base class
        raise RapidOcrError(f"rapidocr failed: {type(exc).__name__}: {exc}") from exc
    if result.txts is None:  # nothing detected
        return ()
    raw: list[tuple[str, float, BBox]] = []
    for box_text, box_score, box_points, box_words in zip(
        result.txts, result.scores, result.boxes, result.word_results or [()] * len(result.txts), strict=False
    ):
        pieces = [(str(t).strip(), float(s), _bbox(p, scale)) for t, s, p in box_words if str(t).strip()]
        if not pieces:  # no word boxes for this line: one word per whitespace-separated token, box shared
            box = _bbox(box_points, scale)
            pieces = [(t, float(box_score), box) for t in str(box_text).split()]
        raw += pieces
    words = []
    for n, line in enumerate(visual_lines(raw, box=lambda r: r[2], overlap=0.5, lookback=6, grow=True)):
        for text, score, box in sorted(line, key=lambda r: r[2].x0):
            words.append(Word(text=text, bbox=box, confidence=max(0.0, min(1.0, score)), block=0, line=n,
                              size=round(box.height, 2), source="ocr"))
    return tuple(words)
