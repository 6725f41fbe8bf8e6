"""``docroute inspect FILE [--page N] [--out PNG]``: see why a page was routed.

Runs the page through the pipeline's own page step (read, parse, detect, route) and draws on a
rendering of it: layout elements as thin grey boxes, every candidate region the detectors found
(red: routed to the VLM, orange: considered and left on the layout route) with its address,
reason and score, and a header with the page's route, reasons and policy version. The terminal gets
the same decision in words, one line per region with the rule's reason, which is what a person
tuning ``router.*`` thresholds reads beside the picture.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

ROUTED = (215, 25, 32)
CONSIDERED = (245, 140, 0)
ELEMENT = (150, 150, 150)
HEADER_PX = 44


@dataclass(frozen=True)
class Drawn:
    """A box drawn on the inspection image, in its pixels."""

    address: str
    route: str
    box: tuple[int, int, int, int]


@dataclass(frozen=True)
class Inspection:
    page: object  # PageResult
    image_path: Path
    scale: float  # image pixels per PDF point (the header band is above y = HEADER_PX)
    drawn: tuple[Drawn, ...]


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default(size=size)


def _label(draw, xy: tuple[float, float], text: str, colour: tuple[int, int, int], font) -> None:
    x, y = xy
    left, top, right, bottom = draw.textbbox((x, y), text, font=font)
    draw.rectangle((left - 2, top - 1, right + 2, bottom + 1), fill=colour)
    draw.text((x, y), text, fill=(255, 255, 255), font=font)


def render_inspection(doc, result, out: Path, dpi: float = 110.0) -> Inspection:
    """Draw ``result`` (a PageResult of a page of the handle ``doc``) on a rendering of it; write a PNG."""
    from PIL import Image, ImageDraw

    scale = dpi / 72.0
    base = doc.render(result.page_number, dpi).convert("RGB")
    canvas = Image.new("RGB", (base.width, base.height + HEADER_PX), (255, 255, 255))
    canvas.paste(base, (0, HEADER_PX))
    draw = ImageDraw.Draw(canvas)
    small, big = _font(11), _font(14)

    def px(b) -> tuple[int, int, int, int]:
        return (round(b.x0 * scale), round(b.y0 * scale) + HEADER_PX, round(b.x1 * scale), round(b.y1 * scale) + HEADER_PX)

    for e in result.parsed.elements:
        box = px(e.bbox)
        draw.rectangle(box, outline=ELEMENT, width=1)
        draw.text((box[0] + 2, box[1] + 1), e.kind, fill=ELEMENT, font=small)
    decision = result.decision
    drawn: list[Drawn] = []
    # considered regions first, routed ones on top
    for region in sorted(decision.regions, key=lambda r: r.route == "vlm"):
        routed = region.route == "vlm"
        colour = ROUTED if routed else CONSIDERED
        box = px(region.bbox)
        draw.rectangle(box, outline=colour, width=3 if routed else 2)
        _label(draw, (box[0] + 2, max(HEADER_PX, box[1] - 15)),
               f"{region.address} {region.reason} {region.score:.2f} {'VLM' if routed else 'layout'}", colour, small)
        drawn.append(Drawn(region.address, region.route, box))
    head = f"page {result.page_number}: {decision.route.upper()}"
    if decision.reasons:
        head += " (" + ", ".join(f"{r} {decision.scores.get(r, 0):.2f}" for r in decision.reasons) + ")"
    head += f"   policy {decision.policy_version}   send: {decision.vlm_scope}"
    draw.rectangle((0, 0, canvas.width, HEADER_PX - 1), fill=(245, 245, 245))
    draw.text((6, 4), head, fill=ROUTED if decision.route == "vlm" else (0, 110, 0), font=big)
    draw.text((6, 24), "red: routed to the VLM   orange: considered, stays on layout   grey: layout elements",
              fill=(90, 90, 90), font=small)
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
    return Inspection(page=result, image_path=out, scale=scale, drawn=tuple(drawn))


def inspect_file(path: Path, page_number: int = 1, out: Path | None = None, settings=None) -> Inspection:
    """Route one page of ``path`` with the pipeline's page step and draw it (``--password-file`` applies)."""
    from docroute.pipelines.ingest import open_file
    from docroute.pipelines.process import process_page
    from docroute.pipelines.settings import load_settings

    settings = settings or load_settings()
    out = out or Path(f"{path.stem}.p{page_number}.inspect.png")
    with open_file(path, settings.passwords()) as doc:
        if not 1 <= page_number <= doc.page_count:
            raise ValueError(f"{path} has {doc.page_count} page(s); --page {page_number} is not one of them")
        result, _ = process_page(doc, page_number, settings)
        return render_inspection(doc, result, out)


def describe(inspection: Inspection) -> str:
    """The decision in words: the page, then one line per candidate region."""
    result = inspection.page
    d = result.decision
    lines = [f"page {result.page_number}: route {d.route}" + (f" ({', '.join(d.reasons)})" if d.reasons else "")
             + f", policy {d.policy_version}, VLM input: {d.vlm_scope}", f"  {d.explanation}"]
    for r in sorted(d.regions, key=lambda r: (r.route != "vlm", r.address)):
        b = r.bbox
        lines.append(f"  {'VLM   ' if r.route == 'vlm' else 'layout'} {r.address:<22} {r.reason:<19} score {r.score:.2f}"
                     f"  [{b.x0:.0f},{b.y0:.0f},{b.x1:.0f},{b.y1:.0f}]  {r.why}")
    keys = ("words", "ocr_mean_conf", "ocr_p10_conf", "ocr_unread_print", "table_score_max", "chart_score_max",
            "handwriting_score_max", "detect_ms")
    signals = result.signals.as_map()
    lines.append("  signals: " + ", ".join(f"{k}={signals[k]:g}" for k in keys if k in signals))
    lines.append(f"  picture: {inspection.image_path}")
    return "\n".join(lines)


def inspect_command(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="a PDF or image")],
    page: Annotated[int, typer.Option("--page", "-p", min=1, help="page number (1-based)")] = 1,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="PNG to write (default FILE.pN.inspect.png)")] = None,
    password_file: Annotated[Path | None, typer.Option("--password-file", exists=True, dir_okay=False,
                                                       help="passwords for encrypted PDFs, one per line")] = None,
) -> None:
    """Draw a page's elements and the router's regions with reasons and scores (for tuning thresholds)."""
    from pydantic import ValidationError

    from docroute.pipelines.settings import SettingsError, load_settings

    try:
        settings = load_settings(password_file=password_file.resolve() if password_file else None)
    except (SettingsError, ValidationError) as exc:
        typer.secho(f"error: invalid settings: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    try:
        inspection = inspect_file(file, page, out, settings)
    except (ValueError, OSError) as exc:  # not a document, a bad --page, an encrypted PDF without its password
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    typer.echo(describe(inspection))
