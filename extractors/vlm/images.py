"""Images for the VLM: the page render resolution for a pixel budget, Qwen-VL's resize to that budget,
and PNG data URLs. No torch here.

The pipeline renders a page (or a region) at :func:`budget_dpi`, the resolution whose pixel count is
the budget; each backend then fits the image to the budget exactly with :func:`fit_pixels` (the rule
the Qwen-VL processors apply). The fine-tuning export writes its page images the same way.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

MIN_RENDER_DPI = 30.0
MAX_RENDER_DPI = 300.0


def budget_dpi(width_pt: float, height_pt: float, max_pixels: int) -> float:
    """The render dpi (one decimal) at which a ``width_pt`` x ``height_pt`` area is about ``max_pixels``."""
    area = max(1.0, (width_pt / 72.0) * (height_pt / 72.0))
    return round(float(min(MAX_RENDER_DPI, max(MIN_RENDER_DPI, math.sqrt(max_pixels / area)))), 1)


def smart_size(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen-VL's resize rule: sides multiples of ``factor``, area within [min_pixels, max_pixels]."""
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    while h_bar * w_bar > max_pixels and max(h_bar, w_bar) > factor:  # a very long, thin image
        if h_bar >= w_bar:
            h_bar -= factor
        else:
            w_bar -= factor
    return h_bar, w_bar


def fit_pixels(image: Image.Image, min_pixels: int, max_pixels: int, factor: int = 28) -> Image.Image:
    """Resize to the pixel budget (image tokens are the cost), RGB, sides multiples of ``factor``."""
    from PIL import Image as PILImage

    img = image.convert("RGB") if image.mode != "RGB" else image
    w, h = img.size
    if max(w, h) / max(1, min(w, h)) > 150:  # Qwen-VL refuses aspect ratios over 200: pad the short side
        side = max(w, h) // 150 + 1
        canvas = PILImage.new("RGB", (max(w, side), max(h, side)), "white")
        canvas.paste(img, (0, 0))
        img, (w, h) = canvas, canvas.size
    nh, nw = smart_size(h, w, factor, min_pixels, max_pixels)
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), PILImage.Resampling.BICUBIC)
    return img


def png_data_url(image: Image.Image) -> str:
    import base64
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def decode_data_url(url: str) -> Image.Image:
    import base64
    import io

    from PIL import Image as PILImage

    if not url.startswith("data:"):
        raise ValueError("only data: image URLs are accepted (nothing is fetched)")
    _, _, payload = url.partition(",")
    return PILImage.open(io.BytesIO(base64.b64decode(payload))).convert("RGB")
