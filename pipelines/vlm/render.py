"""Pixels for the VLM stage through one callable: ``render(page_number, bbox, max_pixels)`` gives the
page (``bbox`` None) or a crop of it (``bbox`` in PDF points), rendered at the dpi that fits
``max_pixels``. :func:`handle_renderer` takes them from the document's handle and its render cache."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from docroute.extractors.document import DocumentHandle
from docroute.schemas import BBox

if TYPE_CHECKING:
    from PIL import Image

Render = Callable[[int, BBox | None, int], "Image.Image"]


def handle_renderer(doc: DocumentHandle) -> Render:
    """Pages and crops from the open document, each at the resolution that fits the pixel budget."""

    def render(n: int, bbox: BBox | None, max_pixels: int) -> Image.Image:
        return doc.render_at_budget(n, max_pixels, bbox)

    return render
