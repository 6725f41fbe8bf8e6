"""The layout-engine protocol: which engine's elements a page's output carries.

Every page is first read by PyMuPDF (text layer, graphics) or tesseract (scans); that reading feeds the
router's signals whatever the engine, so routing does not change with ``--parser``. The engine then
decides the page's output elements from the document's bytes (read once, by the caller) and those
pages: ``pymupdf`` keeps the elements of that first reading (blocks, find_tables, figures, ink);
``unstructured`` partitions the text-layer pages with unstructured and has it classify the words
already read on the others (no second OCR). The per-document timeout is the worker pool's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from docroute.extractors import layout_pymupdf
from docroute.schemas import Element, ParsedPage


class LayoutOptions(BaseModel):
    """The layout stage's options, nested in Settings as ``layout`` (``--parser``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    parser: Literal["pymupdf", "unstructured"] = Field("pymupdf", description="the engine whose elements a page's "
                                                       "output carries (routing reads PyMuPDF/tesseract either way)")
    model: Literal["off", "auto", "on"] = Field(
        "auto", description="PyMuPDF's offline layout model: 'auto' runs it only on pages with large pictures "
        "or heavy vector graphics and no ruled table (it costs 0.3-0.9 s a page)",
    )


class LayoutEngine(Protocol):
    name: str

    def elements(
        self, data: bytes, mime_type: str, pages: Sequence[ParsedPage], languages: tuple[str, ...],
    ) -> dict[int, tuple[Element, ...]]: ...


class PyMuPDFEngine:
    name = layout_pymupdf.NAME

    def elements(self, data, mime_type, pages, languages):
        return {p.page_number: p.elements for p in pages}


class UnstructuredEngine:
    name = "unstructured"

    def elements(self, data, mime_type, pages, languages):
        from docroute.extractors import unstructured_engine

        by_page = unstructured_engine.partition_elements(data, mime_type, pages, languages)
        return {n: tuple(els) for n, els in by_page.items()}


ENGINES: dict[str, type[LayoutEngine]] = {"pymupdf": PyMuPDFEngine, "unstructured": UnstructuredEngine}


def get_engine(name: str) -> LayoutEngine:
    try:
        return ENGINES[name]()
    except KeyError:
        raise ValueError(f"unknown layout engine {name!r}; available: {', '.join(ENGINES)}") from None
