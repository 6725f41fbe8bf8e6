"""The character list of PyMuPDF's ``find_tables``, built without a Python object per character.

``Page.find_tables`` first lists every character of the page (``pymupdf.table.make_chars``) as a dict
in the coordinates pdfplumber uses; for each character it builds a ``Rect``, a ``Point`` and two
transformations through MuPDF's Python bindings. On the sample invoices that was 85-90 % of
``find_tables`` (about 50 ms of a 60 ms call on a ruled invoice page) and about a third of a digital
page's whole processing.

:func:`make_chars` builds the same list: the same characters in the same order, the same keys and
the same values. MuPDF transforms points and rectangles in single precision (``fz_point``,
``fz_rect`` hold C floats), so the transformed coordinates are computed here in float32 with numpy,
operation by operation as ``fz_transform_point`` does. It covers the case every page reaches
``find_tables`` with (the page is derotated first): an axis-aligned page matrix with ``a > 0`` and
``d < 0`` and characters whose bbox is not inverted. Any other page, or character, goes through
PyMuPDF's own code. :func:`fast_chars` swaps it in for one ``find_tables`` call; it is used only with
the PyMuPDF release it was checked against (``CHECKED``); with another, ``find_tables`` runs as
shipped. tests/test_table_chars.py compares both lists on every page of the sample documents and
the realdocs PDFs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

CHECKED = "2.0"  # pymupdf.VersionBind this was compared against


def _table_module():
    from docroute.extractors import pdf

    pymupdf = pdf._pymupdf()
    import pymupdf.table as table

    return pymupdf, table


def _f32(values: list[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).astype(np.float32)


def _fast_path(page) -> bool:
    """Whether the page matrix is the axis-aligned one (a > 0, d < 0) that :func:`make_chars` computes."""
    a, b, c, d, _e, _f = (float(v) for v in page.transformation_matrix)
    return b == 0 and c == 0 and a > 0 and d < 0


def make_chars(page, clip=None):
    """``pymupdf.table.make_chars`` (fills the table module's CHARS, returns the TextPage), faster."""
    pymupdf, table = _table_module()
    if not _fast_path(page):
        return (_ORIGINAL or table.make_chars)(page, clip=clip)  # the original while a block is open
    ctm = page.transformation_matrix
    a, b, c, d, e, f = (float(v) for v in ctm)
    chars = table.CHARS._list()
    page_number = page.number + 1
    page_height = page.rect.height
    textpage = page.get_textpage(clip=clip, flags=table.FLAGS)
    blocks = page.get_text("rawdict", textpage=textpage)["blocks"]
    doctop_base = page_height * page.number
    rows = []  # (line dir, span values, char bbox, char origin, text)
    for block in blocks:
        for line in block["lines"]:
            ldir = line["dir"]
            ldir = (round(ldir[0], 4), round(ldir[1], 4))
            for span in sorted(line["spans"], key=lambda s: s["bbox"][0]):
                info = (span["font"], span["size"],
                        bool(span["flags"] & pymupdf.TEXT_FONT_BOLD or span["char_flags"] & 8),
                        pymupdf.sRGB_to_pdf(span["color"]))
                for char in sorted(span["chars"], key=lambda ch: ch["bbox"][0]):
                    rows.append((ldir, info, tuple(map(float, char["bbox"])), char["origin"], char["c"]))
    if not rows:
        return textpage
    # fz_transform_rect on an axis-aligned matrix with d < 0: y0 and y1 swap, then each corner goes
    # through fz_transform_point: x' = (x * a + y * c) + e, y' = (x * b + y * d) + f, in float32.
    fa, fb, fc, fd, fe, ff = (np.float32(v) for v in (a, b, c, d, e, f))
    x0 = _f32([r[2][0] for r in rows])
    y0 = _f32([r[2][1] for r in rows])
    x1 = _f32([r[2][2] for r in rows])
    y1 = _f32([r[2][3] for r in rows])
    ox = _f32([float(r[3][0]) for r in rows])
    oy = _f32([float(r[3][1]) for r in rows])
    ty0 = ((x0 * fb + y1 * fd) + ff).tolist()  # the top corner after the swap: (x0, y1)
    ty1 = ((x1 * fb + y0 * fd) + ff).tolist()
    tox = ((ox * fa + oy * fc) + fe).tolist()
    toy = ((ox * fb + oy * fd) + ff).tolist()
    for i, (ldir, (fontname, fontsize, bold, color), (bx0, by0, bx1, by1), _origin, text) in enumerate(rows):
        if bx0 > bx1 or by0 > by1:  # an inverted bbox: left to MuPDF's own rect code
            bbox_ctm = pymupdf.Rect(bx0, by0, bx1, by1) * ctm
            cy0, cy1 = bbox_ctm.y0, bbox_ctm.y1
        else:
            cy0, cy1 = ty0[i], ty1[i]
        upright = ldir[1] == 0
        chars.append({
            "adv": bx1 - bx0 if upright else by1 - by0,
            "bottom": by1,
            "doctop": by0 + doctop_base,
            "fontname": fontname,
            "height": by1 - by0,
            "matrix": (float(ldir[0]), float(-ldir[1]), float(ldir[1]), float(ldir[0]), tox[i], toy[i]),
            "ncs": "DeviceRGB",
            "non_stroking_color": color,
            "non_stroking_pattern": None,
            "object_type": "char",
            "page_number": page_number,
            "size": fontsize if upright else by1 - by0,
            "stroking_color": color,
            "stroking_pattern": None,
            "bold": bold,
            "text": text,
            "top": by0,
            "upright": upright,
            "width": bx1 - bx0,
            "x0": bx0,
            "x1": bx1,
            "y0": cy0,
            "y1": cy1,
        })
    return textpage


# (the CHARS list, its length, x0, x1, y0, y1 arrays): replaced whole, so a thread reads one list's
_boxes: tuple | None = None


def chars_in_rect(chars, rect) -> bool:
    """``pymupdf.table.chars_in_rect``: whether any character lies inside ``rect`` (edges included),
    by the same comparisons on the same floats, over arrays built once per character list."""
    global _boxes
    current = chars._list() if hasattr(chars, "_list") else chars
    boxes = _boxes
    if boxes is None or boxes[0] is not current or boxes[1] != len(current):
        boxes = (current, len(current), *(np.fromiter((c[key] for c in current), dtype=np.float64,
                                                      count=len(current)) for key in ("x0", "x1", "y0", "y1")))
        _boxes = boxes
    _list, _n, x0, x1, y0, y1 = boxes
    rx0, ry0, rx1, ry1 = rect[0], rect[1], rect[2], rect[3]
    return bool(np.any((rx0 <= x0) & (x1 <= rx1) & (ry0 <= y0) & (ry1 >= y1)))


_ORIGINAL = None
_ORIGINAL_IN_RECT = None
_lock = threading.Lock()
_depth = 0  # fast_chars blocks open in this process (threads): the originals come back when none is


@contextmanager
def fast_chars() -> Iterator[None]:
    """Within the block, ``find_tables`` lists characters with :func:`make_chars` and tests candidate
    boxes with :func:`chars_in_rect` (same results, faster)."""
    global _ORIGINAL, _ORIGINAL_IN_RECT, _depth, _boxes
    pymupdf, table = _table_module()
    if pymupdf.VersionBind != CHECKED:
        yield
        return
    with _lock:
        if _depth == 0:
            _ORIGINAL, _ORIGINAL_IN_RECT = table.make_chars, table.chars_in_rect
            table.make_chars, table.chars_in_rect = make_chars, chars_in_rect
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                table.make_chars, table.chars_in_rect = _ORIGINAL, _ORIGINAL_IN_RECT
                _boxes = None  # the page's characters are not kept past the call
