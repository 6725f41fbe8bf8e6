"""Poppler (``pdftoppm`` through pdf2image): the second renderer, for pages MuPDF cannot draw.

MuPDF reads every page. Poppler is asked for a page only when MuPDF raised while reading or rendering
it, or drew it blank while reporting damage (a repaired file, or a stream MuPDF gave up decoding): the
two libraries recover from damage differently. Measured on 300 mutated copies of ../shared/realdocs
PDFs (365 pages): MuPDF drew 13 pages blank, poppler read 8 of them (a single flipped byte in
FlipkartInvoice.pdf's content stream: MuPDF stops at the zlib error, poppler decodes on); it raised on
none. The page comes back as a page image: tesseract reads it, as it reads a scan.

Poppler runs as a subprocess with a timeout (pdf2image kills it when it expires), at the resolution
``pdf.render_dpi`` chose within the pixel budget; a page whose size MuPDF could not tell is sized by
``pdfinfo`` first.
"""

from __future__ import annotations

import math
import re
import shutil
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

NAME = "poppler"


class PopplerError(RuntimeError):
    """Poppler could not render the page either; the message says why."""


def available() -> bool:
    return shutil.which("pdftoppm") is not None and shutil.which("pdfinfo") is not None


def _seconds(timeout_s: float) -> int:
    if timeout_s <= 0:
        raise PopplerError("no time left in the page budget to try poppler")
    return max(1, math.ceil(timeout_s))


def _with_password(call, passwords: Sequence[str]):
    """``call(userpw)`` without a password, then with each of ``passwords`` (an encrypted PDF)."""
    import pdf2image

    for i, password in enumerate((None, *passwords)):
        try:
            return call(password)
        except pdf2image.exceptions.PDFPageCountError as exc:
            if "password" not in str(exc).lower() or i == len(passwords):
                raise
    raise AssertionError("unreachable")


def page_size(data: bytes, number: int, timeout_s: float, passwords: Sequence[str] = ()) -> tuple[float, float]:
    """Page ``number``'s size in points, as poppler reads it (``pdfinfo``)."""
    import pdf2image

    try:
        info = _with_password(lambda pw: pdf2image.pdfinfo_from_bytes(
            data, userpw=pw, first_page=number, last_page=number, timeout=_seconds(timeout_s)), passwords)
    except Exception as exc:  # PDFInfoNotInstalledError, PDFPageCountError, PDFPopplerTimeoutError...
        raise PopplerError(f"pdfinfo failed: {type(exc).__name__}: {str(exc).strip()[:200]}") from exc
    size = next((v for k, v in info.items() if re.fullmatch(rf"Page\s+{number} size", k)), None)
    found = re.match(r"\s*([\d.]+) x ([\d.]+)", str(size or ""))
    if not found:
        raise PopplerError(f"pdfinfo does not know page {number}'s size")
    w, h = float(found[1]), float(found[2])
    if str(info.get(f"Page {number:4d} rot", "0")).strip() in ("90", "270"):
        w, h = h, w
    return w, h


def render(data: bytes, number: int, dpi: float, *, gray: bool, timeout_s: float,
           passwords: Sequence[str] = ()) -> Image.Image:
    """Page ``number`` (1-based) of the PDF ``data`` at ``dpi`` (whole dots, as MuPDF renders);
    an encrypted PDF is opened with the first of ``passwords`` that poppler accepts."""
    import pdf2image

    if not available():
        raise PopplerError("poppler is not installed: apt-get install poppler-utils (scripts/system_deps.sh)")
    try:
        images = _with_password(lambda pw: pdf2image.convert_from_bytes(
            data, dpi=max(1, int(round(dpi))), first_page=number, last_page=number, grayscale=gray,
            use_cropbox=True, userpw=pw, timeout=_seconds(timeout_s),
        ), passwords)
    except pdf2image.exceptions.PDFPopplerTimeoutError as exc:
        raise PopplerError(f"poppler timed out after {_seconds(timeout_s)} s") from exc
    except Exception as exc:
        raise PopplerError(f"poppler failed: {type(exc).__name__}: {str(exc).strip()[:200]}") from exc
    if not images:
        raise PopplerError("poppler rendered nothing (the page is unreadable to it too)")
    image = images[0]
    image.load()
    return image.convert("L" if gray else "RGB")


def blank(image: Image.Image) -> bool:
    """Nothing drawn: every pixel within a few levels of one gray."""
    lo, hi = image.convert("L").getextrema()
    return hi - lo < 8
