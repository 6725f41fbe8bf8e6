"""One document, opened once: the per-document handle every stage takes its pages and pixels from.

The planner has already hashed the file (``doc_id``) and read its type from its bytes; the handle
reads the bytes once more to open them (PyMuPDF from memory, with the passwords applied) and keeps
them for an engine that wants the file itself (unstructured). Nothing downstream opens the file again:

- :meth:`DocumentHandle.page` loads a page once;
- :meth:`DocumentHandle.render` renders a page, or a part of it (``clip``), and caches each render
  by page, resolution, colour and clip, so the OCR render, the detectors' figure crops, the VLM's
  page images and crops, ``review``'s field crops and ``inspect`` all come from one place.
- a page MuPDF failed on can be handed to poppler (:meth:`DocumentHandle.use_poppler`): from then on
  its renders come from ``pdftoppm`` (extractors/poppler.py), cropped for a ``clip``, so every stage
  after it (the detectors' crops, the VLM's page image) sees the page poppler drew.

A handle is a resource, not a value: open it with :func:`open_handle` (a context manager) and let it
close with the document.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from docroute.extractors import pdf, poppler
from docroute.schemas import BBox

if TYPE_CHECKING:
    import pymupdf
    from PIL import Image


@dataclass(frozen=True)
class SourceFile:
    """What planning learnt of a file: its doc_id (sha256 of the bytes) and type (from the bytes)."""

    path: Path
    doc_id: str
    size_bytes: int
    mime_type: str | None  # None: not a supported type (``detected`` says what it looks like)
    detected: str


@dataclass
class DocumentHandle:
    source: SourceFile
    data: bytes
    doc: pymupdf.Document
    _pages: dict[int, Any] = field(default_factory=dict, repr=False)
    _renders: dict[tuple, Image.Image] = field(default_factory=dict, repr=False)
    passwords: tuple[str, ...] = field(default=(), repr=False)  # an encrypted PDF's, for poppler
    # pages drawn by poppler: page -> (width, height in points, seconds one poppler call may take)
    _poppler: dict[int, tuple[float, float, float]] = field(default_factory=dict, repr=False)

    @property
    def page_count(self) -> int:
        return self.doc.page_count

    def page(self, number: int) -> pymupdf.Page:
        """Page ``number`` (1-based), loaded once."""
        if number not in self._pages:
            self._pages[number] = self.doc.load_page(number - 1)
        return self._pages[number]

    def render(self, number: int, dpi: float, *, gray: bool = False, clip: BBox | None = None,
               annots: bool = True) -> Image.Image:
        """Page ``number`` (or its ``clip``, in PDF points) at ``dpi``, rendered once per arguments."""
        dpi = round(float(dpi), 1)
        key = (number, dpi, gray, clip, annots)
        if number in self._poppler:
            annots = True  # poppler draws the page as it is
            key = (number, dpi, gray, clip, annots)
            if (number, dpi, gray, None, annots) not in self._renders:
                timeout_s = self._poppler[number][2]
                self._renders[(number, dpi, gray, None, annots)] = poppler.render(
                    self.data, number, dpi, gray=gray, timeout_s=timeout_s, passwords=self.passwords)
        if key not in self._renders:
            whole = self._renders.get((number, dpi, gray, None, annots))
            if clip is not None and whole is not None:  # a part of a page already rendered at this dpi
                s = int(round(dpi)) / 72.0
                self._renders[key] = whole.crop((max(0, int(clip.x0 * s)), max(0, int(clip.y0 * s)),
                                                 min(whole.width, math.ceil(clip.x1 * s)),
                                                 min(whole.height, math.ceil(clip.y1 * s))))
            else:
                self._renders[key] = pdf.render(self.page(number), dpi, gray=gray, clip=clip, annots=annots)
        return self._renders[key]

    def render_at_budget(self, number: int, max_pixels: int, clip: BBox | None = None) -> Image.Image:
        """Page ``number`` (or its ``clip``) in colour at the resolution that fits ``max_pixels``: what
        the VLM is sent, and what the fine-tuning export writes."""
        from docroute.extractors.vlm.images import budget_dpi

        width, height = self.page_size(number)
        box = clip or BBox(x0=0, y0=0, x1=width, y1=height)
        return self.render(number, budget_dpi(box.width, box.height, max_pixels), clip=clip)

    def page_size(self, number: int) -> tuple[float, float]:
        """Page ``number``'s width and height in points (as poppler read it, for a page poppler draws)."""
        if number in self._poppler:
            return self._poppler[number][:2]
        rect = self.page(number).rect
        return rect.width, rect.height

    def use_poppler(self, number: int, size: tuple[float, float], timeout_s: float) -> None:
        """Draw page ``number`` (``size`` points) with poppler from now on, each call within ``timeout_s``."""
        self._poppler[number] = (*size, timeout_s)
        for key in [k for k in self._renders if k[0] == number]:
            del self._renders[key]

    def use_mupdf(self, number: int) -> None:
        """Draw page ``number`` with MuPDF again (poppler did no better)."""
        self._poppler.pop(number, None)
        for key in [k for k in self._renders if k[0] == number]:
            del self._renders[key]

    def renderer(self, number: int) -> str:
        return poppler.NAME if number in self._poppler else "pymupdf"

    def clear_renders(self) -> None:
        """Drop the cached renders (a long document: each page's pixels are needed while it is read)."""
        self._renders.clear()


@contextmanager
def open_handle(source: SourceFile, passwords: Sequence[str] = ()) -> Iterator[DocumentHandle]:
    """Read ``source``'s bytes once and open them; raises :class:`pdf.DocumentOpenError` with the reason."""
    data = source.path.read_bytes()
    with pdf.open_document(source.path, source.mime_type or "", passwords, data=data) as doc:
        handle = DocumentHandle(source=source, data=data, doc=doc, passwords=tuple(passwords))
        try:
            yield handle
        finally:
            handle.clear_renders()
            handle._pages.clear()
