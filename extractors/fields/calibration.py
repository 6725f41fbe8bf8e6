"""Calibrated field confidence: the layout path's raw confidence -> the probability the value is right.

A field's raw confidence (word confidence x candidate quality, :func:`common.to_field`; the receipt
rules' own) orders values well but is not a probability. ``calibration.json`` (next to this module)
holds one monotone map per group, fitted by ``python bench/calibrate.py --write`` on the tuning half
of the realdocs invoices and receipts (isotonic regression, each step smoothed towards the group's
rate; see the bench's docstring). A group is ``<kind>/<source>``: the field's kind (:data:`KIND_OF`)
and where its words came from (``layout``: a text layer; ``ocr``). A group the fit saw too few
values of falls back to ``*/<source>``, then ``*/*``; with no file, or no map at all, the confidence
is left as it is.

File format: ``{"maps": {"money/ocr": {"x": [raw, ...], "y": [p, ...], "n": values}, ...}, ...}``: a
step map, ``y[i]`` from ``x[i]`` (a block's lowest raw value) up to the next ``x`` (``x`` increasing,
``y`` non-decreasing; below ``x[0]`` the first step).
"""

from __future__ import annotations

import json
from bisect import bisect_right
from functools import cache
from pathlib import Path

from docroute.schemas.values import FieldValue

PATH = Path(__file__).with_name("calibration.json")
KIND_OF = {
    "invoice_number": "id", "payment_reference": "id", "iban": "id",
    "invoice_date": "date", "due_date": "date",
    "total": "money", "subtotal": "money", "tax_total": "money", "amount_due": "money",
    "vendor_name": "party", "customer_name": "party", "vendor_address": "address", "customer_address": "address",
    "currency": "code",
}
SKIP = {"line_items"}  # a table's confidence is its cells'; not calibrated here
SOURCES = ("layout", "ocr", "derived")  # the layout path's values (the VLM's and machine-readable ones aside)


def is_calibrated(name: str, fv: FieldValue) -> bool:
    """Whether the field's confidence goes through the map (so means the probability of being right)."""
    return name not in SKIP and fv.source in SOURCES


def group_of(name: str, source: str) -> tuple[str, str]:
    return KIND_OF.get(name, "other"), "ocr" if source == "ocr" else "layout"


@cache
def maps(path: Path = PATH) -> dict[str, dict]:
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8")).get("maps", {})


def apply_map(knots: dict, raw: float) -> float:
    """The step at ``raw``: the rate of the last block starting at or below it (the first block below all)."""
    return knots["y"][max(0, bisect_right(knots["x"], raw) - 1)]


def calibrated(name: str, source: str, raw: float, table: dict[str, dict] | None = None) -> float:
    table = maps() if table is None else table
    kind, src = group_of(name, source)
    knots = table.get(f"{kind}/{src}") or table.get(f"*/{src}") or table.get("*/*")
    return raw if knots is None else round(apply_map(knots, raw), 4)


def calibrate_fields(fields: dict[str, FieldValue], table: dict[str, dict] | None = None) -> dict[str, FieldValue]:
    """The layout path's fields with their confidence calibrated (line items and machine values kept)."""
    table = maps() if table is None else table
    if not table:
        return fields
    return {name: fv.model_copy(update={"confidence": calibrated(name, fv.source, fv.confidence, table)})
            if is_calibrated(name, fv) else fv
            for name, fv in fields.items()}
