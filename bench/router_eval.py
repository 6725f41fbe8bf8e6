"""How right, and how cheap, the router is on the labelled page set (tests/router_labels.json).

Each labelled page goes through the pipeline's own page step (``process_page``: read, parse, OCR for
page images, detectors, policy) with the detectors and the policy timed. Printed:

- precision, recall and F1 of the vlm route, and per reason (a reason listed in a page's ``also_ok``
  is not counted as a false positive there);
- a confusion table: labelled class (layout, or the labelled reasons) against predicted class;
- the cost per page: median and p90 milliseconds of the detectors and the policy on digital pages and
  on page images, beside the page step without them; and what the VLM would see: routed pages, how
  many go as crops, and the image area sent as a share of sending every page whole;
- every page the router got wrong, with its explanation;
- the second routing step (policy v3, escalation after extraction): each labelled file goes through the
  whole pipeline (``process_document``, no VLM) and the documents whose layout fields escalate them to
  the VLM (reason ``extraction_low_confidence``) are counted, with the fields named. The page-level
  figures above are the first step alone (``process_page``), as before; ``--no-documents`` skips this.

    python bench/router_eval.py [--subset all|fast] [--jobs 2] [--only icdar2013] [--json out.json]

``--subset fast`` is the part tests/test_router_eval.py runs (every digital page labelled fast, and
the page images labelled fast: OCR is slow). The labels themselves say why each page has its label.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter
from multiprocessing import get_context
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REALDOCS = REPO.parent / "shared" / "realdocs"
LABELS = REPO / "tests" / "router_labels.json"
REASONS = ("handwriting", "complex_table", "chart", "low_ocr_confidence")


def load_labels(path: Path = LABELS, subset: str = "all", only: str | None = None) -> list[dict]:
    pages = json.loads(Path(path).read_text(encoding="utf-8"))["pages"]
    if subset == "fast":
        pages = [p for p in pages if p.get("fast", True)]
    if only:
        pages = [p for p in pages if only in p["file"]]
    return pages


def resolve(file: str) -> Path:
    if file.startswith("realdocs/"):
        return REALDOCS / file.removeprefix("realdocs/")
    return REPO / file


# --- one page, in a worker process ---------------------------------------------------------------

_timers: dict[str, float] = {}


def _timed(module, name: str, key: str) -> None:
    fn = getattr(module, name)

    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _timers[key] = _timers.get(key, 0.0) + (time.perf_counter() - t0) * 1000

    setattr(module, name, wrapper)


def _worker_init() -> None:
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    from docroute.extractors import detect
    from docroute.pipelines import route

    _timed(detect, "detect_page", "detect")
    _timed(route, "decide", "route")


def evaluate_page(label: dict) -> dict:
    from docroute.pipelines.ingest import open_file
    from docroute.pipelines.process import process_page
    from docroute.pipelines.route import _union_share
    from docroute.pipelines.settings import Settings

    path = resolve(label["file"])
    row = {"file": label["file"], "page": label["page"], "label_route": label["route"],
           "label_reasons": label["reasons"], "also_ok": label.get("also_ok", [])}
    if not path.exists():
        return row | {"missing": True}
    with open_file(path) as doc:
        _timers.clear()
        t0 = time.perf_counter()
        result, _ = process_page(doc, label["page"], Settings(workers=1))
        total = (time.perf_counter() - t0) * 1000
    d = result.decision
    routed = [r.bbox for r in d.regions if r.route == "vlm"]
    area = 1.0 if d.vlm_scope == "page" else _union_share(routed, result.parsed.width, result.parsed.height)
    return row | {
        "route": d.route, "reasons": list(d.reasons), "scores": d.scores, "explanation": d.explanation,
        "vlm_scope": d.vlm_scope, "vlm_area": area if d.route == "vlm" else 0.0,
        "digital": result.parsed.has_text_layer, "ms_total": total, "ms_detect": _timers.get("detect", 0.0),
        "ms_route": _timers.get("route", 0.0), "regions": len(d.regions),
    }


def evaluate_document(file: str) -> dict:
    """One labelled file through the whole pipeline: is it escalated after extraction, for which fields?"""
    from docroute.pipelines.process import process_document
    from docroute.pipelines.route import ESCALATION
    from docroute.pipelines.settings import Settings

    path = resolve(file)
    if not path.exists():
        return {"file": file, "missing": True}
    result = process_document(path, Settings(workers=1))
    named: set[str] = set()
    for p in result.pages:
        if ESCALATION in p.decision.reasons:
            why = p.decision.explanation.split(f"{ESCALATION}: ", 1)[1].split(" (would be")[0]
            named |= {part.split(" ", 1)[0] for part in why.split("; ")}
    kind = result.document_type.kind if result.document_type else None
    return {"file": file, "document_type": kind, "escalated": bool(named), "fields": sorted(named)}


def escalations(labels: list[dict], jobs: int = 1) -> dict:
    files = sorted({lab["file"] for lab in labels})
    if jobs <= 1:
        rows = [evaluate_document(f) for f in files]
    else:
        with get_context("spawn").Pool(jobs) as pool:
            rows = pool.map(evaluate_document, files, chunksize=1)
    rows = [r for r in rows if not r.get("missing")]
    return {"documents": len(rows), "escalated": sum(r["escalated"] for r in rows),
            "by_type": {str(k): [sum(r["escalated"] for r in rows if str(r["document_type"]) == str(k)),
                                 sum(str(r["document_type"]) == str(k) for r in rows)]
                        for k in sorted({str(r["document_type"]) for r in rows})},
            "fields": dict(Counter(f for r in rows for f in r["fields"]).most_common()), "rows": rows}


def report_escalations(e: dict) -> str:
    out = ["", f"escalation after extraction (policy v3, whole documents, no VLM): {e['escalated']} of "
               f"{e['documents']} labelled files escalated (extraction_low_confidence)"]
    for kind, (escalated, n) in e["by_type"].items():
        out.append(f"  {kind:<8} {escalated} of {n}")
    out.append("  fields named: " + ", ".join(f"{f} {n}" for f, n in e["fields"].items()))
    return "\n".join(out)


def run(labels: list[dict], jobs: int = 1) -> list[dict]:
    if jobs <= 1:
        _worker_init()
        return [evaluate_page(lab) for lab in labels]
    with get_context("spawn").Pool(jobs, initializer=_worker_init) as pool:
        return pool.map(evaluate_page, labels, chunksize=1)


# --- metrics -------------------------------------------------------------------------------------

def _prf(tp: int, fp: int, fn: int) -> dict:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": round(p, 3), "recall": round(r, 3),
            "f1": round(2 * p * r / (p + r), 3) if p + r else 0.0}


def _class(reasons: list[str]) -> str:
    return "+".join(sorted(reasons)) if reasons else "layout"


def _right(r: dict) -> bool:
    """Same route as the label, every labelled reason found, and no reason that is not allowed."""
    got = set(r["reasons"]) - {"budget_exceeded"}
    return (r["label_route"] == r["route"] and set(r["label_reasons"]) <= got
            and not got - set(r["label_reasons"]) - set(r["also_ok"]))


def _ms(values: list[float]) -> dict:
    if not values:
        return {"median": 0.0, "p90": 0.0, "n": 0}
    s = sorted(values)
    return {"median": round(statistics.median(s), 1), "p90": round(s[int(0.9 * (len(s) - 1))], 1), "n": len(s)}


def metrics(rows: list[dict]) -> dict:
    rows = [r for r in rows if not r.get("missing")]
    tp = sum(r["label_route"] == "vlm" and r["route"] == "vlm" for r in rows)
    fp = sum(r["label_route"] == "layout" and r["route"] == "vlm" for r in rows)
    fn = sum(r["label_route"] == "vlm" and r["route"] == "layout" for r in rows)
    per_reason = {}
    for reason in REASONS:
        t = sum(reason in r["label_reasons"] and reason in r["reasons"] for r in rows)
        f = sum(reason in r["reasons"] and reason not in r["label_reasons"] and reason not in r["also_ok"] for r in rows)
        n = sum(reason in r["label_reasons"] and reason not in r["reasons"] for r in rows)
        per_reason[reason] = _prf(t, f, n)
    confusion = Counter((_class(r["label_reasons"]), _class([x for x in r["reasons"] if x in REASONS]), _right(r))
                        for r in rows)
    digital = [r for r in rows if r["digital"]]
    images = [r for r in rows if not r["digital"]]
    cost = {
        "digital_detect_ms": _ms([r["ms_detect"] + r["ms_route"] for r in digital]),
        "digital_page_ms_with": _ms([r["ms_total"] for r in digital]),
        "digital_page_ms_without": _ms([r["ms_total"] - r["ms_detect"] - r["ms_route"] for r in digital]),
        "image_detect_ms": _ms([r["ms_detect"] + r["ms_route"] for r in images]),
        "image_page_ms_with": _ms([r["ms_total"] for r in images]),
        "image_page_ms_without": _ms([r["ms_total"] - r["ms_detect"] - r["ms_route"] for r in images]),
        "routed_pages": sum(r["route"] == "vlm" for r in rows),
        "routed_as_crops": sum(r["route"] == "vlm" and r["vlm_scope"] == "regions" for r in rows),
        "vlm_image_area_per_page": round(sum(r["vlm_area"] for r in rows) / len(rows), 3) if rows else 0.0,
    }
    return {
        "pages": len(rows), "labelled_vlm": sum(r["label_route"] == "vlm" for r in rows),
        "route": _prf(tp, fp, fn), "per_reason": per_reason,
        "confusion": [{"label": k[0], "predicted": k[1], "right": k[2], "pages": v} for k, v in sorted(confusion.items())],
        "cost": cost,
        "plain_invoices_routed": [f"{r['file']} p{r['page']}" for r in rows
                                  if r["file"].startswith("realdocs/invoice2data/") and r["route"] == "vlm"],
        "misses": [
            {"file": r["file"], "page": r["page"], "label": _class(r["label_reasons"]), "got": _class(r["reasons"]),
             "explanation": r["explanation"]}
            for r in rows if not _right(r)
        ],
    }


def report(m: dict) -> str:
    out = [f"{m['pages']} labelled pages, {m['labelled_vlm']} labelled vlm", ""]
    r = m["route"]
    out.append(f"vlm route      P {r['precision']:.3f}  R {r['recall']:.3f}  F1 {r['f1']:.3f}   (tp {r['tp']}, fp {r['fp']}, fn {r['fn']})")
    for reason, v in m["per_reason"].items():
        out.append(f"  {reason:<19}P {v['precision']:.3f}  R {v['recall']:.3f}  F1 {v['f1']:.3f}   (tp {v['tp']}, fp {v['fp']}, fn {v['fn']})")
    out += ["", "confusion (labelled class -> predicted class: pages; <- marks a wrong one; an extra reason the"
                " label allows in also_ok is not wrong)"]
    for c in m["confusion"]:
        mark = "" if c["right"] else "   <-"
        out.append(f"  {c['label']:<28} -> {c['predicted']:<28} {c['pages']:>4}{mark}")
    c = m["cost"]
    out += ["", "cost per page (ms, median / p90)"]
    for kind in ("digital", "image"):
        d, w, wo = c[f"{kind}_detect_ms"], c[f"{kind}_page_ms_with"], c[f"{kind}_page_ms_without"]
        out.append(f"  {kind:<8} detectors+policy {d['median']:>7} / {d['p90']:<7}  page step with {w['median']:>7} / {w['p90']:<7}"
                   f"  without {wo['median']:>7} / {wo['p90']:<7} (n={d['n']})")
    out.append(f"  routed pages {c['routed_pages']} ({c['routed_as_crops']} as crops); VLM image area "
               f"{c['vlm_image_area_per_page']:.2f} of a whole page per page")
    out.append(f"  plain invoice2data pages routed: {len(m['plain_invoices_routed'])}")
    if m["misses"]:
        out += ["", "misses"]
        for x in m["misses"]:
            out.append(f"  {x['file']} p{x['page']}: labelled {x['label']}, got {x['got']} | {x['explanation'][:160]}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subset", choices=("all", "fast"), default="all")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--only", help="only label files whose path contains this")
    ap.add_argument("--labels", type=Path, default=LABELS)
    ap.add_argument("--json", type=Path, help="also write the metrics (and per-page rows) as JSON here")
    ap.add_argument("--no-documents", action="store_true", help="skip the documents pass (escalation after extraction)")
    args = ap.parse_args(argv)
    labels = load_labels(args.labels, args.subset, args.only)
    t0 = time.perf_counter()
    rows = run(labels, args.jobs)
    m = metrics(rows)
    print(report(m))
    print(f"\n({len(rows)} pages in {time.perf_counter() - t0:.0f} s with {args.jobs} job(s))")
    e = None
    if not args.no_documents:
        t0 = time.perf_counter()
        e = escalations(labels, args.jobs)
        print(report_escalations(e))
        print(f"\n({e['documents']} documents in {time.perf_counter() - t0:.0f} s with {args.jobs} job(s))")
    if args.json:
        args.json.write_text(json.dumps({"metrics": m, "rows": rows, "escalations": e}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
