"""Merge + validate: pydantic validation, arithmetic and date checks, review flags.

Code checks what models and parsers are bad at: line amounts against quantity x unit price, line items
against the subtotal, subtotal plus tax against the total, the amount due against the total (never more,
credit notes' negative amounts aside), the due date against the invoice date; for any
schema, the checks it declares (pipelines/checks.py) and its own model validators. Each failed check,
missing key field, low-confidence field or unavailable VLM is a review reason.

Straight through (``needs_review`` false) means: every field's confidence at least
``REVIEW_CONFIDENCE``, and, for an invoice or receipt, its amounts reconciled — an amount check that
could not run because a term is missing is a reason of its own (:func:`checks_not_run`), never a pass —
and every field the layout path read at least ``STRAIGHT_THROUGH_CONFIDENCE`` (calibrated: the
probability of being right, extractors/fields/calibration.py; ``unsure:<field>`` otherwise): what
goes to a warehouse unreviewed should be right 99 times in 100, so a field the calibration gives less
waits for a person even when nothing contradicts it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from docroute.extractors.fields.calibration import is_calibrated
from docroute.pipelines.checks import run_checks
from docroute.schemas import Extraction, FieldValue
from docroute.schemas.targets import Invoice, TargetSchema

KEY_FIELDS = {"invoice": ("invoice_number", "invoice_date", "total")}
REVIEW_CONFIDENCE = 0.6
STRAIGHT_THROUGH_CONFIDENCE = 0.99  # the share of straight-through fields that must be right (issue 14)
CENT = Decimal("0.01")


def _tolerance(*values: Decimal) -> Decimal:
    """Rounding slack: a cent per term, or 0.1% of the largest value."""
    return max(CENT * len(values), max((abs(v) for v in values), default=Decimal(0)) * Decimal("0.001"))


def _close(a: Decimal, b: Decimal, terms: int = 1) -> bool:
    return abs(a - b) <= _tolerance(*([a] * terms), b)


def invoice_checks(inv: Invoice) -> list[str]:
    reasons = []
    amounts = []
    for i, item in enumerate(inv.line_items, start=1):
        if item.quantity is not None and item.unit_price is not None and item.amount is not None:
            if not _close(item.quantity * item.unit_price, item.amount):
                reasons.append(f"line_item_amount_mismatch:{i}")
        amounts.append(item.amount)
    if inv.subtotal is not None and amounts and all(a is not None for a in amounts):
        if not _close(sum(amounts, Decimal(0)), inv.subtotal, terms=len(amounts)):
            reasons.append("line_items_sum_mismatch")
    reconciled = False
    if inv.subtotal is not None and inv.total is not None:
        reconciled = _close(inv.subtotal + (inv.tax_total or Decimal(0)), inv.total, terms=2)
        if not reconciled:
            reasons.append("total_mismatch")
    elif inv.total is not None and amounts and all(a is not None for a in amounts):
        reconciled = _close(sum(amounts, Decimal(0)) + (inv.tax_total or Decimal(0)), inv.total, terms=len(amounts) + 1)
    if inv.total is not None and not reconciled and "total_mismatch" not in reasons:
        # no subtotal and no complete line items: the check could not run, and that is not a pass
        reasons.append("total_unreconciled")
    if inv.amount_due is not None and inv.total is not None and inv.amount_due >= 0 and inv.total >= 0 \
            and inv.amount_due > inv.total + _tolerance(inv.total):
        reasons.append("amount_due_exceeds_total")  # what is left to pay is never more than the grand total
    if inv.invoice_date and inv.due_date and inv.due_date < inv.invoice_date:
        reasons.append("due_date_before_invoice_date")
    return reasons


def checks_not_run(inv: Invoice) -> list[str]:
    """The amount checks that could not run for want of a field: ``unreconciled:no_<field>``.

    A document goes straight through only when its amounts reconcile (subtotal + tax = total, line
    items sum to the subtotal): a check that could not run is not a pass, so each missing term is a
    review reason of its own (a missing total is ``missing:total`` already)."""
    reasons = [f"unreconciled:no_{name}" for name in ("subtotal", "tax_total") if getattr(inv, name) is None]
    if not inv.line_items:
        reasons.append("unreconciled:no_line_items")
    elif any(item.amount is None for item in inv.line_items):
        reasons.append("unreconciled:line_item_without_amount")
    return reasons


RECONCILE = {"total_mismatch": ("subtotal", "tax_total", "total"), "total_unreconciled": ("total",),
             "line_items_sum_mismatch": ("line_items", "subtotal"), "unreconciled:no_subtotal": ("subtotal",),
             "unreconciled:no_tax_total": ("tax_total",), "unreconciled:no_line_items": ("line_items",),
             "unreconciled:line_item_without_amount": ("line_items",)}


def extraction_problems(schema: type[TargetSchema], fields: dict[str, FieldValue]) -> dict[str, tuple[str, float, int | None]]:
    """What makes the layout path's fields doubtful, per field: (why, confidence, page read from).

    A required field missing, amounts that do not reconcile (or could not be checked), a field under
    ``REVIEW_CONFIDENCE``: the triggers of the router's second step (route.escalate, policy v3)."""
    reasons = build_extraction(schema, fields).review_reasons
    out: dict[str, tuple[str, float, int | None]] = {}
    for reason in reasons:
        kind, _, name = reason.partition(":")
        if kind == "missing" and name in schema.model_fields:
            out[name] = ("missing", 0.0, None)
        elif kind == "low_confidence" and name in fields:
            fv = fields[name]
            out.setdefault(name, (f"confidence {fv.confidence:.2f} < {REVIEW_CONFIDENCE:.2f}", fv.confidence, fv.page_number))
        elif reason in RECONCILE or kind == "line_item_amount_mismatch":
            for f in RECONCILE.get(reason, ("line_items",)):
                fv = fields.get(f)
                why = "missing, the amounts cannot be reconciled" if fv is None else f"does not reconcile ({reason})"
                out.setdefault(f, (why, 0.0, fv.page_number if fv else None))
    return out


def _validate(schema: type[BaseModel], data: dict[str, Any]) -> tuple[BaseModel, list[str], list[str]]:
    """Validate; fields that fail are dropped (null) and reported rather than failing the document.

    Returns the model, the field errors, and the errors of the schema's own model validators (errors
    with no field: its checks), which keep the values and become ``check_failed:`` reasons."""
    errors: list[str] = []
    current = dict(data)
    for _ in range(len(current) + 1):
        try:
            return schema.model_validate(current), errors, []
        except ValidationError as exc:
            bad = {str(err["loc"][0]) for err in exc.errors() if err["loc"]}
            errors += [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors() if e["loc"]]
            if not bad - {"__root__"}:
                root = [e["msg"].removeprefix("Value error, ") for e in exc.errors() if not e["loc"]]
                return _construct(schema, current), errors, root
            current = {k: v for k, v in current.items() if k not in bad}
    return schema.model_validate({}), errors, []


def _construct(schema: type[BaseModel], data: dict[str, Any]) -> BaseModel:
    """The model with each field validated on its own, the model validators skipped (they failed)."""
    values = {k: TypeAdapter(schema.model_fields[k].annotation).validate_python(v) for k, v in data.items()}
    return schema.model_construct(_fields_set=set(values), **values)


def _gaps(rows: Any) -> list[tuple[int, str]]:
    """Empty cells of a table field: (row from 1, column) where the column has a value in another row."""
    if not isinstance(rows, list) or not rows or not all(isinstance(r, BaseModel) for r in rows):
        return []
    cols = [c for c in type(rows[0]).model_fields if any(getattr(r, c, None) is not None for r in rows)]
    return [(i, c) for i, r in enumerate(rows, start=1) for c in cols if getattr(r, c, None) is None]


def key_fields(schema: type[TargetSchema]) -> tuple[str, ...]:
    """Fields whose absence is a ``missing:`` review reason: the invoice's key fields, a schema's own
    ``json_schema_extra={"key_fields": [...]}``, else every field of a user's schema (none for the
    built-in VLM schemas)."""
    if schema.schema_name in KEY_FIELDS:
        return KEY_FIELDS[schema.schema_name]
    extra = schema.model_config.get("json_schema_extra")
    if isinstance(extra, dict) and "key_fields" in extra:
        return tuple(extra["key_fields"])
    return () if schema.__module__ == TargetSchema.__module__ else tuple(schema.model_fields)


def jsonable(value: Any) -> Any:
    """Decimals and dates as strings, recursively: the JSON form of extracted values."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _empty(value: Any) -> bool:
    return value is None or value == [] or value == ""


def merge_fields(
    layout: dict[str, FieldValue], vlm: dict[str, FieldValue]
) -> tuple[dict[str, FieldValue], dict[str, str]]:
    """Per field, the value of the more confident source; a missing value never beats a present one.

    Returns the merged fields (each keeps its own source, so ``field_source`` names the winner) and,
    per field, which source won. A tie keeps the layout value.
    """
    merged: dict[str, FieldValue] = {}
    winner: dict[str, str] = {}
    for name in dict.fromkeys([*layout, *vlm]):
        lv, vv = layout.get(name), vlm.get(name)
        if vv is None or _empty(vv.value):
            pick = lv
        elif lv is None or _empty(lv.value):
            pick = vv
        else:
            pick = vv if vv.confidence > lv.confidence else lv
        if pick is None:
            continue  # only the VLM saw the field, and it saw no value (kept in raw_json)
        merged[name] = pick
        winner[name] = "vlm" if pick is vv else "layout"
    return merged, winner


def _raw_fields(fields: dict[str, FieldValue]) -> dict[str, dict[str, Any]]:
    return {name: {"value": jsonable(fv.value), "confidence": fv.confidence, "source": fv.source,
                   "page": fv.page_number, "raw_text": fv.raw_text} for name, fv in fields.items()}


def build_extraction(
    schema: type[TargetSchema],
    fields: dict[str, FieldValue],
    *,
    routed_pages: Sequence[int] = (),
    vlm_status: str = "not_routed",
    model: str | None = None,
    extra_reasons: Sequence[str] = (),
    vlm_fields: dict[str, FieldValue] | None = None,
    raw_extra: dict[str, Any] | None = None,
    machine_fields: dict[str, FieldValue] | None = None,
    not_applicable: str | None = None,
) -> Extraction:
    """Validate the fields into ``schema`` and flag what needs review.

    ``not_applicable``: the document is of a type the schema does not describe (a letter for the invoice
    schema): no field was guessed, nothing is missing, and ``raw_json`` says so.

    ``fields`` are the layout path's values; ``vlm_fields`` the VLM's (source ``vlm``, the model's own
    confidence). Both are kept in ``raw_json`` (``layout`` and ``vlm``, with ``merged_from``); the
    extraction takes, per field, the more confident of the two (:func:`merge_fields`), and
    ``field_source`` names the winner.

    ``machine_fields`` (an e-invoice's XML, source ``einvoice``; a payment QR code's, source ``qr``) win
    over both: they are kept in ``raw_json`` as ``machine``, and ``merged_from`` names them.
    """
    layout_fields = fields
    merged_from: dict[str, str] = {}
    if vlm_fields:
        fields, merged_from = merge_fields(fields, vlm_fields)
    if machine_fields:
        fields = {**fields, **machine_fields}
        merged_from |= {name: fv.source for name, fv in machine_fields.items()}
    data = {name: fv.value for name, fv in fields.items() if name in schema.model_fields}
    obj, errors, failed = _validate(schema, data)
    kept = {k: v for k, v in fields.items() if k in obj.model_fields_set}
    reasons: list[str] = list(extra_reasons)
    if not_applicable is None:  # a schema that does not apply to the document misses nothing
        reasons += [f"missing:{name}" for name in key_fields(schema) if getattr(obj, name) in (None, [])]
        if not isinstance(obj, Invoice):
            reasons += [f"missing:{name}[{i}].{col}" for name in key_fields(schema)
                        for i, col in _gaps(getattr(obj, name))]
    if isinstance(obj, Invoice):
        reasons += invoice_checks(obj)
        if not_applicable is None:
            reasons += checks_not_run(obj)
    reasons += run_checks(obj) + [f"check_failed:{msg}" for msg in failed]
    reasons += [f"low_confidence:{name}" for name, fv in sorted(kept.items()) if fv.confidence < REVIEW_CONFIDENCE]
    if isinstance(obj, Invoice):  # its layout fields' confidences are calibrated probabilities
        reasons += [f"unsure:{name}" for name, fv in sorted(kept.items())
                    if is_calibrated(name, fv) and REVIEW_CONFIDENCE <= fv.confidence < STRAIGHT_THROUGH_CONFIDENCE]
    if errors:
        reasons.append("validation_errors")
    if routed_pages and vlm_status != "ok":
        reasons.append("vlm_unavailable" if vlm_status == "unavailable" else f"vlm_{vlm_status}")
    raw: dict[str, Any] = {"layout": _raw_fields(layout_fields), "routed_pages": list(routed_pages)}
    if not_applicable is not None:
        raw["not_applicable"] = not_applicable
    if vlm_fields is not None:
        raw["vlm"] = _raw_fields(vlm_fields)
    if machine_fields:
        raw["machine"] = _raw_fields(machine_fields)
    if vlm_fields is not None or machine_fields:
        raw["merged_from"] = merged_from
    if raw_extra:
        raw.update(jsonable(raw_extra))
    return Extraction(
        schema_name=schema.schema_name,
        schema_version=schema.schema_version,
        data=obj.model_dump(),
        fields=kept,
        needs_review=bool(reasons),
        review_reasons=tuple(dict.fromkeys(reasons)),
        validation_errors=tuple(errors),
        model=model,
        raw_json=json.dumps(raw, sort_keys=True, ensure_ascii=False),
    )
