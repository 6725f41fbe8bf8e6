"""How right the invoice fields are on real receipts: ../shared/realdocs sroie_train and softmatic_receipts.

Each receipt goes through the whole pipeline (``process_document``, defaults, no VLM; the OCR engine
``--engine tesseract|rapidocr``, else the settings' own, e.g. ``DOCROUTE_OCR__ENGINE``) and is scored
against its publisher's labels, with their conventions (../shared/realdocs/SOURCES.md):

- SROIE: ``company`` -> vendor_name and ``address`` -> vendor_address, right when at least 0.9 similar
  (rapidfuzz ratio, case and spacing folded); ``date`` as printed (day first) -> invoice_date; ``total``
  (after rounding) -> total.
- softmatic: ``merchant`` is a brand slug: right when the vendor name contains it; ``date`` DDMMYYYY;
  ``amount`` in cents -> total.

Printed per half of the split fixed by file hash (bench/realdocs_split.py): accuracy per field, the
documents that went straight through (``needs_review`` false) and how many of their fields were right;
how many receipts have a subtotal and tax filled (and adding up to the total) and line items filled
(and adding up to the subtotal, or with none to the total less the tax); the publishers label neither.

    python bench/receipts_eval.py [--engine rapidocr] [--jobs 2] [--json out.json]
"""

from __future__ import annotations

import json
import re
import sys
from decimal import Decimal, InvalidOperation
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from realdocs_split import REALDOCS, bench_main, field_tally, half_of, straight_through  # noqa: E402

FIELDS = ("vendor", "address", "date", "total")


def _fold(text: str | None) -> str:
    return re.sub(r"\s+", " ", (text or "").upper()).strip()


def _similar(pred: str | None, label: str) -> bool:
    from rapidfuzz import fuzz

    return bool(pred) and fuzz.ratio(_fold(pred), _fold(label)) >= 90


def _label_date(text: str, fmt: str | None = None):
    import datetime as dt

    import dateparser

    if fmt:
        return dt.datetime.strptime(text, fmt).date()
    parsed = dateparser.parse(text, settings={"DATE_ORDER": "DMY", "PREFER_DAY_OF_MONTH": "first"})
    return parsed.date() if parsed else None


def _decimal(value) -> Decimal | None:
    """A decimal, or the number in a label such as "$8.20" or "RM 57.40" (SROIE keeps the printed sign)."""
    if value is None:
        return None
    match = re.search(r"\d+(?:\.\d+)?", str(value).replace(",", ""))
    try:
        return Decimal(match.group(0)) if match else None
    except InvalidOperation:
        return None


def receipts() -> list[tuple[Path, dict]]:
    out = []
    for folder in ("sroie_train", "softmatic_receipts"):
        for image in sorted((REALDOCS / folder).glob("*.jpg")):
            label = json.loads(image.with_suffix(".json").read_text(encoding="utf-8"))
            out.append((image, label))
    return out


def score(path: Path, label: dict, engine: str | None = None) -> dict:
    from docroute.pipelines.process import process_document
    from docroute.pipelines.settings import Settings

    settings = Settings(workers=1)
    if engine:
        settings = settings.model_copy(update={"ocr": settings.ocr.model_copy(update={"engine": engine})})
    return score_result(path, label, process_document(path, settings))


def score_result(path: Path, label: dict, result) -> dict:
    """The row of one receipt's DocumentResult (``process_document``'s) scored against its label."""
    inv = next((ex for ex in result.extractions if ex.schema_name == "invoice"), None)
    data = inv.data if inv else {}
    row = {"file": f"{path.parent.name}/{path.name}", "half": half_of(f"{path.parent.name}/{path.name}"),
           "status": result.status,
           "document_type": t.kind if (t := getattr(result, "document_type", None)) else None,
           "needs_review": inv.needs_review if inv else True, "reasons": list(inv.review_reasons) if inv else [],
           "predicted": {k: str(data.get(k)) for k in ("vendor_name", "vendor_address", "invoice_date", "total")}}
    total = _decimal(data.get("total"))
    row["reconcile"] = _reconcile(data, total)
    if "company" in label:  # SROIE
        row["right"] = {"vendor": _similar(data.get("vendor_name"), label["company"]),
                        "address": _similar(data.get("vendor_address"), label["address"]),
                        "date": data.get("invoice_date") == _label_date(label["date"]),
                        "total": total is not None and total == _decimal(label["total"])}
    else:  # softmatic: brand slug, DDMMYYYY, cents
        row["right"] = {"vendor": label["merchant"] in _fold(data.get("vendor_name")).lower().replace(" ", ""),
                        "date": data.get("invoice_date") == _label_date(label["date"], "%d%m%Y"),
                        "total": total is not None and total == Decimal(label["amount"]) / 100}
    return row


def _reconcile(data: dict, total: Decimal | None) -> dict:
    """Which of subtotal, tax and line items are filled and whether they add up (to the cent or two)."""
    sub, tax = _decimal(data.get("subtotal")), _decimal(data.get("tax_total"))
    items = data.get("line_items") or []
    amounts = [_decimal(it.get("amount") if isinstance(it, dict) else getattr(it, "amount", None)) for it in items]
    out = {"subtotal_tax": sub is not None and tax is not None, "items": len(items)}
    out["subtotal_tax_ok"] = bool(out["subtotal_tax"] and total is not None
                                  and abs(sub + tax - total) <= Decimal("0.02"))
    target = sub if sub is not None else (total - (tax or 0) if total is not None else None)
    out["items_ok"] = bool(items and target is not None and None not in amounts
                           and abs(sum(amounts, Decimal(0)) - target) <= Decimal("0.01") * (len(amounts) + 1))
    return out


def report(rows: list[dict]) -> str:
    lines = []
    for which in ("tune", "test"):
        part = [r for r in rows if r["half"] == which]
        cells = [f"{f} {ok}/{m} = {ok / m:.2f}" for f, ok, m in field_tally(part, FIELDS)]
        through, right, scored = straight_through(part)
        lines.append(f"{which} half ({len(part)} receipts): " + ", ".join(cells))
        lines.append(f"  straight through: {through} of {len(part)}; their fields right: {right}/{scored}")
        rec = [r.get("reconcile", {}) for r in part]
        lines.append(f"  subtotal and tax filled: {sum(bool(c.get('subtotal_tax')) for c in rec)}, adding up to the "
                     f"total: {sum(bool(c.get('subtotal_tax_ok')) for c in rec)}; line items filled: "
                     f"{sum(bool(c.get('items')) for c in rec)}, adding up: {sum(bool(c.get('items_ok')) for c in rec)}")
    return "\n".join(lines)


def _score(args: tuple[Path, dict], engine: str | None = None) -> dict:
    return score(*args, engine=engine)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    engine = None
    if "--engine" in argv:
        at = argv.index("--engine")
        engine = argv[at + 1]
        del argv[at:at + 2]
    return bench_main(__doc__, partial(_score, engine=engine), receipts(), report, argv)


if __name__ == "__main__":
    raise SystemExit(main())
