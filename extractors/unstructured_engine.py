"""The second layout engine: ``unstructured`` (open source), run fully offline, OCR-free.

``partition_elements(data, mime_type, pages, languages)`` returns our ``Element`` values per page for
one document given as bytes (nothing is read from a path), with bboxes in PDF points, top-left origin.
``pages`` are the document's ``ParsedPage`` values from docroute's page step, which has already read
every page: PyMuPDF's text layer, or tesseract for the pages that have none.

* Pages with a text layer (PDF): unstructured's ``fast`` strategy (pdfminer) over the document's bytes,
  keeping the elements of those pages. Source ``unstructured:fast``, confidence 1.0. The boxes are
  mapped onto our (cropbox) pages in ``unstructured_coords``.
* Pages without one (scans, photos, every image file): tesseract already read them in the page step, so
  they are not OCRed again. Each OCR paragraph (``Word.block``) becomes one text that unstructured
  classifies with ``unstructured.partition.text.element_from_text``, the classifier its own
  ``ocr_only`` strategy applies to its OCR text (list items, addresses, narrative text, titles), given
  the paragraph's position as ``fast`` gives it (headers and footers by position). Source ``unstructured:ocr``; confidence: the paragraph's mean tesseract word
  confidence. This is the simplest choice that keeps the engine's meaning (unstructured's element
  categories) without a second OCR: relabelling PyMuPDF's elements as unstructured's would claim
  what unstructured did not do, and re-running unstructured's OCR doubles the cost of every scan.
* unstructured's ``fast`` path catches every exception of its pdfminer pass and returns nothing. An
  empty ``fast`` result is therefore re-checked: if unstructured refuses the PDF as too complex for
  pdfminer (``is_pdf_too_complex``: many vector-graphics operators or oversized content streams, e.g.
  docling's amt_handbook_sample.pdf) every page is built from the page step's words as above (source
  ``unstructured:words`` for text-layer words), with a warning; otherwise its pdfminer pass is re-run
  outside that try/except, so a real failure surfaces as ``UnstructuredError``.

unstructured's ``hi_res`` strategy is not used: it OCRs every page itself, and its layout model is
not installed with this project.

Offline spaCy. unstructured's text classifier (``unstructured.nlp.tokenize``) loads the spaCy model
``en_core_web_sm`` and, when it is missing, downloads and pip-installs it at run time; offline that
fails, and unstructured's fast path swallows the exception, so a PDF silently comes back with no
elements. When the model is installed we leave unstructured alone. When it is not,
:func:`ensure_nlp_pipeline` sets ``unstructured.nlp.tokenize._get_nlp`` (the loader that module calls
by global name; there is no public switch, and ``spacy.load`` finds only installed packages) to
``spacy.blank("en")`` + ``sentencizer``, both shipped with spaCy. Without a tagger no token carries a
part-of-speech tag, so unstructured's ``contains_verb`` is always false: a one-sentence paragraph of
at most 12 words comes out as a Title instead of NarrativeText (elements of two or more sentences do
not depend on tags). Nothing downstream reads that distinction. Installing the official model
(``python -m spacy download en_core_web_sm``) restores unstructured's reference classification.

Environment. Importing this module sets ``HF_HUB_OFFLINE=1`` (``os.environ.setdefault``: an explicit
setting wins; ``huggingface_hub`` reads it once, at import); just before unstructured is first imported
it also sets ``DO_NOT_TRACK=1`` (unstructured's telemetry ping and its ``nvidia-smi`` probe) and
``UNSTRUCTURED_DISABLE_NOTICE=1`` (a commercial notice logged at WARNING). unstructured itself is
imported lazily (``import unstructured.partition.pdf`` takes 5-8 s), so importing this module is cheap.
The per-document timeout is the worker pool's.
"""

from __future__ import annotations

import io
import logging
import os
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from docroute.extractors.unstructured_coords import element_bbox, pdfminer_frames
from docroute.schemas import BBox, Element, ElementKind, ParsedPage, Word

# Must precede any import of huggingface_hub (it reads the variable once, at import).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

logger = logging.getLogger(__name__)

NAME = "unstructured"
SPACY_MODEL = "en_core_web_sm"
PDF_MIME = "application/pdf"
IMAGE_MIMES = frozenset(
    {"image/png", "image/jpeg", "image/jpg", "image/tiff", "image/bmp", "image/webp", "image/heic"}
)

# The categories of ``element_from_text``, which classifies both fast's pdfminer text and our words.
_KIND_BY_CATEGORY: dict[str, ElementKind] = {
    "Title": "title",
    "NarrativeText": "text",
    "UncategorizedText": "text",
    "Address": "text",
    "EmailAddress": "text",
    "ListItem": "list_item",
    "Header": "header",
    "Footer": "footer",
}
_HINT = (
    "check that the PDF opens and has a text layer; for details set "
    "logging.getLogger('unstructured').setLevel(logging.DEBUG); or use the pymupdf engine"
)


class UnstructuredError(RuntimeError):
    """unstructured failed on a document; the message says what to do."""


def ensure_nlp_pipeline() -> str:
    """Make unstructured's text classifier work offline; return which spaCy pipeline it uses.

    ``"en_core_web_sm"`` when that model is installed (unstructured's loader is left alone), else
    ``"blank-en"``: ``spacy.blank("en")`` + ``sentencizer`` is set as unstructured's loader. Idempotent.
    """
    _prepare_unstructured_env()
    import spacy
    import unstructured.nlp.tokenize as tokenize

    if spacy.util.is_package(SPACY_MODEL):
        return SPACY_MODEL
    if not getattr(tokenize._get_nlp, "_docroute_blank", False):
        nlp = spacy.blank("en")
        nlp.add_pipe("sentencizer")

        def _get_nlp() -> Any:
            return nlp

        _get_nlp._docroute_blank = True  # type: ignore[attr-defined]
        tokenize._get_nlp = _get_nlp
        logger.info("spaCy model %s is not installed: unstructured classifies text with spacy.blank('en') "
                    "+ sentencizer (no part-of-speech tags)", SPACY_MODEL)
    return "blank-en"


def _prepare_unstructured_env() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("UNSTRUCTURED_DISABLE_NOTICE", "1")


def _call(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except UnstructuredError:
        raise
    except Exception as exc:
        raise UnstructuredError(
            f"unstructured (fast) failed: {type(exc).__name__}: {exc}. What to do: {_HINT}."
        ) from exc


def _partition_fast(data: bytes, languages: tuple[str, ...]) -> list[Any] | None:
    """``fast`` elements; ``None`` when unstructured refuses the PDF as too complex for pdfminer."""
    from unstructured.partition.pdf import extractable_elements, is_pdf_too_complex, partition_pdf

    elements = _call(lambda: partition_pdf(file=io.BytesIO(data), strategy="fast", languages=list(languages)))
    if elements:
        return elements
    # unstructured's fast path catches every exception of its pdfminer pass and returns nothing.
    # Tell a real failure from a genuinely empty result.
    if _call(lambda: is_pdf_too_complex(file=io.BytesIO(data))):
        # A heuristic (many vector-graphics operators, or content streams over its CVE caps) under
        # which unstructured never runs pdfminer.
        return None
    # Re-running the pdfminer pass outside unstructured's try/except lets its exception surface.
    pages = _call(lambda: extractable_elements(file=io.BytesIO(data), languages=list(languages)))
    if any(el.text.strip() for page in pages for el in page):
        raise UnstructuredError(
            f"unstructured's fast strategy returned no elements although pdfminer reads text. What to do: {_HINT}."
        )
    return []


def _append(out: list[Element], page: int, item: Any, bbox: BBox, confidence: float, source: str) -> None:
    """Add one unstructured element; ids are ``/page/{n}/{kind}/{i}``, counted per kind in reading order."""
    kind = _KIND_BY_CATEGORY.get(getattr(item, "category", ""), "other")
    text = (item.text or "").strip()
    if text:
        index = 1 + sum(1 for el in out if el.kind == kind)
        out.append(Element(element_id=f"/page/{page}/{kind}/{index}", page_number=page, kind=kind, text=text,
                           bbox=bbox, confidence=min(max(confidence, 0.0), 1.0), source=source))


def _from_words(page: ParsedPage, out: list[Element]) -> None:
    """The page step's words, one text per paragraph (``Word.block``), classified by unstructured."""
    from unstructured.documents.coordinates import PixelSpace
    from unstructured.partition.text import element_from_text

    blocks: dict[int, list[Word]] = {}
    for word in page.words:  # in reading order (tesseract's, or the text layer's)
        blocks.setdefault(word.block, []).append(word)
    system = PixelSpace(width=page.width, height=page.height)  # top-left origin, in points
    for words in blocks.values():
        box = BBox.enclosing([w.bbox for w in words])
        corners = ((box.x0, box.y0), (box.x0, box.y1), (box.x1, box.y1), (box.x1, box.y0))
        el = element_from_text(" ".join(w.text for w in words), corners, system)
        source = "ocr" if all(w.source == "ocr" for w in words) else "words"
        _append(out, page.page_number, el, box, statistics.fmean(w.confidence for w in words), f"{NAME}:{source}")


def partition_elements(
    data: bytes, mime_type: str, pages: Sequence[ParsedPage], languages: tuple[str, ...] = ("eng",),
) -> dict[int, list[Element]]:
    """Partition one document (its bytes) with unstructured; elements per page of ``pages``.

    Every page of ``pages`` is a key of the result, possibly with no elements. No OCR runs here.
    Raises ``UnstructuredError`` (saying what to do) when unstructured fails, ``ValueError`` for a
    type it does not read.
    """
    mime = (mime_type or "").lower()
    if mime != PDF_MIME and mime not in IMAGE_MIMES:
        raise ValueError(f"the unstructured engine reads PDFs and images, not {mime_type!r}")
    languages = tuple(languages) or ("eng",)
    by_number = {p.page_number: p for p in sorted(pages, key=lambda p: p.page_number)}
    out: dict[int, list[Element]] = {number: [] for number in by_number}
    text_pages = {p.page_number for p in pages if p.has_text_layer} if mime == PDF_MIME else set()
    word_pages = sorted(set(by_number) - text_pages)
    _load_unstructured(pdf=bool(text_pages))
    if text_pages:
        raw = _partition_fast(data, languages)
        if raw is None:
            logger.warning("unstructured judges the PDF too complex for fast text extraction (vector drawings "
                           "or oversized content streams); classifying the page step's words instead")
            word_pages = sorted(by_number)
        else:
            frames = _call(lambda: pdfminer_frames(data))
            for item in raw:
                number = int(item.metadata.page_number or 1)
                if number not in text_pages:
                    continue
                page = by_number[number]
                bbox = element_bbox(item, page.width, page.height, frames.get(number))
                _append(out[number], number, item, bbox, 1.0, f"{NAME}:fast")
    for number in word_pages:
        _from_words(by_number[number], out[number])
    return out


def _load_unstructured(pdf: bool) -> None:
    """Import unstructured's partitioners with an offline spaCy pipeline in place, or fail clearly."""
    try:
        ensure_nlp_pipeline()
        import unstructured.nlp.tokenize as tokenize

        # Load it now: inside partition_pdf(fast) a failure here is swallowed and yields no elements.
        tokenize._get_nlp()
    except Exception as exc:
        raise UnstructuredError(
            f"unstructured's spaCy pipeline could not be loaded: {type(exc).__name__}: {exc}. What to do: "
            f"install the official {SPACY_MODEL} wheel, or uninstall a broken copy so that spacy.blank('en') "
            "is used."
        ) from exc
    try:
        import unstructured.partition.text  # noqa: F401

        if pdf:
            import unstructured.partition.pdf  # noqa: F401
    except Exception as exc:
        raise UnstructuredError(
            f"unstructured's partitioner could not be imported: {type(exc).__name__}: {exc}. What to do: "
            "reinstall the project's environment (unstructured, pdfminer.six, pikepdf, pi-heif)."
        ) from exc
