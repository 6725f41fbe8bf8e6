"""``docroute inspect``: the picture a person tunes thresholds with shows the boxes where the detectors put them."""

from __future__ import annotations

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from docroute.flows.cli import app
from docroute.flows.inspector import HEADER_PX, ROUTED, inspect_file
from docroute.pipelines.settings import Settings

from conftest import SAMPLES


def _is_routed_colour(pixel) -> bool:
    return all(abs(int(a) - b) <= 40 for a, b in zip(pixel, ROUTED, strict=True))


def test_inspect_draws_routed_regions_where_the_detector_put_them(tmp_path):
    out = tmp_path / "chart.png"
    inspection = inspect_file(SAMPLES / "chart.pdf", 1, out, Settings(workers=1))
    decision = inspection.page.decision
    routed = [r for r in decision.regions if r.route == "vlm"]
    assert routed, "the sample chart is routed"
    image = np.asarray(Image.open(out).convert("RGB"))
    s = inspection.scale
    for region in routed:
        drawn = next(d for d in inspection.drawn if d.address == region.address)
        b = region.bbox
        want = (round(b.x0 * s), round(b.y0 * s) + HEADER_PX, round(b.x1 * s), round(b.y1 * s) + HEADER_PX)
        assert drawn.box == want and drawn.route == "vlm"
        x0, y0, x1, y1 = drawn.box
        mid_x, mid_y = (x0 + x1) // 2, (y0 + y1) // 2
        # the box's left, right and bottom edges are drawn in the routed colour in the PNG itself
        for x, y in ((x0, mid_y), (x1, mid_y), (mid_x, y1)):
            assert _is_routed_colour(image[y, x]), (region.address, x, y, image[y, x])
        assert not _is_routed_colour(image[mid_y, mid_x + 3])


def test_inspect_command_prints_the_decision_and_writes_the_png(tmp_path):
    out = tmp_path / "table.png"
    result = CliRunner().invoke(app, ["inspect", str(SAMPLES / "complex_table.pdf"), "--page", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file() and Image.open(out).size[0] > 500
    assert "route vlm (complex_table)" in result.output and "p1/table/1" in result.output
    assert "spanning header" in result.output
    bad = CliRunner().invoke(app, ["inspect", str(SAMPLES / "complex_table.pdf"), "--page", "9"])
    assert bad.exit_code == 2 and "has 1 page" in bad.output
