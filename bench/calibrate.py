"""Fit the field-confidence calibration on the realdocs tuning half, and measure it with ``docroute eval``.

    python bench/calibrate.py [--write] [--jobs 2] [--no-eval]

1. Raw values. Every labelled realdocs invoice and receipt (``sroie_train``, ``softmatic_receipts``,
   ``invoice2data`` PDFs and pictures, ``azure_formrecognizer/Invoice_*.pdf``) goes through
   ``process_document`` (defaults, no VLM) with calibration off: its fields' values, raw confidences
   and sources. Cached per file in ``CACHE/<code hash>/``: the hash covers the sources and data files
   of extractors/, pipelines/ and schemas/ (but ``NOT_HASHED``), so a rerun with unchanged code reads
   the cache. Per labelled field predicted: its group (extractors/fields/calibration.py: field kind x
   source layout/ocr) and whether it is right (``evaluate.field_right``, the rule ``docroute eval``
   scores with).
2. Fit, on the tuning half only (tests/realdocs_split.json): per group, isotonic regression
   (pool-adjacent-violators over the distinct raw values) of right on raw confidence, as a step map;
   each block's rate is smoothed toward the group's rate with ``PRIOR`` pseudo-values (small data: a
   block of two values does not say 0 or 1), then made non-decreasing again. A group with fewer than
   ``MIN_GROUP`` values gets no map of its own (it falls back to ``*/<source>``, then ``*/*``).
   ``PRIOR`` and ``MIN_GROUP`` were chosen on the tuning half alone (Brier score of 4-fold
   cross-validation by document, 20 shuffles; 2 and 25 were best of {0, 1, 2, 4} x {25, 40, pooled}).
   Deterministic: sorted inputs, no randomness. ``--write`` writes extractors/fields/calibration.json.
3. Measure (unless ``--no-eval``): the labels of each half are written in ``docroute eval``'s JSON label
   format (``CACHE/<code hash>/eval-<calibration hash>/labels_<half>.json``), the documents are run
   with ``docroute run`` (calibration.json as it is on disk; the run is kept there and reused while
   neither hash changes) and each half is scored with ``docroute eval``: ECE, straight through and how
   many of their fields are right. Those are the figures the README quotes. A full rerun takes about
   15 minutes on 2 busy cores (half of it the pipeline with calibration off, half ``docroute run``).

Labels, with their publishers' conventions (../shared/realdocs/SOURCES.md, as bench/receipts_eval.py):
SROIE company/address (≥ 0.9 similar), date (day first), total; softmatic merchant slug (contained in
the vendor name), date DDMMYYYY, amount in cents; invoice2data's expected outputs (tests/test_fields.py
``I2D_FIELDS``; issuer ≥ 0.8 token-set similar); Azure's Invoice labels ("Receipt No": the number,
"Sold To": the customer, ≥ 0.9 similar).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from realdocs_split import REALDOCS, REPO, half_of, run_document  # noqa: E402

CACHE = Path("/tmp/docroute-calibrate")
NOT_HASHED = {"calibration.json", "calibration.py", "evaluate.py"}  # they change no raw value
TARGET = REPO / "extractors" / "fields" / "calibration.json"
PRIOR = 2.0  # pseudo-values pulling each isotonic block toward its group's rate
MIN_GROUP = 25  # values a group needs for a map of its own
I2D = {"invoice_number": ("invoice_number", "id"), "date": ("invoice_date", None), "date_due": ("due_date", None),
       "amount": ("total", None), "amount_untaxed": ("subtotal", None), "amount_tax": ("tax_total", None),
       "currency": ("currency", None), "issuer": ("vendor_name", "token_set:0.8")}


# --------------------------------------------------------------------------- labels
def _money(value) -> str | None:
    match = re.search(r"\d+(?:\.\d+)?", str(value).replace(",", ""))
    return str(Decimal(match.group(0))) if match else None


def _dmy(text: str) -> str | None:
    import dateparser

    parsed = dateparser.parse(text, settings={"DATE_ORDER": "DMY", "PREFER_DAY_OF_MONTH": "first"})
    return parsed.date().isoformat() if parsed else None


def label_of(rel: str) -> dict | None:
    """``{"fields": ..., "match": ...}`` for a realdocs file, in docroute eval's JSON label format."""
    path = REALDOCS / rel
    folder = path.parent.name
    if folder == "sroie_train":
        lab = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        return {"fields": {"vendor_name": lab["company"], "vendor_address": lab["address"],
                           "invoice_date": _dmy(lab["date"]), "total": _money(lab["total"])},
                "match": {"vendor_name": "similar:0.9", "vendor_address": "similar:0.9"}}
    if folder == "softmatic_receipts":
        lab = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        d = lab["date"]
        return {"fields": {"vendor_name": lab["merchant"], "invoice_date": f"{d[4:]}-{d[2:4]}-{d[:2]}",
                           "total": str(Decimal(lab["amount"]) / 100)}, "match": {"vendor_name": "contains"}}
    if folder == "invoice2data" and path.suffix in (".pdf", ".png"):
        truth = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))[0]
        fields = {ours: truth[key] for key, (ours, _) in I2D.items() if truth.get(key) not in (None, "")}
        return {"fields": fields, "match": {I2D[k][0]: rule for k, (_, rule) in I2D.items() if rule}}
    if folder == "azure_formrecognizer" and path.name.startswith("Invoice_") and path.suffix == ".pdf":
        labels = json.loads(Path(f"{path}.labels.json").read_text(encoding="utf-8"))["labels"]
        text = {lab["label"]: " ".join(v["text"] for v in lab["value"]) for lab in labels}
        return {"fields": {"invoice_number": text.get("Receipt No"), "customer_name": text.get("Sold To")},
                "match": {"customer_name": "similar:0.9"}}
    return None


def documents() -> list[tuple[str, dict]]:
    from realdocs_split import documents as index

    out = []
    for row in index():
        if row["kind"] in ("invoice", "receipt") and (label := label_of(row["file"])) is not None:
            label["fields"] = {k: v for k, v in label["fields"].items() if v not in (None, "")}
            out.append((row["file"], label))
    return sorted(out)


def eval_name(rel: str) -> str:
    return rel.replace("/", "__")


# --------------------------------------------------------------------------- raw values (step 1)
def code_hash() -> str:
    h = hashlib.sha256()
    for folder in ("extractors", "pipelines", "schemas"):
        for f in sorted((REPO / folder).rglob("*")):
            if f.is_file() and f.suffix in (".py", ".toml", ".json") and f.name not in NOT_HASHED \
                    and "__pycache__" not in f.parts:
                h.update(str(f.relative_to(REPO)).encode() + f.read_bytes())
    return h.hexdigest()[:16]


def _uncalibrated() -> None:
    from docroute.extractors.fields import calibration

    calibration.maps = lambda path=None: {}


def raw_values(job: tuple[str, dict, str]) -> dict:
    """One document through the pipeline, calibration off (the pool's initializer): its :func:`raw_row`,
    cached in ``cache_dir``."""
    rel, label, cache_dir = job
    target = Path(cache_dir) / f"{hashlib.sha256(rel.encode()).hexdigest()[:20]}.json"
    if target.exists():
        return json.loads(target.read_text())
    row = raw_row(rel, run_document(rel))
    target.write_text(json.dumps(row))
    return row


def raw_row(rel: str, result) -> dict:
    """A document's DocumentResult (``process_document``'s): its labelled fields' values, confidence and
    source, and the extraction's review reasons (rightness is decided later, against the labels)."""
    from docroute.pipelines.validate import jsonable

    inv = next((ex for ex in result.extractions if ex.schema_name == "invoice"), None)
    fields = {name: {"value": jsonable(inv.data.get(name)), "raw": fv.confidence, "source": fv.source}
              for name, fv in sorted(inv.fields.items()) if name != "line_items"} if inv else {}
    return {"file": rel, "fields": fields, "reasons": list(inv.review_reasons) if inv else ["no_extraction"]}


def scored(row: dict, label: dict) -> list[dict]:
    """The labelled fields the document has a value for: group, raw confidence, right or not."""
    from docroute.extractors.fields.calibration import group_of
    from docroute.pipelines.evaluate import field_right

    out = []
    for name, want in sorted(label["fields"].items()):
        got = row["fields"].get(name)
        if got is not None and got["value"] not in (None, ""):
            kind, source = group_of(name, got["source"])
            out.append({"field": name, "kind": kind, "source": source, "raw": got["raw"],
                        "right": field_right(got["value"], want, label["match"].get(name))})
    return out


# --------------------------------------------------------------------------- fit (step 2)
def isotonic(points: list[tuple[float, bool]]) -> list[tuple[float, int, int]]:
    """Pool-adjacent-violators over the distinct raw values (equal values always share a block):
    blocks (lowest raw value, right, n) with increasing rates."""
    ties: dict[float, list[int]] = {}
    for raw, ok in points:
        t = ties.setdefault(raw, [0, 0])
        t[0], t[1] = t[0] + int(ok), t[1] + 1
    blocks: list[list[float]] = []  # [lowest raw, right, n]
    for raw in sorted(ties):
        blocks.append([raw, *ties[raw]])
        while len(blocks) > 1 and blocks[-2][1] / blocks[-2][2] >= blocks[-1][1] / blocks[-1][2]:
            last = blocks.pop()
            blocks[-1] = [blocks[-1][0], blocks[-1][1] + last[1], blocks[-1][2] + last[2]]
    return [(lo, int(k), int(n)) for lo, k, n in blocks]


def fit_group(points: list[tuple[float, bool]]) -> dict:
    """A step map: from each block's lowest raw value on, its smoothed rate (kept non-decreasing)."""
    rate = sum(ok for _, ok in points) / len(points)
    xs, ys, top = [], [], 0.0
    for lo, k, n in isotonic(points):
        top = max(top, (k + PRIOR * rate) / (n + PRIOR))
        xs.append(round(lo, 4))
        ys.append(round(top, 4))
    return {"x": xs, "y": ys, "n": len(points)}


def fit(values: list[dict]) -> dict[str, dict]:
    groups: dict[str, list[tuple[float, bool]]] = {}
    for v in values:
        for key in (f"{v['kind']}/{v['source']}", f"*/{v['source']}", "*/*"):
            groups.setdefault(key, []).append((v["raw"], v["right"]))
    return {key: fit_group(pts) for key, pts in sorted(groups.items()) if key == "*/*" or len(pts) >= MIN_GROUP}


def ece_of(values: list[dict], table: dict[str, dict]) -> float:
    from docroute.extractors.fields.calibration import calibrated
    from docroute.pipelines.evaluate import _calibration

    return _calibration([(calibrated(v["field"], v["source"], v["raw"], table), v["right"]) for v in values])[1]


# --------------------------------------------------------------------------- measure (step 3)
def measure(docs: list[tuple[str, dict]], cache_dir: Path) -> dict:
    """``docroute run`` over the documents, then ``docroute eval`` per half: its eval.json per half."""
    cal = hashlib.sha256(TARGET.read_bytes()).hexdigest()[:12] if TARGET.exists() else "none"
    work = cache_dir / f"eval-{cal}"
    inputs, out = work / "in", work / "out"
    docroute = str(Path(sys.executable).with_name("docroute"))
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("PREFECT_API")}
    if not (work / "done").exists():
        shutil.rmtree(work, ignore_errors=True)
        inputs.mkdir(parents=True)
        for rel, _ in docs:
            shutil.copy(REALDOCS / rel, inputs / eval_name(rel))
        subprocess.run([docroute, "run", str(inputs), "--out", str(out), "--workers", "2"], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        (work / "done").write_text("")
    reports = {}
    for which in ("tune", "test"):
        labels = work / f"labels_{which}.json"
        labels.write_text(json.dumps({"documents": [{"file": eval_name(rel), **lab} for rel, lab in docs
                                                    if half_of(rel) == which]}, indent=1))
        proc = subprocess.run([docroute, "eval", str(labels), "--out", str(out)], env=env | {"COLUMNS": "160"},
                              capture_output=True, text=True, check=True)
        print(f"--- docroute eval {labels} --out {out}\n{proc.stdout}")
        reports[which] = json.loads((out / "eval.json").read_text())
        shutil.copy(out / "eval.json", work / f"eval_{which}.json")
    return reports


def main(argv: list[str] | None = None) -> int:
    from multiprocessing import get_context

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help=f"write {TARGET.relative_to(REPO)}")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--no-eval", action="store_true", help="fit only; no docroute run / eval")
    args = ap.parse_args(argv)
    docs = documents()
    cache_dir = CACHE / code_hash()
    cache_dir.mkdir(parents=True, exist_ok=True)
    with get_context("spawn").Pool(args.jobs, initializer=_uncalibrated) as pool:
        rows = pool.map(raw_values, [(rel, lab, str(cache_dir)) for rel, lab in docs])
    labels = dict(docs)
    tune = [v for r in rows if half_of(r["file"]) == "tune" for v in scored(r, labels[r["file"]])]
    test = [v for r in rows if half_of(r["file"]) == "test" for v in scored(r, labels[r["file"]])]
    table = fit(tune)
    print(f"{len(docs)} documents; labelled values predicted: tune {len(tune)}, test {len(test)}")
    print(f"ECE raw: tune {ece_of(tune, {}):.3f}, test {ece_of(test, {}):.3f}; "
          f"fitted map: tune {ece_of(tune, table):.3f}, test {ece_of(test, table):.3f}")
    for key, knots in table.items():
        print(f"  {key:14s} n={knots['n']:4d}  " + " ".join(f"{x:.2f}->{y:.2f}" for x, y in zip(knots["x"], knots["y"],
                                                                                            strict=True)))
    if args.write:
        TARGET.write_text(json.dumps({
            "about": "field confidence -> probability of being right; fitted by bench/calibrate.py on the "
                     "realdocs tuning half (see extractors/fields/calibration.py)",
            "method": f"isotonic (PAV) step map per group, blocks smoothed with {PRIOR:g} pseudo-values toward "
                      f"the group rate; groups under {MIN_GROUP} values fall back to */source, then */*",
            "fitted_on": {"values": len(tune), "documents": sum(half_of(r["file"]) == "tune" for r in rows)},
            "maps": table}, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        print(f"written: {TARGET}")
    if not args.no_eval:
        for which, rep in measure(docs, cache_dir).items():
            st = rep["straight_through"]
            print(f"docroute eval, {which} half: ECE {rep['ece']:.3f}; straight through {st['documents']}/{st['of']} "
                  f"= {st['share']:.0%}; their fields right {st['fields_right']}/{st['fields']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
