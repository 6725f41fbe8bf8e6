"""Validation: pydantic types, arithmetic reconciliation, review reasons."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

from docroute.pipelines.validate import (
    REVIEW_CONFIDENCE,
    STRAIGHT_THROUGH_CONFIDENCE,
    build_extraction,
    invoice_checks,
)
from docroute.schemas import BBox, FieldValue
from docroute.schemas.targets import Invoice, LineItem


def fv(name, value, conf=0.995, source="layout"):  # a field the calibration says is right 99.5 times in 100
    return FieldValue(name=name, value=value, confidence=conf, source=source, page_number=1,
                      bbox=BBox(x0=1, y0=2, x1=3, y1=4), raw_text=str(value))


def items(*triples):
    return [{"description": f"item {i}", "quantity": Decimal(q), "unit_price": Decimal(u), "amount": Decimal(a)}
            for i, (q, u, a) in enumerate(triples)]


def consistent_fields():
    return {
        "invoice_number": fv("invoice_number", "INV-1"),
        "invoice_date": fv("invoice_date", date(2024, 3, 15)),
        "due_date": fv("due_date", date(2024, 4, 14)),
        "currency": fv("currency", "EUR"),
        "subtotal": fv("subtotal", Decimal("30.00")),
        "tax_total": fv("tax_total", Decimal("6.00")),
        "total": fv("total", Decimal("36.00")),
        "line_items": fv("line_items", items(("2", "5.00", "10.00"), ("4", "5.00", "20.00"))),
    }


def test_consistent_invoice_needs_no_review():
    ex = build_extraction(Invoice, consistent_fields())
    assert ex.needs_review is False and ex.review_reasons == () and ex.validation_errors == ()
    assert ex.data["total"] == Decimal("36.00") and ex.data["invoice_date"] == date(2024, 3, 15)
    raw = json.loads(ex.raw_json)
    assert raw["layout"]["total"]["value"] == "36.00"


def test_each_arithmetic_and_date_mismatch_is_a_review_reason():
    f = consistent_fields()
    f["total"] = fv("total", Decimal("37.00"))
    f["due_date"] = fv("due_date", date(2024, 3, 1))
    f["line_items"] = fv("line_items", items(("2", "5.00", "11.00"), ("4", "5.00", "20.00")))
    ex = build_extraction(Invoice, f)
    assert ex.needs_review
    assert {"total_mismatch", "due_date_before_invoice_date", "line_item_amount_mismatch:1",
            "line_items_sum_mismatch"} <= set(ex.review_reasons)


def test_rounding_within_a_cent_is_accepted():
    inv = Invoice(subtotal=Decimal("10.00"), tax_total=Decimal("1.905"), total=Decimal("11.91"),
                  line_items=[LineItem(quantity=Decimal("3"), unit_price=Decimal("3.333"), amount=Decimal("10.00"))])
    assert invoice_checks(inv) == []


def test_amount_due_is_never_more_than_the_total_credit_notes_aside():
    paid_part = Invoice(subtotal=Decimal("30.00"), tax_total=Decimal("6.00"), total=Decimal("36.00"),
                        amount_due=Decimal("16.00"))
    assert invoice_checks(paid_part) == []
    assert invoice_checks(paid_part.model_copy(update={"amount_due": Decimal("36.00")})) == []
    assert invoice_checks(paid_part.model_copy(update={"amount_due": Decimal("46.00")})) == ["amount_due_exceeds_total"]
    credit = Invoice(subtotal=Decimal("-30.00"), tax_total=Decimal("-6.00"), total=Decimal("-36.00"),
                     amount_due=Decimal("-36.00"))
    assert invoice_checks(credit) == []
    f = consistent_fields() | {"amount_due": fv("amount_due", Decimal("40.00"))}
    ex = build_extraction(Invoice, f)
    assert ex.data["amount_due"] == Decimal("40.00") and "amount_due_exceeds_total" in ex.review_reasons


def test_invalid_field_is_dropped_and_reported_not_fatal():
    f = consistent_fields()
    f["currency"] = fv("currency", "euro")
    ex = build_extraction(Invoice, f)
    assert ex.data["currency"] is None and ex.data["total"] == Decimal("36.00")
    assert any(e.startswith("currency") for e in ex.validation_errors)
    assert "validation_errors" in ex.review_reasons and "currency" not in ex.fields


def test_missing_low_confidence_and_vlm_unavailable_are_flagged():
    f = consistent_fields()
    del f["invoice_number"]
    f["total"] = fv("total", Decimal("36.00"), conf=0.3)
    ex = build_extraction(Invoice, f, routed_pages=[1], vlm_status="unavailable")
    assert {"missing:invoice_number", "low_confidence:total", "vlm_unavailable"} <= set(ex.review_reasons)


def test_a_total_nothing_reconciles_is_not_a_pass():
    """A total without subtotal or complete line items: the check could not run, and that is no pass."""
    alone = Invoice(total=Decimal("19.00"))
    assert invoice_checks(alone) == ["total_unreconciled"]
    f = consistent_fields()
    del f["subtotal"], f["tax_total"], f["line_items"]
    ex = build_extraction(Invoice, f)
    assert ex.needs_review and "total_unreconciled" in ex.review_reasons
    by_lines = Invoice(total=Decimal("36.00"), tax_total=Decimal("6.00"),
                       line_items=[LineItem(amount=Decimal("10.00")), LineItem(amount=Decimal("20.00"))])
    assert invoice_checks(by_lines) == [], "line items plus tax reconcile a total without a subtotal"
    assert invoice_checks(Invoice(total=Decimal("36.00"), line_items=[LineItem(amount=Decimal("10.00")),
                                                                       LineItem(amount=None)])) == ["total_unreconciled"]


def test_a_missing_subtotal_or_tax_is_never_straight_through():
    """Straight through needs the amounts reconciled; a check that could not run is a named reason."""
    for gone, reason in (("subtotal", "unreconciled:no_subtotal"), ("tax_total", "unreconciled:no_tax_total"),
                         ("line_items", "unreconciled:no_line_items")):
        f = consistent_fields()
        del f[gone]
        ex = build_extraction(Invoice, f)
        assert ex.needs_review and reason in ex.review_reasons, (gone, ex.review_reasons)
    f = consistent_fields()
    f["line_items"] = fv("line_items", [{"description": "a", "amount": Decimal("30.00")}, {"description": "b"}])
    assert "unreconciled:line_item_without_amount" in build_extraction(Invoice, f).review_reasons
    # a document the schema does not describe (a letter) has nothing to reconcile
    assert not any(r.startswith("unreconciled") for r in build_extraction(Invoice, {}, not_applicable="other").review_reasons)


def test_a_reconciled_confident_invoice_goes_straight_through_and_a_doubtful_field_stops_it():
    assert build_extraction(Invoice, consistent_fields()).needs_review is False
    f = consistent_fields()
    f["vendor_name"] = fv("vendor_name", "ACME GmbH", conf=REVIEW_CONFIDENCE - 0.01)
    ex = build_extraction(Invoice, f)
    assert ex.needs_review and ex.review_reasons == ("low_confidence:vendor_name",)
    # likely right, but not right 99 times in 100: nothing contradicts it, and still a person looks
    f["vendor_name"] = fv("vendor_name", "ACME GmbH", conf=STRAIGHT_THROUGH_CONFIDENCE - 0.02)
    assert build_extraction(Invoice, f).review_reasons == ("unsure:vendor_name",)
    # the VLM's and machine-readable values are not calibrated probabilities: the bar is not theirs
    f["vendor_name"] = fv("vendor_name", "ACME GmbH", conf=STRAIGHT_THROUGH_CONFIDENCE - 0.02, source="vlm")
    assert build_extraction(Invoice, f).needs_review is False
