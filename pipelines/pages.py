"""The page loop: ``process_page`` (pages -> parse -> signals -> route) and ``read_pages``.

A page has two renderers and a budget. MuPDF reads it; where MuPDF raises while reading or rendering
it, or draws blank a page of a damaged PDF (repaired, or MuPDF warned while reading the page), poppler
draws it (extractors/poppler.py) and tesseract reads it; ``pages.renderer`` says which drew it and
``renderer_note`` why, and the document's error says what was recovered and how. A page neither can
draw is a page error saying what each said.

The budget: MuPDF cannot be interrupted from Python in the middle of a call (it holds the GIL, so a
watchdog thread does not even run, and a signal is handled only once the call returns), so what it
is given is bounded instead. Before MuPDF interprets a page, the content streams it would interpret
(and the forms its resources name) are inflated and counted, cheaply and only up to
``max_content_stream_mb``; a page over it is refused (a 1.5 GB content-stream bomb, 2 MB on disk,
ends in 0.5 s instead of running for minutes). The page's pixels are bounded by the render budget
(``pdf.render_dpi``). Its time, ``page_timeout_s``, is checked between MuPDF's passes over the page
and between the stages, and tesseract and poppler (subprocesses, killed at their timeout) get only
the time left; a page over either limit is a page error naming the limit and its setting, and the
document's other pages are kept. The one overrun left is a single MuPDF pass, bounded by the content
limit (about 3 s per 100 MB of no-op operators here).
"""

from __future__ import annotations

import time

from docroute.extractors import detect, layout_pymupdf, ocr, pdf, poppler
from docroute.extractors.document import DocumentHandle
from docroute.pipelines import route
from docroute.pipelines.settings import Settings
from docroute.schemas import PageContent, PageResult


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 2)


class _PageClock:
    """A page's time budget (``page_timeout_s``), checked between its stages (see the module docstring)."""

    def __init__(self, t0: float, settings: Settings):
        self.t0, self.limit = t0, settings.page_timeout_s

    def left(self) -> float:
        return self.limit - (time.perf_counter() - self.t0)

    def check(self, stage: str) -> None:
        if self.left() <= 0:
            raise pdf.PageBudgetExceeded(
                f"the page took {time.perf_counter() - self.t0:.1f} s by the end of {stage}, over its "
                f"{self.limit:g} s budget (page_timeout_s, DOCROUTE_PAGE_TIMEOUT_S)")

    def ocr(self, options: ocr.OcrOptions) -> ocr.OcrOptions:
        return options.model_copy(update={"timeout_s": max(0.1, min(options.timeout_s, self.left()))})


def _check_content(page, settings: Settings) -> None:
    limit = int(settings.max_content_stream_mb * 1024 * 1024)
    if (size := pdf.content_size(page, limit)) > limit:
        raise pdf.PageBudgetExceeded(
            f"the page's content streams inflate to more than the {settings.max_content_stream_mb:g} MB limit "
            f"(max_content_stream_mb, DOCROUTE_MAX_CONTENT_STREAM_MB; counting stopped at {size / 2**20:.0f} MB): "
            "not interpreted (a content-stream bomb, or a page too complex to read in time)")


def process_page(doc: DocumentHandle, page_number: int, settings: Settings) -> tuple[PageResult, float]:
    """One page through pages -> parse -> signals -> route. Returns the page and its start time.

    MuPDF reads the page; where it raises, or draws blank a page of a damaged PDF, poppler draws it
    and tesseract reads it (``renderer`` and ``renderer_note`` on the page say so)."""
    t0 = time.perf_counter()
    clock = _PageClock(t0, settings)
    mark = pdf.warnings_mark()
    why = None  # why poppler draws the page
    try:
        page = doc.page(page_number)
        _check_content(page, settings)
        content = pdf.read_page(page, page_number, clock.check)
    except (pdf.PageBudgetExceeded, MemoryError):
        raise
    except Exception as exc:  # MuPDF cannot read the page: poppler may
        if not _poppler_may_help(exc, doc, settings):
            raise
        why = f"MuPDF failed ({_text(exc)})"
        page, content = None, _poppler_content(doc, page_number, settings, clock, why)
    clock.check("reading the page")
    image = dpi = None
    if content.has_text_layer:
        parsed = layout_pymupdf.parse_page(page, content, content.words, ocr=False, layout_model=settings.layout.model)
        clock.check("parsing the layout")
    else:
        dpi = pdf.render_dpi(content)
        try:
            image = doc.render(page_number, dpi, gray=content.native_gray)
        except (pdf.PageBudgetExceeded, MemoryError):
            raise
        except poppler.PopplerError as exc:  # poppler was drawing it already
            raise pdf.PageUnreadable(f"{why}; poppler failed too ({exc})") from None
        except Exception as exc:
            if not _poppler_may_help(exc, doc, settings):
                raise
            why = f"MuPDF failed to render it ({_text(exc)})"
            _poppler_content(doc, page_number, settings, clock, why, content)
            image = _poppler_image(doc, page_number, dpi, content, why)
        if why is not None and poppler.blank(image):
            raise pdf.PageUnreadable(f"{why}; poppler drew it blank: nothing recovered")
        clock.check("rendering")
        if why is None and _poppler_may_help(None, doc, settings) and (damage := _damage(doc, mark)) \
                and poppler.blank(image):
            image, why = _redraw_blank(doc, page_number, content, dpi, settings, clock, damage) or (image, None)
        box = ocr.ink_box(image)
        try:
            words = ocr.ocr_words(image, dpi, clock.ocr(settings.ocr), print_box=box)
        except ocr.OcrError:  # tesseract cut short by the page's budget: say so
            clock.check("OCR")
            raise
        clock.check("OCR")
        parsed = layout_pymupdf.parse_page(page, content, words, ocr=True)
        parsed = parsed.model_copy(update={"print_box": ocr.print_bbox(box, parsed.width, parsed.height)})

    def clip(box, clip_dpi: float):
        return doc.render(page_number, clip_dpi, clip=box, annots=False)

    found = detect.detect_page(content, parsed, image, dpi, render=clip)
    decision = route.decide(found.signals, settings.router, found.regions, page_number)
    return PageResult(parsed=parsed, signals=found.signals, decision=decision, renderer=doc.renderer(page_number),
                      renderer_note=why and f"{why}; read with poppler"), t0


def _text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def _poppler_may_help(exc: Exception | None, doc: DocumentHandle, settings: Settings) -> bool:
    """Poppler reads PDFs only, and not a page MuPDF ran out of memory on (poppler would too)."""
    out_of_memory = exc is not None and ("malloc" in str(exc) or "out of memory" in str(exc).lower())
    return settings.poppler_fallback and doc.source.mime_type == "application/pdf" and not out_of_memory


def _damage(doc: DocumentHandle, mark: int) -> str | None:
    """Why a blank MuPDF page may be MuPDF's failure: the file was repaired, or it warned on this page."""
    if warned := pdf.warnings_since(mark):
        return warned.splitlines()[0][:160]
    return "the PDF was repaired" if getattr(doc.doc, "is_repaired", False) else None


def _poppler_content(doc: DocumentHandle, page_number: int, settings: Settings, clock: _PageClock, why: str,
                     content: PageContent | None = None) -> PageContent:
    """Hand the page to poppler (sized by ``pdfinfo`` when MuPDF could not tell): what is known of it
    is its size; it is read as a page image. Raises a page error saying both renderers failed."""
    timeout_s = min(settings.poppler_timeout_s, clock.left())
    try:
        size = (content.width, content.height) if content else \
            poppler.page_size(doc.data, page_number, timeout_s, doc.passwords)
    except poppler.PopplerError as exc:
        raise pdf.PageUnreadable(f"{why}; poppler failed too ({exc})") from None
    doc.use_poppler(page_number, size, timeout_s)
    return content or PageContent(page_number=page_number, width=size[0], height=size[1], has_text_layer=False)


def _redraw_blank(doc: DocumentHandle, page_number: int, content: PageContent, dpi: float, settings: Settings,
                  clock: _PageClock, damage: str):
    """Poppler's drawing of a page MuPDF drew blank in a damaged PDF, or None (blank to poppler too,
    or poppler failed: the page stays MuPDF's)."""
    why = f"MuPDF drew it blank ({damage})"
    try:
        _poppler_content(doc, page_number, settings, clock, why, content)
        image = doc.render(page_number, dpi, gray=content.native_gray)
    except (poppler.PopplerError, pdf.PageUnreadable):
        image = None
    if image is None or poppler.blank(image):
        doc.use_mupdf(page_number)
        return None
    return image, why


def _poppler_image(doc: DocumentHandle, page_number: int, dpi: float, content: PageContent, why: str):
    try:
        return doc.render(page_number, dpi, gray=content.native_gray)
    except poppler.PopplerError as exc:
        raise pdf.PageUnreadable(f"{why}; poppler failed too ({exc})") from None


def _page_error(exc: Exception, settings: Settings) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, MemoryError) or "malloc" in str(exc) or "out of memory" in str(exc).lower():
        limit = f"{settings.worker_memory_mb} MB" if settings.worker_memory_mb else "no limit"
        return f"out of memory ({text}; worker limit {limit}, DOCROUTE_WORKER_MEMORY_MB)"
    return text


def read_pages(doc: DocumentHandle, settings: Settings) -> tuple[list[PageResult], list[str]]:
    """Every page through :func:`process_page`; a page that fails is an error, the others go on."""
    pages: list[PageResult] = []
    page_errors: list[str] = []
    for number in range(1, doc.page_count + 1):
        try:
            result, started = process_page(doc, number, settings)
            pages.append(result.model_copy(update={"duration_ms": _ms(started)}))
            if result.renderer == poppler.NAME:  # recovered: the document says what and how
                page_errors.append(f"page {number}: {result.renderer_note}")
        except Exception as exc:  # one bad page must not lose the others
            page_errors.append(f"page {number}: {_page_error(exc, settings)}")
        finally:
            doc.clear_renders()  # a page's pixels are done with once it is read: memory stays flat
    if getattr(doc.doc, "is_repaired", False):
        page_errors.append("the PDF is damaged (MuPDF repaired its structure); content may be missing")
    elif damage := pdf.structure_damage():
        page_errors.append(f"the PDF is damaged (MuPDF could not read part of it: {damage}); content may be missing")
    return pages, page_errors
