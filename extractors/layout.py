"""The layout-engine protocol: which engine's elements a page's output carries.

Every page is first read by PyMuPDF (text layer, graphics) or tesseract (scans); that reading feeds the
router's signals whatever the engine, so routing does not change with ``--parser``. The engine then
decides the page's output elements: ``pymupdf`` keeps the elements of that first reading (blocks,
find_tables, figures, ink); ``unstructured`` partitions the file with unstructured.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
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
        self, path: Path, mime_type: str, pages: Sequence[ParsedPage], languages: tuple[str, ...],
        timeout_s: float | None,
    ) -> dict[int, tuple[Element, ...]]: ...


class PyMuPDFEngine:
    name = layout_pymupdf.NAME

    def elements(self, path, mime_type, pages, languages, timeout_s):
        return {p.page_number: p.elements for p in pages}


class UnstructuredEngine:
    name = "unstructured"

    def elements(self, path, mime_type, pages, languages, timeout_s):
        from docroute.extractors import unstructured_engine

        by_page = unstructured_engine.partition_elements(
            path, mime_type, {p.page_number: (p.width, p.height) for p in pages},
            {p.page_number for p in pages if p.has_text_layer}, languages=languages, timeout_s=timeout_s,
        )
        return {n: tuple(els) for n, els in by_page.items()}


ENGINES: dict[str, type[LayoutEngine]] = {"pymupdf": PyMuPDFEngine, "unstructured": UnstructuredEngine}


def get_engine(name: str) -> LayoutEngine:
    try:
        return ENGINES[name]()
    except KeyError:
        raise ValueError(f"unknown layout engine {name!r}; available: {', '.join(ENGINES)}") from None
