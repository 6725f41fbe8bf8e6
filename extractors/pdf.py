"""PyMuPDF: open documents (PDF and raster images), read pages, render pixels.

PyMuPDF opens PNG/JPEG/TIFF as documents too (a multi-page TIFF gives several pages, each sized in
points from the image's resolution), so every input goes through one reader.

``import pymupdf`` normally imports ``pymupdf.layout``, which loads an ONNX layout model (about 1 s
and 160 MB per process). We block that import here and load the model only when asked for.
"""

from __future__ import annotations

import re
import statistics
import sys
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from docroute.schemas import BBox, Drawing, PageContent, Word

if TYPE_CHECKING:
    import pymupdf
    from PIL import Image

# A page "has a text layer" when its text layer holds at least this many non-space characters.
MIN_TEXT_LAYER_CHARS = 20
MAX_RENDER_DPI = 400.0
MIN_RENDER_DPI = 150.0
# Rendering never exceeds this many pixels (about A3 at 400 dpi; 120 MB as RGB): see render_dpi.
MAX_RENDER_PIXELS = 40_000_000
MIN_BUDGET_DPI = 50.0  # below this OCR reads nothing: the page is refused instead
# A page image with at least the pixels of an A4 page at MIN_RENDER_DPI (2.2 Mpx) is OCRed at its own
# pixels, 1:1 (see render_dpi).
MIN_NATIVE_PIXELS = (210 / 25.4 * MIN_RENDER_DPI) * (297 / 25.4 * MIN_RENDER_DPI)


class DocumentOpenError(ValueError):
    """The file could not be opened as a document; the message says why and what to do."""


class PageTooLarge(ValueError):
    """The page cannot be rendered within the pixel budget at a readable resolution."""


class PageUnreadable(RuntimeError):
    """Neither MuPDF nor poppler could draw the page; the message says what each said."""


class PageBudgetExceeded(ValueError):
    """The page is over its budget (inflated content size or time): a page error, the others go on."""


def _pymupdf():
    if "pymupdf" not in sys.modules and "pymupdf.layout" not in sys.modules:
        sys.modules["pymupdf.layout"] = None  # type: ignore[assignment]  # keep the layout model unloaded
        try:
            import pymupdf
        finally:
            del sys.modules["pymupdf.layout"]
        pymupdf.no_recommend_layout()
        pymupdf.TOOLS.mupdf_display_errors(False)
        return pymupdf
    import pymupdf

    return pymupdf


def activate_layout_model() -> None:
    """Load PyMuPDF's offline layout model into this process (about 1 s, 160 MB)."""
    _pymupdf()
    import pymupdf.layout  # noqa: F401  (activates on import)


@contextmanager
def open_document(path: Path, mime_type: str, passwords: Sequence[str] = (),
                  data: bytes | None = None) -> Iterator[pymupdf.Document]:
    """Open ``path`` (or its bytes ``data``, already read) as a document. The pipeline opens each
    document once, through :func:`docroute.extractors.document.open_handle`."""
    pymupdf = _pymupdf()
    pymupdf.TOOLS.reset_mupdf_warnings()  # structure_damage() reports this document's only
    filetype = {"application/pdf": "pdf"}.get(mime_type)
    source: dict = {"filename": str(path)}
    try:
        source["filename"].encode("utf-8")
    except UnicodeEncodeError:  # a file name that is not UTF-8: MuPDF cannot open it by name
        data = Path(path).read_bytes() if data is None else data
    if data is not None:
        source = {"stream": data}
        filetype = filetype or {"image/png": "png", "image/jpeg": "jpeg", "image/tiff": "tiff"}.get(mime_type)
    try:
        doc = pymupdf.open(**source, filetype=filetype) if filetype else pymupdf.open(**source)
    except Exception as exc:  # MuPDF raises FileDataError, RuntimeError, ValueError...
        warnings = pymupdf.TOOLS.mupdf_warnings(reset=False)
        if "malloc" in warnings or "out of memory" in warnings.lower():
            raise DocumentOpenError(f"cannot open as {mime_type}: out of memory while opening ({exc})") from exc
        raise DocumentOpenError(f"cannot open as {mime_type}: the file is damaged or incomplete ({exc})") from exc
    try:
        if doc.needs_pass and not any(doc.authenticate(pw) for pw in passwords):
            tried = f"none of the {len(passwords)} password(s) given opens it" if passwords else "no password was given"
            raise DocumentOpenError(
                f"the PDF is encrypted with a password and {tried}; "
                "put the password in a file and pass --password-file FILE, or remove the encryption"
            )
        if doc.page_count == 0:
            raise DocumentOpenError("the document has no pages")
        yield doc
    finally:
        doc.close()


# MuPDF warnings that mean part of the file could not be read (it goes on without it, silently). Not
# "page tree load failed; falling back to slow lookup": the slow lookup finds the pages.
_DAMAGE_MARKERS = ("cannot load object", "limit error", "stack overflow", "too deeply nested")


def structure_damage() -> str | None:
    """What MuPDF could not read since the last :func:`open_document` in this process, or None."""
    pymupdf = _pymupdf()
    seen: list[str] = []
    for line in pymupdf.TOOLS.mupdf_warnings(reset=False).splitlines():
        line = line.strip()
        if line and any(m in line for m in _DAMAGE_MARKERS) and line not in seen:
            seen.append(line)
    return "; ".join(seen[:3]) if seen else None


def warnings_mark() -> int:
    """Where MuPDF's warnings of this process stand now: pass it to :func:`warnings_since`."""
    return len(_pymupdf().TOOLS.mupdf_warnings(reset=False))


def warnings_since(mark: int) -> str:
    """What MuPDF warned about since ``mark`` (a page's own trouble: a stream it stopped decoding)."""
    return _pymupdf().TOOLS.mupdf_warnings(reset=False)[mark:].strip()


# "/Name Do": a content stream drawing an XObject (a form drawn N times is interpreted N times)
_DO = re.compile(rb"/([^\s/\[\]()<>{}%]+)\s*Do\b")


def _inflated(raw: bytes, limit: int, calls: Counter | None = None) -> int:
    """Bytes that the zlib data ``raw`` inflates to, counted up to ``limit`` + 1 (no more is inflated);
    the XObjects it draws are counted into ``calls`` by name."""
    d, total, chunk = zlib.decompressobj(), 0, 1 << 20
    try:
        while raw and total <= limit:
            out = d.decompress(raw, chunk)
            total += len(out)
            if calls is not None:
                calls.update(_DO.findall(out))
            raw = d.unconsumed_tail
            if d.eof or not out:
                break
    except zlib.error:  # damaged data: MuPDF stops where zlib stops, and so does the count
        pass
    return total


def _stream_size(doc: pymupdf.Document, xref: int, limit: int, calls: Counter | None = None) -> int:
    try:
        kind, value = doc.xref_get_key(xref, "Filter")
        filters = value.strip("[] ").split() if kind in ("name", "array") else []
        if filters in (["/FlateDecode"], ["/Fl"]):
            return _inflated(doc.xref_stream_raw(xref) or b"", limit, calls)
        data = (doc.xref_stream_raw(xref) if not filters else doc.xref_stream(xref)) or b""
    except Exception:  # noqa: BLE001  (a damaged object: left to MuPDF's reading of the page)
        return 0
    if calls is not None:
        calls.update(_DO.findall(data))
    return len(data)


def content_size(page: pymupdf.Page, limit: int) -> int:
    """The inflated size of what MuPDF would interpret to draw ``page``: its content streams and the
    form XObjects its resources name, each form counted as often as the page's content draws it;
    measured without interpreting anything and only up to ``limit`` + 1.

    Flate (alone, or no filter) is inflated here in 1 MB steps and stops past ``limit``: a 2 MB stream
    of 1.5 GB of no-op operators costs ``limit`` bytes of inflating (0.3 s per 100 MB), not the minutes
    MuPDF spends interpreting it. Other filters are decoded by MuPDF (they expand far less). A form
    drawn by another form is counted once. A stream that cannot be read counts for nothing: MuPDF's own
    reading of the page says what is wrong.
    """
    if not page.parent.is_pdf:  # an image input: no content streams
        return 0
    doc, calls, total = page.parent, Counter(), 0
    try:
        contents = page.get_contents()
        forms = [(xref, name.encode(), invoker) for xref, name, invoker, _ in page.get_xobjects() if xref > 0]
    except Exception:  # noqa: BLE001  (a damaged page: left to MuPDF's reading of it)
        return 0
    for xref in contents:
        total += _stream_size(doc, xref, limit - total, calls)
        if total > limit:
            return total
    for xref, name, invoker in forms:
        times = max(1, calls[name]) if invoker == 0 else 1
        total += times * _stream_size(doc, xref, (limit - total) // times)
        if total > limit:
            break
    return total


def _bold(font: str | None) -> bool:
    """A bold font by its name ("Helvetica-Bold", "MyriadPro-Semibold", "Arial-Black", MuPDF's "hebo").

    Not PyMuPDF's bold flag (span flags & TEXT_FONT_BOLD): it marks every span of some files bold, the
    regular font too (invoice2data oyo.pdf: NimbusSanL-Regu and NimbusSanL-Bold both carry flags 20).
    """
    f = (font or "").casefold()
    return any(k in f for k in ("bold", "black", "heavy", "hebo")) or f.endswith("bo")


def read_words(page: pymupdf.Page, page_number: int) -> tuple[Word, ...]:
    """Words of the text layer with their bbox and the font, size and boldness of their line's largest span."""
    pymupdf = _pymupdf()
    flags = pymupdf.TEXT_PRESERVE_WHITESPACE | pymupdf.TEXT_MEDIABOX_CLIP | pymupdf.TEXT_DEHYPHENATE
    tp = page.get_textpage(flags=flags)
    info: dict[tuple[int, int], dict] = {}
    for b_no, block in enumerate(page.get_text("dict", textpage=tp)["blocks"]):
        for l_no, line in enumerate(block.get("lines", ())):
            if spans := line.get("spans"):
                big = max(spans, key=lambda s: s.get("size", 0.0))
                font = big.get("font")
                info[(b_no, l_no)] = {"font": font, "size": round(float(big.get("size", 0.0)), 2), "bold": _bold(font)}
    return tuple(
        Word(text=text, bbox=BBox(x0=x0, y0=y0, x1=x1, y1=y1), confidence=1.0, block=b_no, line=l_no,
             source="pdf", **info.get((b_no, l_no), {}))
        for x0, y0, x1, y1, text, b_no, l_no, _w in page.get_text("words", textpage=tp) if text.strip()
    )


def _drawings(page: pymupdf.Page) -> tuple[Drawing, ...]:
    out = []
    for path in page.get_cdrawings():
        r = path.get("rect")
        if r is None:
            continue
        items = path.get("items") or ()
        kinds = {it[0] for it in items}
        if kinds == {"l"}:
            kind = "line"
        elif kinds <= {"re", "qu"}:
            kind = "rect"
        elif "c" in kinds:
            kind = "curve"
        else:
            kind = "other"
        out.append(
            Drawing(
                kind=kind, bbox=BBox(x0=r[0], y0=r[1], x1=r[2], y1=r[3]),
                filled=path.get("fill") is not None,
            )
        )
    return tuple(out)


def read_page(page: pymupdf.Page, page_number: int, check: Callable[[str], None] | None = None) -> PageContent:
    """Everything cheap that the page offers before layout parsing: text layer, graphics, ink.

    Each of the text layer, the image list and the drawings is one pass of MuPDF over the page's
    content; ``check(stage)`` is called after each (the page's time budget: it raises to stop)."""
    pymupdf = _pymupdf()
    check = check or (lambda stage: None)
    rect = page.rect
    words = read_words(page, page_number)
    check("reading the text layer")
    n_chars = sum(len(w.text) for w in words)
    image_boxes, dpis, grays = [], [], []
    for info in page.get_image_info():
        b = BBox(x0=info["bbox"][0], y0=info["bbox"][1], x1=info["bbox"][2], y1=info["bbox"][3])
        if b.area <= 0:
            continue
        image_boxes.append(b)
        grays.append(info.get("colorspace") == 1)
        if b.width > 0 and info.get("width"):
            dpis.append(info["width"] / (b.width / 72.0))
    check("listing the images")
    ink_boxes, strokes = [], 0
    for annot in page.annots() or ():
        if annot.type[0] == pymupdf.PDF_ANNOT_INK:
            r = annot.rect
            ink_boxes.append(BBox(x0=r.x0, y0=r.y0, x1=r.x1, y1=r.y1))
            strokes += len(annot.vertices or ())
    page_is_image = bool(image_boxes) and max(b.area for b in image_boxes) >= 0.5 * rect.width * rect.height
    native = statistics.median(dpis) if dpis and page_is_image else 72.0
    return PageContent(
        page_number=page_number,
        width=rect.width,
        height=rect.height,
        has_text_layer=n_chars >= MIN_TEXT_LAYER_CHARS,
        words=words,
        image_boxes=tuple(image_boxes),
        ink_boxes=tuple(ink_boxes),
        ink_strokes=strokes,
        drawings=_drawings(page),
        native_dpi=float(native),
        page_image=page_is_image,
        native_gray=page_is_image and all(grays),
    )


def render_dpi(content: PageContent, max_pixels: float = MAX_RENDER_PIXELS) -> float:
    """The resolution to render a page at for OCR.

    A page image (a scan, a photo, a PNG/JPEG/TIFF input) with at least ``MIN_NATIVE_PIXELS`` is
    rendered at its own pixels, 1:1, whatever resolution the file states or MuPDF assumes (96 dpi for a
    JPEG that states none): upsampling it bought nothing and cost time. Measured with tesseract on
    ../shared/realdocs: tapuscorpus bljd (2544 x 3256 px, no stated DPI) has a character error rate of
    0.166 at 1:1 against 0.226 at the 1.56x that 150 dpi meant, in 4.3 s instead of 8.6 s; the azure
    forms read as many confident words in 40-45 % less time. Smaller page images render at
    ``MIN_RENDER_DPI`` at least: at 1:1, FlipkartInvoice.png (789 x 557 px) lost half its confident
    words and the 113 dpi icdar2013 eu-012 scan (1.2 Mpx) was misrouted as handwriting. Pages that are
    not one image render at ``MIN_RENDER_DPI``..``MAX_RENDER_DPI`` from their stated resolution.

    Capped so that the rendered page stays within ``max_pixels``: a hostile or absurd page size (a
    200,000-point MediaBox, a 30,000-pixel image) renders small instead of exhausting memory.
    """
    area_in2 = (content.width / 72.0) * (content.height / 72.0)
    one_to_one = content.page_image and area_in2 * content.native_dpi**2 >= MIN_NATIVE_PIXELS
    dpi = min(MAX_RENDER_DPI, content.native_dpi if one_to_one else max(MIN_RENDER_DPI, content.native_dpi))
    if area_in2 > 0 and area_in2 * dpi * dpi > max_pixels:
        dpi = float(int((max_pixels / area_in2) ** 0.5))  # whole dpi, rounded down: render() rounds
        if dpi < MIN_BUDGET_DPI:
            raise PageTooLarge(
                f"the page is {content.width / 72:.0f} x {content.height / 72:.0f} in "
                f"({content.width:.0f} x {content.height:.0f} pt); even at {MIN_BUDGET_DPI:.0f} dpi it would "
                f"take {area_in2 * MIN_BUDGET_DPI ** 2 / 1e6:.0f} Mpx, over the {max_pixels / 1e6:.0f} Mpx "
                "render budget: not read (a page of that size is almost always a broken or hostile file)"
            )
    return float(dpi)


def render(page: pymupdf.Page, dpi: float, *, gray: bool = True, clip: BBox | None = None,
           annots: bool = True) -> Image.Image:
    """Render a page, or its ``clip`` (PDF points), to a PIL image at ``dpi``.

    The one render path: callers go through ``DocumentHandle.render``, which caches. For OCR, render
    colour pages in colour: tesseract read a phone photo's amount column from the RGB image and lost it
    from a grayscale conversion of the same image (measured on the sample photo).
    """
    from PIL import Image

    pymupdf = _pymupdf()
    cs = pymupdf.csGRAY if gray else pymupdf.csRGB
    area = None if clip is None else pymupdf.Rect(clip.x0, clip.y0, clip.x1, clip.y1)
    pix = page.get_pixmap(dpi=max(1, int(round(dpi))), colorspace=cs, alpha=False, annots=annots, clip=area)
    mode = "L" if gray else "RGB"
    # samples_mv: the pixmap's memory, copied once by PIL (``samples`` would copy it to bytes first)
    return Image.frombytes(mode, (pix.width, pix.height), pix.samples_mv)
