"""Evaluation of a run's extractions against a labelled set.

Label formats (documented in the README):

- JSON: ``{"documents": [{"file": "a.pdf", "fields": {"invoice_number": "...", "total": "12.50",
  "line_items": [{"description": ..., "amount": ...}]}, "routes": ["layout", "vlm"],
  "match": {"vendor_name": "similar:0.9"}}]}``; ``match`` (optional, per field) loosens the comparison
  for labels that are not printed verbatim: ``similar:R`` (rapidfuzz ratio of the case- and
  space-folded texts at least R), ``token_set:R`` (rapidfuzz token-set ratio at least R), ``contains``
  (the label, spaces removed, inside the prediction), ``id`` (a leading ``#`` ignored on both sides).
- CSV with columns ``file,field,value``: ``field`` is a schema field, ``line_items`` (value: a JSON
  list) or ``route:<page>`` (value ``layout`` or ``vlm``).
- A folder of docroute ``*.expected.json`` files (the format of ``sample_docs/``: the ``invoice`` key, or
  ``fields`` for another schema as in ``sample_docs/other/``).

Only labelled fields are scored. A field is correct when the normalised prediction equals the
normalised label (dates as ISO dates, amounts as decimals, text case- and space-insensitive), or
matches it the way the label's ``match`` says.

Routes: a labelled page route is compared with the first routing step's (a page the escalation after
extraction alone sent to the VLM counts as ``layout`` there); the labelled documents so escalated are
counted apart (``escalated_after_extraction``).

Straight through: the labelled documents whose extraction needs no review (``needs_review`` false), and
how many of their labelled fields are right (a labelled field they lack counts as wrong).
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import numpy as np

from docroute.pipelines.route import BUDGET_REASON, ESCALATION
from docroute.pipelines.sink import read_tables

N_BINS = 10


@dataclass(frozen=True)
class Labels:
    fields: dict[str, dict[str, Any]]  # file name -> field -> value
    routes: dict[str, list[str]]  # file name -> route per page
    match: dict[str, dict[str, str]] = field(default_factory=dict)  # file name -> field -> match rule


def load_labels(path: Path) -> Labels:
    path = Path(path)
    fields: dict[str, dict[str, Any]] = defaultdict(dict)
    routes: dict[str, list[str]] = {}
    match: dict[str, dict[str, str]] = {}
    if path.is_dir():
        for f in sorted(path.glob("*.expected.json")):
            exp = json.loads(f.read_text())
            if exp.get("invoice"):
                fields[exp["file"]].update(exp["invoice"])
            if exp.get("fields"):  # a document of another schema (sample_docs/other/)
                fields[exp["file"]].update(exp["fields"])
            if exp.get("expected_route"):
                routes[exp["file"]] = list(exp["expected_route"])
    elif path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            by_page: dict[str, dict[int, str]] = defaultdict(dict)
            for row in csv.DictReader(fh):
                name, key, value = row["file"], row["field"], row["value"]
                if key.startswith("route:"):
                    by_page[name][int(key.split(":", 1)[1])] = value
                elif key == "line_items":
                    fields[name][key] = json.loads(value)
                else:
                    fields[name][key] = value
            routes = {n: [p[k] for k in sorted(p)] for n, p in by_page.items()}
    else:
        for doc in json.loads(path.read_text())["documents"]:
            fields[doc["file"]].update(doc.get("fields") or {})
            if doc.get("routes"):
                routes[doc["file"]] = list(doc["routes"])
            if doc.get("match"):
                match[doc["file"]] = dict(doc["match"])
    return Labels(fields=dict(fields), routes=routes, match=match)


def _norm(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, date):
        return value.isoformat()[:10]
    if isinstance(value, Decimal | int | float):
        return Decimal(str(value)).normalize()
    text = " ".join(str(value).split()).casefold()
    if not text:
        return None
    try:
        if any(c.isdigit() for c in text) and all(c.isdigit() or c in ".-" for c in text) and text.count(".") <= 1:
            return Decimal(text).normalize()
    except InvalidOperation:
        pass
    is_iso_date = len(text) >= 10 and text[:4].isdigit() and text[4] == "-" and text[7] == "-"
    return text[:10] if is_iso_date else text


def _fold(value: Any) -> str:
    return " ".join(str(value).split()).casefold()


def field_right(got: Any, want: Any, rule: str | None = None) -> bool:
    """Is the prediction ``got`` right for the label ``want``, compared as ``rule`` says (see above)?"""
    if _norm(got) is None:
        return False
    if rule is None or rule == "exact":
        return _norm(got) == _norm(want)
    if rule == "id":
        return _norm(_fold(got).lstrip("#").strip()) == _norm(_fold(want).lstrip("#").strip())
    if rule == "contains":
        return _fold(want).replace(" ", "") in _fold(got).replace(" ", "")
    from rapidfuzz import fuzz

    kind, _, at_least = rule.partition(":")
    ratio = {"similar": fuzz.ratio, "token_set": fuzz.token_set_ratio}[kind]
    return ratio(_fold(got), _fold(want)) >= float(at_least) * 100


def _seq(value: Any) -> list:
    """A list from what pandas gives for list/map columns (None, NaN, list or numpy array)."""
    if value is None or isinstance(value, float):
        return []
    return list(value)


def _items_match(pred: list[dict], gold: list[dict]) -> tuple[int, int, int]:
    """(matched, predicted, labelled): an item matches when its amount (or description) equals a label's."""
    remaining = list(gold)
    matched = 0
    for item in pred or []:
        for i, g in enumerate(remaining):
            keys = [k for k in ("amount", "description") if g.get(k) is not None]
            if keys and all(_norm(item.get(k)) == _norm(g.get(k)) for k in keys[:1]):
                matched += 1
                del remaining[i]
                break
    return matched, len(pred or []), len(gold)


def _rows_equal(pred: list[dict], gold: list[dict]) -> bool:
    """Every labelled cell of every row equal, in order."""
    return len(pred) == len(gold) and all(
        _norm(dict(p).get(k)) == _norm(v) for p, g in zip(pred, gold, strict=True) for k, v in g.items())


@dataclass
class FieldScore:
    labelled: int = 0
    predicted: int = 0
    correct: int = 0

    @property
    def precision(self) -> float:
        return self.correct / self.predicted if self.predicted else 0.0

    @property
    def recall(self) -> float:
        return self.correct / self.labelled if self.labelled else 0.0


@dataclass
class Report:
    per_field: dict[str, FieldScore] = field(default_factory=dict)
    documents: int = 0
    exact_documents: int = 0
    items: tuple[int, int, int] = (0, 0, 0)
    confusion: dict[tuple[str, str], int] = field(default_factory=dict)  # (label, predicted) -> pages
    calibration: list[dict] = field(default_factory=list)
    ece: float = 0.0
    straight_through: int = 0  # labelled documents with needs_review false
    straight_fields: tuple[int, int] = (0, 0)  # (right, labelled) fields of those documents
    escalated: int = 0  # labelled documents escalated after extraction (extraction_low_confidence)
    missing_files: list[str] = field(default_factory=list)

    @property
    def overall(self) -> FieldScore:
        total = FieldScore()
        for s in self.per_field.values():
            total.labelled += s.labelled
            total.predicted += s.predicted
            total.correct += s.correct
        return total

    def to_dict(self) -> dict:
        o = self.overall
        return {
            "per_field": {k: {"labelled": s.labelled, "predicted": s.predicted, "correct": s.correct,
                              "precision": round(s.precision, 4), "recall": round(s.recall, 4)}
                          for k, s in sorted(self.per_field.items())},
            "overall": {"precision": round(o.precision, 4), "recall": round(o.recall, 4),
                        "exact_match_documents": f"{self.exact_documents}/{self.documents}"},
            "line_items": dict(zip(("matched", "predicted", "labelled"), self.items, strict=True)),
            "router_confusion": [{"label": k[0], "predicted": k[1], "pages": v} for k, v in sorted(self.confusion.items())],
            "calibration": self.calibration, "ece": round(self.ece, 4), "missing_files": self.missing_files,
            "straight_through": {"documents": self.straight_through, "of": self.documents,
                                 "share": round(self.straight_through / self.documents, 4) if self.documents else 0.0,
                                 "fields_right": self.straight_fields[0], "fields": self.straight_fields[1]},
            "escalated_after_extraction": self.escalated,
        }


def _calibration(points: list[tuple[float, bool]]) -> tuple[list[dict], float]:
    bins: list[list[tuple[float, bool]]] = [[] for _ in range(N_BINS)]
    for conf, ok in points:
        bins[min(N_BINS - 1, int(conf * N_BINS))].append((conf, ok))
    rows, ece = [], 0.0
    for i, b in enumerate(bins):
        if not b:
            continue
        conf = sum(c for c, _ in b) / len(b)
        acc = sum(ok for _, ok in b) / len(b)
        ece += abs(acc - conf) * len(b) / len(points)
        rows.append({"bin": f"{i / N_BINS:.1f}-{(i + 1) / N_BINS:.1f}", "n": len(b),
                     "mean_confidence": round(conf, 4), "accuracy": round(acc, 4)})
    return rows, ece


def _first_step(page: dict) -> str:
    """A page's route from the first routing step (its own signals): route labels are about that; a page
    sent only by the escalation after extraction (policy v3, counted in ``escalated``) was ``layout`` there."""
    reasons = set(_seq(page.get("route_reasons")))
    return "layout" if reasons and reasons <= {ESCALATION, BUDGET_REASON} else page["route"]


def evaluate(out: Path, labels: Labels, schema: str = "invoice") -> Report:
    tables = read_tables(out)
    ex = tables.get(f"extractions/{schema}")
    report = Report()
    rows: dict[str, dict] = {}
    for r in ex.to_dict("records") if ex is not None and len(ex) else []:
        version = r.get("row_version")
        version = 1 if version is None or version != version else int(version)  # NaN: files before versions
        if r["file_name"] not in rows or version > rows[r["file_name"]]["_version"]:
            rows[r["file_name"]] = {**r, "_version": version}  # corrections (newer versions) win
    points: list[tuple[float, bool]] = []
    matched = predicted = labelled = 0
    for name, gold in sorted(labels.fields.items()):
        row = rows.get(name)
        if row is None:
            report.missing_files.append(name)
            continue
        report.documents += 1
        confidence = dict(_seq(row.get("field_confidence")))
        rules = labels.match.get(name, {})
        straight = row.get("needs_review") in (False, 0)  # a numpy bool; NaN (no value) is not straight through
        report.straight_through += straight
        all_ok = True
        for key, want in gold.items():
            if key == "line_items" or isinstance(want, list):
                m, p, g = _items_match(_seq(row.get(key)), want or [])
                matched, predicted, labelled = matched + m, predicted + p, labelled + g
                if key != "line_items":  # another schema's table: one field, right when every row is
                    score = report.per_field.setdefault(key, FieldScore())
                    score.labelled += 1
                    score.predicted += p > 0
                    ok = m == p == g and _rows_equal(_seq(row.get(key)), want or [])
                    score.correct += ok
                    all_ok &= ok
                continue
            score = report.per_field.setdefault(key, FieldScore())
            if _norm(want) is None:
                continue
            score.labelled += 1
            got = _norm(row.get(key))
            ok = field_right(row.get(key), want, rules.get(key))
            all_ok &= ok
            if straight:
                right, scored = report.straight_fields
                report.straight_fields = (right + ok, scored + 1)
            if got is not None:
                score.predicted += 1
                score.correct += ok
                if key in confidence:
                    points.append((float(confidence[key]), ok))
        report.exact_documents += all_ok
    report.items = (matched, predicted, labelled)
    pages, docs = tables.get("pages"), tables.get("documents")
    if pages is not None and len(pages) and docs is not None:
        names = dict(zip(docs["doc_id"], docs["file_name"], strict=True))
        report.escalated = len({names.get(r["doc_id"]) for r in pages.to_dict("records")
                                if ESCALATION in _seq(r.get("route_reasons")) and names.get(r["doc_id"]) in labels.fields})
    if labels.routes and pages is not None and len(pages):
        names = dict(zip(docs["doc_id"], docs["file_name"], strict=True))
        predicted_routes: dict[tuple[str, int], str] = {
            (names.get(r["doc_id"], ""), int(r["page_number"])): _first_step(r) for r in pages.to_dict("records")
        }
        confusion: dict[tuple[str, str], int] = defaultdict(int)
        for name, routes in labels.routes.items():
            for page, want in enumerate(routes, start=1):
                confusion[(want, predicted_routes.get((name, page), "missing"))] += 1
        report.confusion = dict(confusion)
    report.calibration, report.ece = _calibration(points)
    return report
