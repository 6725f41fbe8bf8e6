"""Low OCR confidence: how well OCR read a page image.

Word confidence (mean and 10th percentile), and the print OCR did not read at all: blocks of
text-sized ink laid out like print (straight baseline, regular heights) with no confident word on
them, as a share of the page's text-sized ink. A faded, blurred or upside-down page scores high on
that share even when the few words OCR returned look confident.
"""

from __future__ import annotations

from collections.abc import Sequence

from docroute.extractors.detect.common import quantile
from docroute.extractors.detect.raster import Ink, glyph_blocks, regularity
from docroute.schemas import BBox, PageContent, Region, Word

PRINT_IRREGULARITY_MAX = 0.45  # blocks more regular than this are print (handwriting is above)


def ocr_signals(words: Sequence[Word]) -> dict[str, float]:
    confs = [w.confidence for w in words]
    return {
        "ocr_words": float(len(words)),
        "ocr_mean_conf": float(sum(confs) / len(confs)) if confs else 0.0,
        "ocr_p10_conf": float(quantile(confs, 0.10)),
    }


def unread_print(ink: Ink) -> tuple[float, list[BBox]]:
    """Share of the page's text-sized ink in print-like blocks that OCR left unread, and those blocks."""
    import numpy as np

    glyph_ink = sum(c.area for c in ink.comps if c.kind == "glyph") + ink.explained_px
    unread_px = 0
    boxes = []
    for (x0, y0, x1, y1), comps in glyph_blocks(ink):
        if len(comps) < 8:
            continue
        measured, aligned, regular = regularity(comps)
        if measured >= 5 and 1.0 - (aligned + regular) / 2 > PRINT_IRREGULARITY_MAX:
            continue  # handwriting-like: the handwriting detector's business
        block = ink.ink[y0:y1, x0:x1]
        unread = int(np.count_nonzero(block & ~ink.explained[y0:y1, x0:x1]))
        if unread >= 0.6 * max(1, int(np.count_nonzero(block))):
            unread_px += unread
            boxes.append(ink.to_points((x0, y0, x1, y1)))
    return (unread_px / glyph_ink if glyph_ink else 0.0), boxes


def ocr_region(content: PageContent, words: Sequence[Word], ink: Ink | None) -> tuple[dict[str, float], Region]:
    """Page-level OCR quality signals and the page's text area as a candidate region."""
    signals = ocr_signals(words)
    boxes = [w.bbox for w in words]
    share = 0.0
    if ink is not None:
        share, unread_boxes = unread_print(ink)
        boxes += unread_boxes
        signals["ink_share"] = round(ink.ink_share, 4)
        signals["ink_outside_words"] = round(ink.unexplained_share, 4)
    signals["ocr_unread_print"] = round(share, 4)
    box = BBox.enclosing(boxes) if boxes else BBox(x0=0, y0=0, x1=content.width, y1=content.height)
    score = max(1.0 - signals["ocr_mean_conf"] if words else 1.0, share)
    region = Region(kind="text", bbox=box, score=round(min(1.0, max(0.0, score)), 4), source="ocr_quality:page",
                    evidence={k: round(v, 4) for k, v in signals.items()},
                    note=(f"{int(signals['ocr_words'])} OCR words, mean confidence {signals['ocr_mean_conf']:.2f}, "
                          f"p10 {signals['ocr_p10_conf']:.2f}; {share:.0%} of text-sized ink is print OCR left unread"))
    return signals, region
