"""The per-run HTML report, opened in headless Chromium (Debian's chromium package)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from docroute.pipelines.sink import sql_connection

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is installed by `make test` (scripts/system_deps.sh test)")
def test_run_report_renders_in_chromium(sample_run, tmp_path):
    out, proc = sample_run
    reports = list((out / "reports").glob("*.html"))
    assert len(reports) >= 1 and "report" in proc.stdout
    report = min(reports)  # the first run of the session's output
    run_id = report.stem
    counts = dict(sql_connection(out).sql(f"SELECT counts FROM runs WHERE run_id = '{run_id}'").fetchall()[0][0])
    common = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*common, "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    for key in ("documents", "failed", "pages"):
        m = re.search(rf'data-key="{key}"><b>(\d+)</b>', html)
        assert m and int(m.group(1)) == counts[key], key
    assert "broken_empty.pdf" in html and "reason: handwriting" in html
    assert 'id="throughput"' in html and "<polyline" in html
    shot = tmp_path / "report.png"
    r = subprocess.run([*common, f"--screenshot={shot}", "--window-size=1100,1400", report.as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and shot.stat().st_size > 10_000, r.stderr[-2000:]
    from PIL import Image

    colours = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours and len(colours) > 20, "the page rendered content, not a blank screen"
