"""``process_document(source, settings, context) -> DocumentResult``: the whole pipeline for one file.

The planned source (doc_id and type read off its bytes when the run planned) is opened once
(extractors/document.py) and every stage works from that handle: pages (PyMuPDF; tesseract for pages
without a text layer) -> layout parse -> signals -> route -> fields (layout route) -> VLM stage
(routed pages) -> validate. Document problems never raise: they come back as a ``failed`` (or
``partial``) result carrying the reason.

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
from datetime import UTC, datetime
from pathlib import Path

from docroute import PIPELINE_VERSION
from docroute.extractors import detect, layout, layout_pymupdf, ocr, pdf, poppler
from docroute.extractors import doctype as doctype_mod
from docroute.extractors.document import DocumentHandle, SourceFile, open_handle
from docroute.extractors.layout import LayoutOptions
from docroute.pipelines import machine, route
from docroute.pipelines.budget import apply_budgets
from docroute.pipelines.context import RunContext
from docroute.pipelines.ingest import XML_MIME, display_path, ingest, unreadable_id
from docroute.pipelines.redact import redact
from docroute.pipelines.settings import Settings
from docroute.pipelines.validate import build_extraction, merge_fields
from docroute.pipelines.vlm import run_vlm_stage
from docroute.schemas import (
    Document,
    DocumentResult,
    DocumentType,
    Extraction,
    FieldValue,
    PageContent,
    PageResult,
    ParsedPage,
)
from docroute.schemas.registry import get_schema
from docroute.schemas.targets import TargetSchema


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 2)


def _failed(document: Document, error: str, t0: float) -> DocumentResult:
    return DocumentResult(
        document=document, status="failed", error=error, processed_at=datetime.now(UTC),
        duration_ms=_ms(t0), pipeline_version=PIPELINE_VERSION,
    )


def _unsupported_message(src: SourceFile) -> str:
    if src.size_bytes == 0:
        return "the file is empty (0 bytes); re-export or re-download it"
    return (
        f"not a supported document type: the bytes look like {src.detected}; "
        "docroute reads PDF, PNG, JPEG, TIFF and CII/UBL invoice XML (the type comes from the content, "
        "not the file name)"
    )


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
        try:
            words = ocr.ocr_words(image, dpi, clock.ocr(settings.ocr))
        except ocr.OcrError:  # tesseract cut short by the page's budget: say so
            clock.check("OCR")
            raise
        clock.check("OCR")
        parsed = layout_pymupdf.parse_page(page, content, words, ocr=True)

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


def _with_engine(pages: list[PageResult], doc: DocumentHandle, options: LayoutOptions,
                 languages: tuple[str, ...]) -> list[PageResult]:
    """Give each page the elements of the configured layout engine (see extractors/layout.py)."""
    engine = layout.get_engine(options.parser)
    by_page = engine.elements(doc.data, doc.source.mime_type or "", [p.parsed for p in pages], languages)
    return [
        p.model_copy(update={"parsed": p.parsed.model_copy(
            update={"elements": by_page.get(p.page_number, ()), "parser": engine.name})})
        for p in pages
    ]


VLM_ONLY = ("table", "chart", "handwriting")  # built-in schemas that only the VLM path fills


def _extract_fields(schema: type[TargetSchema], parsed: list[ParsedPage],
                    kind: str = "invoice") -> tuple[dict[str, FieldValue], list[str]]:
    """Layout-path fields (extractors/fields: the invoice rules for ``invoice``, with the receipt rules
    for a document typed ``receipt``; the schema-driven extractor for any other schema, whose labels,
    types and tables come from the model)."""
    from docroute.extractors.fields import extract, schema_fields

    if schema.schema_name in VLM_ONLY or not schema_fields(schema):
        return {}, [f"no_layout_extractor:{schema.schema_name}"]
    return extract(schema, parsed, kind), []


def _page_error(exc: Exception, settings: Settings) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, MemoryError) or "malloc" in str(exc) or "out of memory" in str(exc).lower():
        limit = f"{settings.worker_memory_mb} MB" if settings.worker_memory_mb else "no limit"
        return f"out of memory ({text}; worker limit {limit}, DOCROUTE_WORKER_MEMORY_MB)"
    return text


def _unreadable(exc: OSError) -> str:
    return f"cannot read the file: {exc.strerror or exc}; check it exists and is readable"


def _source(source: Path | SourceFile, t0: float) -> SourceFile | DocumentResult:
    """The planned source as it is; a path (library use, ``inspect``) ingested here; or a failed row."""
    if isinstance(source, SourceFile):
        return source
    try:
        return ingest(source)
    except OSError as exc:
        base = Document(doc_id=unreadable_id(source), source_path=display_path(source),
                        file_name=display_path(source.name), mime_type="application/octet-stream",
                        size_bytes=0, n_pages=0)
        return _failed(base, _unreadable(exc), t0)


def process_document(source: Path | SourceFile, settings: Settings, context: RunContext | None = None, *,
                     schema: type[TargetSchema] | None = None) -> DocumentResult:
    """One document: ``source`` as planned (doc_id and type already read off its bytes) or a path.

    ``schema`` (a class) overrides ``settings.schema_name``: ``docroute.extract`` passes a model that
    need not be importable by name (one defined in a notebook)."""
    t0 = time.perf_counter()
    src = _source(source, t0)
    if isinstance(src, DocumentResult):
        return src
    context = context or RunContext()
    document = Document(doc_id=src.doc_id, source_path=display_path(src.path), file_name=display_path(src.path.name),
                        mime_type=src.mime_type or "application/octet-stream", size_bytes=src.size_bytes, n_pages=0)
    if src.mime_type is None:
        return _failed(document, _unsupported_message(src), t0)
    schema = schema or get_schema(settings.schema_name)
    if src.mime_type == XML_MIME:
        return _process_xml(src, document, schema, settings, t0)
    try:
        with open_handle(src, settings.passwords()) as doc:
            document = document.model_copy(update={"n_pages": doc.page_count})
            if doc.page_count > settings.max_pages:
                return _failed(document, f"the document has {doc.page_count} pages, over the limit of "
                               f"{settings.max_pages} (DOCROUTE_MAX_PAGES); raise it to read this file", t0)
            pages, page_errors = _read_pages(doc, settings)
            if not pages:
                return _failed(document, "; ".join(page_errors) or "no page could be read", t0)
            if settings.layout.parser != layout_pymupdf.NAME:
                try:
                    pages = _with_engine(pages, doc, settings.layout, settings.ocr.languages)
                except Exception as exc:  # the document keeps PyMuPDF's elements and says so
                    page_errors.append(f"{settings.layout.parser} parser failed, kept PyMuPDF elements: "
                                       f"{type(exc).__name__}: {exc}")
            read = machine.read(doc, pages) if schema.schema_name == "invoice" else machine.MachineRead()
            if machine.covers_document(read):  # before the budgets: these pages take none of the run's VLM pages
                pages = [_not_for_vlm(p) for p in pages]
            pages = apply_budgets(pages, settings.router, document.doc_id, context.budget_file)
            routed = [p.page_number for p in pages if p.decision.route == "vlm"]
            doctype = doctype_mod.classify([p.parsed for p in pages])
            applies = bool(read.found) or doctype_mod.schema_applies(schema.schema_name, doctype)  # an e-invoice is one
            fields, extra = (_extract_fields(schema, [p.parsed for p in pages], doctype.kind) if applies
                             else ({}, []))
            if not applies and doctype.confidence < doctype_mod.NOT_APPLICABLE_MIN_CONFIDENCE:
                extra = ["document_type_uncertain"]  # maybe a bill after all: a person decides
            vlm = run_vlm_stage(doc, pages, schema, settings.vlm, layout_fields=fields, document_call=applies)
    except OSError as exc:  # the file went away or became unreadable after planning
        return _failed(document, _unreadable(exc), t0)
    except pdf.DocumentOpenError as exc:
        return _failed(document, str(exc), t0)
    if read.found:
        printed = merge_fields(fields, vlm.fields)[0] if vlm.fields else fields
        extra += machine.validation_reasons(read) + machine.cross_check(printed, read, pages)
    extraction: Extraction = build_extraction(
        schema, fields, routed_pages=routed, vlm_status=vlm.status, model=vlm.model, extra_reasons=extra,
        vlm_fields=vlm.fields or None,
        raw_extra=({"vlm_call": vlm.raw} if vlm.raw else {}) | read.raw() or None,
        machine_fields=machine.machine_fields(read) or None,
        not_applicable=None if applies else doctype.kind,
    )
    status = "partial" if page_errors else "ok"
    result = DocumentResult(
        document=document, status=status, error="; ".join(page_errors) or None, pages=tuple(vlm.pages),
        extractions=(extraction, *vlm.extra), processed_at=datetime.now(UTC), duration_ms=_ms(t0),
        pipeline_version=PIPELINE_VERSION, document_type=doctype,
    )
    return redact(result, settings.redact)


def _not_for_vlm(page: PageResult) -> PageResult:
    """A page of a document whose embedded e-invoice gives every field: not sent to the VLM."""
    d = page.decision
    if d.route != "vlm":
        return page
    why = "; not sent to the VLM: the embedded e-invoice gives the document's fields"
    return page.model_copy(update={"decision": d.model_copy(update={
        "route": "layout", "vlm_scope": "none", "explanation": d.explanation + why})})


def _process_xml(src: SourceFile, document: Document, schema, settings: Settings, t0: float) -> DocumentResult:
    """A bare CII or UBL invoice: one document, no pages; its fields all come from the XML."""
    from docroute.extractors import einvoice

    if schema.schema_name != "invoice":
        return _failed(document, f"an XML e-invoice is read into the invoice schema, not {schema.schema_name}", t0)
    try:
        data = src.path.read_bytes()
        inv = einvoice.parse(data)
    except OSError as exc:
        return _failed(document, f"cannot read the file: {exc.strerror or exc}; check it exists and is readable", t0)
    except einvoice.EInvoiceError as exc:
        return _failed(document, f"not a readable e-invoice: {exc}", t0)
    read = machine.MachineRead(einvoice=einvoice.checked(inv, data))
    extraction = build_extraction(schema, {}, extra_reasons=machine.validation_reasons(read),
                                  raw_extra=read.raw(), machine_fields=machine.machine_fields(read))
    result = DocumentResult(document=document, status="ok", extractions=(extraction,),
                            processed_at=datetime.now(UTC), duration_ms=_ms(t0), pipeline_version=PIPELINE_VERSION,
                            document_type=DocumentType(kind="invoice", confidence=1.0, evidence={"einvoice_xml": 1.0}))
    return redact(result, settings.redact)


def _read_pages(doc: DocumentHandle, settings: Settings) -> tuple[list[PageResult], list[str]]:
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
