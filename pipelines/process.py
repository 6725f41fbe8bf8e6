"""``process_document(path, settings) -> DocumentResult``: the whole pipeline for one file.

ingest -> pages (PyMuPDF; tesseract for pages without a text layer) -> layout parse -> signals ->
route -> fields (layout route) -> VLM stage (routed pages) -> validate. Document problems never raise:
they come back as a ``failed`` (or ``partial``) result carrying the reason.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from docroute import PIPELINE_VERSION
from docroute.extractors import detect, layout, layout_pymupdf, ocr, pdf
from docroute.extractors.document import DocumentHandle, SourceFile, open_handle
from docroute.extractors.layout import LayoutOptions
from docroute.pipelines import route
from docroute.pipelines.budget import apply_budgets
from docroute.pipelines.context import RunContext
from docroute.pipelines.ingest import display_path, ingest, unreadable_id
from docroute.pipelines.redact import redact
from docroute.pipelines.settings import Settings
from docroute.pipelines.validate import build_extraction
from docroute.pipelines.vlm import run_vlm_stage
from docroute.schemas import Document, DocumentResult, Extraction, FieldValue, PageResult, ParsedPage
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
        "docroute reads PDF, PNG, JPEG and TIFF (the type comes from the content, not the file name)"
    )


def process_page(doc: DocumentHandle, page_number: int, settings: Settings) -> tuple[PageResult, float]:
    """One page through pages -> parse -> signals -> route. Returns the page and its start time."""
    t0 = time.perf_counter()
    page = doc.page(page_number)
    content = pdf.read_page(page, page_number)
    image = dpi = None
    if content.has_text_layer:
        parsed = layout_pymupdf.parse_page(page, content, content.words, ocr=False, layout_model=settings.layout.model)
    else:
        dpi = pdf.render_dpi(content)
        image = doc.render(page_number, dpi, gray=content.native_gray)
        words = ocr.ocr_words(image, dpi, settings.ocr)
        parsed = layout_pymupdf.parse_page(page, content, words, ocr=True)

    def clip(box, clip_dpi: float):
        return doc.render(page_number, clip_dpi, clip=box, annots=False)

    found = detect.detect_page(content, parsed, image, dpi, render=clip)
    decision = route.decide(found.signals, settings.router, found.regions, page_number)
    return PageResult(parsed=parsed, signals=found.signals, decision=decision), t0


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


def _extract_fields(schema: type[TargetSchema], parsed: list[ParsedPage]) -> tuple[dict[str, FieldValue], list[str]]:
    """Layout-path fields (extractors/fields: the invoice rules for ``invoice``, the schema-driven
    extractor for any other schema, whose labels, types and tables come from the model)."""
    from docroute.extractors.fields import extract, schema_fields

    if schema.schema_name in VLM_ONLY or not schema_fields(schema):
        return {}, [f"no_layout_extractor:{schema.schema_name}"]
    return extract(schema, parsed), []


def _page_error(exc: Exception, settings: Settings) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, MemoryError) or "malloc" in str(exc) or "out of memory" in str(exc).lower():
        limit = f"{settings.worker_memory_mb} MB" if settings.worker_memory_mb else "no limit"
        return f"out of memory ({text}; worker limit {limit}, DOCROUTE_WORKER_MEMORY_MB)"
    return text


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
        return _failed(base, f"cannot read the file: {exc.strerror or exc}; check it exists and is readable", t0)


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
            pages = apply_budgets(pages, settings.router, document.doc_id, context.budget_file)
            routed = [p.page_number for p in pages if p.decision.route == "vlm"]
            fields, extra = _extract_fields(schema, [p.parsed for p in pages])
            vlm = run_vlm_stage(doc, pages, schema, settings.vlm, layout_fields=fields)
    except OSError as exc:  # the file went away or became unreadable after planning
        return _failed(document, f"cannot read the file: {exc.strerror or exc}; check it exists and is readable", t0)
    except pdf.DocumentOpenError as exc:
        return _failed(document, str(exc), t0)
    extraction: Extraction = build_extraction(
        schema, fields, routed_pages=routed, vlm_status=vlm.status, model=vlm.model, extra_reasons=extra,
        vlm_fields=vlm.fields or None, raw_extra={"vlm_call": vlm.raw} if vlm.raw else None,
    )
    status = "partial" if page_errors else "ok"
    result = DocumentResult(
        document=document, status=status, error="; ".join(page_errors) or None, pages=tuple(vlm.pages),
        extractions=(extraction, *vlm.extra), processed_at=datetime.now(UTC), duration_ms=_ms(t0),
        pipeline_version=PIPELINE_VERSION,
    )
    return redact(result, settings.redact)


def _read_pages(doc: DocumentHandle, settings: Settings) -> tuple[list[PageResult], list[str]]:
    """Every page through :func:`process_page`; a page that fails is an error, the others go on."""
    pages: list[PageResult] = []
    page_errors: list[str] = []
    for number in range(1, doc.page_count + 1):
        try:
            result, started = process_page(doc, number, settings)
            pages.append(result.model_copy(update={"duration_ms": _ms(started)}))
        except Exception as exc:  # one bad page must not lose the others
            page_errors.append(f"page {number}: {_page_error(exc, settings)}")
        finally:
            doc.clear_renders()  # a page's pixels are done with once it is read: memory stays flat
    if getattr(doc.doc, "is_repaired", False):
        page_errors.append("the PDF is damaged (MuPDF repaired its structure); content may be missing")
    elif damage := pdf.structure_damage():
        page_errors.append(f"the PDF is damaged (MuPDF could not read part of it: {damage}); content may be missing")
    return pages, page_errors
