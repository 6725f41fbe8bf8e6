"""``process_document(source, settings, context) -> DocumentResult``: the whole pipeline for one file.

The planned source (doc_id and type read off its bytes when the run planned) is opened once
(extractors/document.py) and every stage works from that handle: pages (PyMuPDF; tesseract for pages
without a text layer) -> layout parse -> signals -> route -> fields (layout route) -> route again
(policy v3: doubtful fields escalate their pages) -> budgets -> VLM stage (routed pages) -> validate.
Document problems never raise: they come back as a ``failed`` (or ``partial``) result carrying the
reason.

The page loop (renderers, poppler fallback, the page's budget) is :mod:`.pages`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from docroute import PIPELINE_VERSION
from docroute.extractors import doctype as doctype_mod
from docroute.extractors import layout, layout_pymupdf, pdf
from docroute.extractors.document import DocumentHandle, SourceFile, open_handle
from docroute.extractors.layout import LayoutOptions
from docroute.pipelines import machine, route
from docroute.pipelines.budget import apply_budgets
from docroute.pipelines.context import RunContext
from docroute.pipelines.ingest import XML_MIME, display_path, ingest, unreadable_id
from docroute.pipelines.pages import process_page, read_pages  # noqa: F401  (process_page: one import for callers)
from docroute.pipelines.redact import redact
from docroute.pipelines.settings import Settings
from docroute.pipelines.validate import build_extraction, extraction_problems, merge_fields
from docroute.pipelines.vlm import run_vlm_stage
from docroute.schemas import (
    Document,
    DocumentResult,
    DocumentType,
    Extraction,
    FieldValue,
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
    types and tables come from the model). Invoice fields' confidences are calibrated
    (extractors/fields/calibration.py: the probability of being right)."""
    from docroute.extractors.fields import extract, schema_fields
    from docroute.extractors.fields.calibration import calibrate_fields

    if schema.schema_name in VLM_ONLY or not schema_fields(schema):
        return {}, [f"no_layout_extractor:{schema.schema_name}"]
    fields = extract(schema, parsed, kind)
    return (calibrate_fields(fields) if schema.schema_name == "invoice" else fields), []


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
            pages, page_errors = read_pages(doc, settings)
            if not pages:
                return _failed(document, "; ".join(page_errors) or "no page could be read", t0)
            if settings.layout.parser != layout_pymupdf.NAME:
                try:
                    pages = _with_engine(pages, doc, settings.layout, settings.ocr.languages)
                except Exception as exc:  # the document keeps PyMuPDF's elements and says so
                    page_errors.append(f"{settings.layout.parser} parser failed, kept PyMuPDF elements: "
                                       f"{type(exc).__name__}: {exc}")
            read = machine.read(doc, pages) if schema.schema_name == "invoice" else machine.MachineRead()
            covered = machine.covers_document(read)
            if covered:  # before the budgets: these pages take none of the run's VLM pages
                pages = [_not_for_vlm(p) for p in pages]
            doctype = doctype_mod.classify([p.parsed for p in pages])
            applies = bool(read.found) or doctype_mod.schema_applies(schema.schema_name, doctype)  # an e-invoice is one
            fields, extra = (_extract_fields(schema, [p.parsed for p in pages], doctype_mod.field_rules(doctype)) if applies
                             else ({}, []))
            if not applies and doctype.confidence < doctype_mod.NOT_APPLICABLE_MIN_CONFIDENCE:
                extra = ["document_type_uncertain"]  # maybe a bill after all: a person decides
            if applies and not covered and not extra and settings.router.escalate_after_extraction:
                pages = _escalate(pages, schema, fields)  # policy v3: the second routing step
            pages = apply_budgets(pages, settings.router, document.doc_id, context.budget_file)
            routed = [p.page_number for p in pages if p.decision.route == "vlm"]
            vlm = run_vlm_stage(doc, pages, schema, settings.vlm, layout_fields=fields, document_call=applies)
            if any(route.ESCALATION in p.decision.reasons for p in pages) and vlm.status != "ok":
                extra = [*extra, route.ESCALATION]  # no VLM (or none left in the budget): the layout result, flagged
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


def _escalate(pages: list[PageResult], schema: type[TargetSchema], fields: dict[str, FieldValue]) -> list[PageResult]:
    """Router policy v3 after the layout path's fields (route.escalate): doubtful fields send their pages."""
    problems = extraction_problems(schema, fields)
    decisions = route.escalate([p.decision for p in pages], problems, [p.page_number for p in pages])
    return [p if p.decision is d else p.model_copy(update={"decision": d}) for p, d in zip(pages, decisions, strict=True)]


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
