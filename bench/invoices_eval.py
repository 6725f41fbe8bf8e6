"""How right the invoice fields are on real invoices: ../shared/realdocs invoice2data and azure_formrecognizer.

Each invoice goes through the whole pipeline (``process_document``, defaults, no VLM) and its invoice
row is scored against the publisher's labels, with their conventions (../shared/realdocs/SOURCES.md):

- invoice2data (``<stem>.json``, one object; each PNG shares its PDF's JSON): ``invoice_number`` (a
  printed leading "#" is a number sign), ``date`` -> invoice_date, ``date_due`` -> due_date, ``amount``
  -> total (the grand total, tax included), ``amount_untaxed`` -> subtotal, ``amount_tax`` -> tax_total,
  ``currency``, ``issuer`` -> vendor_name (token-set similarity >= 80: the templates write a short
  name, "OYO", where the page prints the legal one). ``Orlen.txt`` is text, not a document: not scored.
- azure_formrecognizer ``Invoice_*.pdf`` (``*.labels.json``, labelled by people): ``Receipt No`` ->
  invoice_number, ``Sold To`` -> customer_name (similarity >= 80). Checkboxes and ``ID #`` have no
  invoice field.

Only keys the labels have are scored; a missing value is wrong. Printed per half of the split fixed by
file hash (bench/realdocs_split.py): exact match per field and overall, then the misses.

    python bench/invoices_eval.py [--jobs 2] [--json out.json]
"""

from __future__ import annotations

import json
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from realdocs_split import REALDOCS, bench_main, field_tally, half_of, run_document, straight_through  # noqa: E402

I2D_FIELDS = {  # invoice2data key -> (our field, kind)
    "invoice_number": ("invoice_number", "id"),
    "date": ("invoice_date", "date"),
    "date_due": ("due_date", "date"),
    "amount": ("total", "money"),
    "amount_untaxed": ("subtotal", "money"),
    "amount_tax": ("tax_total", "money"),
    "currency": ("currency", "str"),
    "issuer": ("vendor_name", "fuzzy"),
}
AZURE_FIELDS = {"Receipt No": ("invoice_number", "id"), "Sold To": ("customer_name", "fuzzy")}


def _norm_id(value) -> str:
    return str(value).strip().lstrip("#").strip()


def same(kind: str, got, want) -> bool:
    """Does our typed value ``got`` match the label ``want`` (kind: id, date, money, fuzzy, str)?"""
    from rapidfuzz import fuzz, utils

    if got is None:
        return False
    if kind == "id":
        return _norm_id(got) == _norm_id(want)
    if kind == "date":
        return got == (want if isinstance(want, date) else date.fromisoformat(want))
    if kind == "money":
        return Decimal(str(got)) == Decimal(str(want))
    if kind == "fuzzy":
        return fuzz.token_set_ratio(str(got), str(want), processor=utils.default_process) >= 80
    return str(got).strip() == str(want).strip()


def labels_of(path: Path) -> dict[str, tuple[str, str, object]]:
    """The labelled fields of a realdocs invoice: label key -> (our field, kind, wanted value)."""
    if path.parent.name == "invoice2data":
        truth = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))[0]
        return {k: (*I2D_FIELDS[k], truth[k]) for k in I2D_FIELDS if truth.get(k) not in (None, "")}
    labels = json.loads(Path(f"{path}.labels.json").read_text(encoding="utf-8"))["labels"]
    text = {lab["label"]: " ".join(v["text"] for v in lab["value"]) for lab in labels}
    return {k: (*AZURE_FIELDS[k], text[k]) for k in AZURE_FIELDS if text.get(k)}


def invoices() -> list[Path]:
    i2d = REALDOCS / "invoice2data"
    return sorted([*i2d.glob("*.pdf"), *i2d.glob("*.png")]) + \
        sorted((REALDOCS / "azure_formrecognizer").glob("Invoice_*.pdf"))


def score_data(path: Path, data: dict) -> dict[str, bool]:
    """Per label key: is the extracted ``data`` (field -> typed value) right?"""
    return {key: same(kind, data.get(field), want) for key, (field, kind, want) in labels_of(path).items()}


def score(path: Path) -> dict:
    name = f"{path.parent.name}/{path.name}"
    result = run_document(name)
    inv = next((ex for ex in result.extractions if ex.schema_name == "invoice"), None)
    data = dict(inv.data) if inv else {}
    return {"file": name, "half": half_of(name), "status": result.status,
            "needs_review": inv.needs_review if inv else True,
            "predicted": {k: str(data.get(f)) for k, (f, _, _) in labels_of(path).items()} |
                         {"amount_due": str(data.get("amount_due"))},
            "wanted": {k: str(w) for k, (_, _, w) in labels_of(path).items()},
            "right": score_data(path, data)}


def accuracy(rows: list[dict]) -> tuple[int, int]:
    hits = [v for r in rows for v in r["right"].values()]
    return sum(hits), len(hits)


def report(rows: list[dict]) -> str:
    keys = list(dict.fromkeys(k for r in rows for k in r["right"]))
    lines = []
    for which in ("tune", "test"):
        part = [r for r in rows if r["half"] == which]
        hit, n = accuracy(part)
        through, right, scored = straight_through(part)
        lines.append(f"{which} half ({len(part)} invoices): overall {hit}/{n} = {hit / max(1, n):.2f}")
        lines.append("  " + ", ".join(f"{k} {ok}/{m}" for k, ok, m in field_tally(part, keys)))
        lines.append(f"  straight through: {through}; their fields right: {right}/{scored}")
        for r in part:
            for k, ok in r["right"].items():
                if not ok:
                    lines.append(f"  miss {r['file']} {k}: got {r['predicted'][k]!r}, want {r['wanted'][k]!r}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return bench_main(__doc__, score, invoices(), report, argv)


if __name__ == "__main__":
    raise SystemExit(main())
