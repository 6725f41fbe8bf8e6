"""The per-run HTML report written beside the tables: ``OUT/reports/<run_id>.html``.

Self-contained (inline CSS and SVG, no scripts, no network): counts, pages by route and reason, review
reasons, failures, the slowest documents, and a throughput chart (pages done over the run's time).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.compute as pc
from jinja2 import Environment, select_autoescape

from docroute.pipelines.sink import DeltaSink

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>docroute run {{ run.run_id }}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}.bar{background:#4a7bd0;height:10px;display:inline-block}
.cards{display:flex;gap:1em;flex-wrap:wrap}.card{border:1px solid #ddd;border-radius:6px;padding:.6em 1em;min-width:8em}
.card b{display:block;font-size:1.6em}.failed{color:#b00020}
</style></head><body>
<h1>docroute run <code>{{ run.run_id }}</code></h1>
<p>input <code>{{ run.input }}</code> &rarr; output <code>{{ run.output }}</code><br>
started {{ run.started_at }} &middot; finished {{ run.finished_at }} &middot; {{ "%.1f"|format(elapsed) }} s
&middot; {{ "%.2f"|format(pages_per_s) }} pages/s</p>
<div class="cards" id="counts">
{% for label, key in [("documents","documents"),("ok","ok"),("partial","partial"),("failed","failed"),
  ("skipped","skipped"),("pages","pages"),("VLM pages","pages_vlm"),("need review","needs_review")] %}
<div class="card" data-key="{{ key }}"><b>{{ counts.get(key, 0) }}</b>{{ label }}</div>{% endfor %}
</div>
<h2>Routes and reasons</h2>
<table id="routes"><tr><th>route / reason</th><th>pages</th><th></th></tr>
{% for name, n in routes %}<tr><td>{{ name }}</td><td class="n">{{ n }}</td>
<td><span class="bar" style="width:{{ (300 * n / max_route)|int }}px"></span></td></tr>{% endfor %}
</table>
<h2>VLM</h2>
<p id="vlm">{{ vlm }}</p>
<table id="vlm-unanswered"><tr><th>routed pages without a VLM answer, by status</th><th>pages</th></tr>
{% for name, n in unanswered %}<tr><td>{{ name }}</td><td class="n">{{ n }}</td></tr>{% else %}
<tr><td colspan="2">none</td></tr>{% endfor %}</table>
<h2>Review reasons</h2>
<table id="review"><tr><th>reason</th><th>documents</th></tr>
{% for name, n in review %}<tr><td>{{ name }}</td><td class="n">{{ n }}</td></tr>{% else %}
<tr><td colspan="2">none</td></tr>{% endfor %}</table>
<h2>Failed and partial documents</h2>
<table id="failures"><tr><th>file</th><th>status</th><th>error</th></tr>
{% for d in failures %}<tr><td>{{ d.file_name }}</td><td class="failed">{{ d.status }}</td><td>{{ d.error }}</td></tr>
{% else %}<tr><td colspan="3">none</td></tr>{% endfor %}</table>
<h2>Slowest documents</h2>
<table id="slowest"><tr><th>file</th><th>pages</th><th>seconds</th></tr>
{% for d in slowest %}<tr><td>{{ d.file_name }}</td><td class="n">{{ d.n_pages }}</td>
<td class="n">{{ "%.2f"|format(d.duration_ms / 1000) }}</td></tr>{% endfor %}</table>
<h2>Throughput</h2>
{{ chart|safe }}
<h2>Configuration and versions</h2>
<pre>{{ config }}</pre><pre>{{ versions }}</pre>
</body></html>
"""


def _svg_chart(points: list[tuple[float, int]], width: int = 640, height: int = 220) -> str:
    """Cumulative pages (y) over seconds since the run started (x), as an inline SVG."""
    if not points:
        return "<p>no documents processed in this run</p>"
    pad = 40
    max_t = max(t for t, _ in points) or 1.0
    max_p = max(p for _, p in points) or 1
    xy = [(pad + (width - 2 * pad) * t / max_t, height - pad - (height - 2 * pad) * p / max_p) for t, p in points]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in [(pad, height - pad), *xy])
    return (
        f'<svg id="throughput" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="pages processed over time">'
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#555"/>'
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#555"/>'
        f'<polyline fill="none" stroke="#4a7bd0" stroke-width="2" points="{line}"/>'
        f'<text x="{width - pad}" y="{height - 12}" text-anchor="end">{max_t:.1f} s</text>'
        f'<text x="{pad - 4}" y="{pad}" text-anchor="end">{max_p}</text>'
        f'<text x="{width / 2}" y="{height - 12}" text-anchor="middle">seconds since start (pages done)</text>'
        f"</svg>"
    )


def _rows(sink: DeltaSink, name: str, run_id: str, columns: list[str]) -> list[dict]:
    dt = sink.table(name)
    if dt is None:
        return []
    return dt.to_pyarrow_dataset().to_table(columns=columns, filter=pc.field("run_id") == run_id).to_pylist()


def write_run_report(out: Path, run: dict, vlm: str = "", sink: DeltaSink | None = None) -> Path:
    """Render the report of ``run`` (the runs-table row as a dict) into ``out/reports/`` (``out``: the
    run state folder), reading the run's rows from ``sink`` (default: the tables under ``out``)."""
    out = Path(out)
    run_id = run["run_id"]
    sink = sink or DeltaSink(out, "invoice")
    docs = _rows(sink, "documents", run_id, ["doc_id", "file_name", "status", "error", "n_pages", "duration_ms",
                                             "processed_at"])
    pages = _rows(sink, "pages", run_id, ["route", "route_reasons", "vlm_status"])
    review = Counter()
    for name in (n for n in sink.tables() if n.startswith("extractions/")):
        for r in _rows(sink, name, run_id, ["review_reasons"]):
            review.update({reason.split(":")[0] for reason in r["review_reasons"] or []})
    routes = Counter(f"route: {p['route']}" for p in pages)
    unanswered = Counter(p["vlm_status"] for p in pages if p["route"] == "vlm" and p["vlm_status"] != "ok")
    routes.update(f"reason: {reason}" for p in pages for reason in p["route_reasons"] or [])
    started = run["started_at"]
    pages_by_doc = sorted(((d["processed_at"] - started).total_seconds(), d["n_pages"] or 0) for d in docs)
    cumulative, total = [], 0
    for t, n in pages_by_doc:
        total += n
        cumulative.append((t, total))
    elapsed = (run["finished_at"] - started).total_seconds()
    counts = dict(run["counts"])
    env = Environment(autoescape=select_autoescape(default=True))
    html = env.from_string(TEMPLATE).render(
        run=run, counts=counts, elapsed=elapsed, vlm=vlm, unanswered=unanswered.most_common(), pages_per_s=(counts.get("pages", 0) / elapsed) if elapsed else 0.0,
        routes=sorted(routes.items()), max_route=max(routes.values(), default=1),
        review=review.most_common(), failures=[d for d in docs if d["status"] != "ok"],
        slowest=sorted(docs, key=lambda d: d["duration_ms"] or 0, reverse=True)[:10],
        chart=_svg_chart(cumulative), config=json.dumps(json.loads(run["config"]) if isinstance(run["config"], str)
                                                       else run["config"], indent=2, default=str),
        versions=json.dumps(dict(run["versions"]), indent=2),
    )
    target = out / "reports" / f"{run_id}.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(target)
    return target
