"""A user's own schema on the layout path (no GPU): purchase orders, delivery notes and bank statements
from sample_docs/other/ (made by sample_docs/make_schema_samples.py), models in sample_docs/schemas_demo.py."""

from __future__ import annotations

import importlib
import json
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError, model_validator

import docroute
from docroute.extractors.fields.schema_labels import field_specs, variants, words_of
from docroute.pipelines.checks import run_checks
from docroute.pipelines.process import process_document
from docroute.pipelines.settings import Settings
from docroute.pipelines.validate import build_extraction, jsonable
from docroute.schemas import FieldValue

from conftest import REPO, SAMPLES, cli

if str(REPO) not in sys.path:  # the demo schemas are imported as the CLI imports them: from the repository root
    sys.path.insert(0, str(REPO))
demo = importlib.import_module("sample_docs.schemas_demo")

OTHER = SAMPLES / "other"
KINDS = {"purchase_orders": demo.PurchaseOrder, "delivery_notes": demo.DeliveryNote,
         "bank_statements": demo.BankStatement}
CASES = [(kind, p) for kind in KINDS for p in sorted((OTHER / kind).glob("*.pdf"))]


def _norm(value):
    if isinstance(value, list):
        return [{k: _norm(v) for k, v in dict(row).items()} for row in value]
    return None if value is None else str(jsonable(value))


def _score(fields: dict, want: dict) -> tuple[int, list]:
    wrong = [(k, v, fields.get(k)) for k, v in want.items() if _norm(fields.get(k)) != _norm(v)]
    return len(want) - len(wrong), wrong


@pytest.mark.parametrize(("kind", "path"), CASES, ids=lambda x: x if isinstance(x, str) else x.name)
def test_fields_match_expected_json(kind, path):
    exp = json.loads(path.with_suffix(".expected.json").read_text())
    schema = KINDS[kind]
    assert exp["schema"] == f"sample_docs.schemas_demo:{schema.__name__}"
    result = process_document(path, Settings(workers=1, vlm={"backend": "none"}), schema=schema)
    ex = result.extractions[0]
    assert result.status == "ok" and ex.schema_name == schema.schema_name
    correct, wrong = _score(ex.data, exp["fields"])
    scanned = not all(exp["has_text_layer"])
    assert correct / len(exp["fields"]) >= (0.8 if scanned else 1.0), wrong
    for name, fv in ex.fields.items():  # provenance like the invoice fields
        assert fv.page_number == 1 and fv.bbox is not None and fv.raw_text and 0 < fv.confidence <= 1, name
        assert fv.source == ("ocr" if scanned else "layout"), name
    if not scanned:
        assert not ex.needs_review, ex.review_reasons  # every field found, the declared checks hold


def _put(page, x, y, text, size=9, font="helv"):
    page.insert_text((x, y), text, fontsize=size, fontname=font)


def test_other_layouts_key_value_grid_and_french(tmp_path):
    """Layouts the samples do not have: a ruled key-value grid with a bare "Date", a "Pos" column and a
    European total; a French delivery note with "N° de bon de livraison :" and "Quantité totale"."""
    import pymupdf

    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    for i, (label, value) in enumerate([("Purchase Order No.", "4500012345"), ("Date", "15 March 2024"),
                                        ("Vendor", "Delta Components BV"), ("Ship Date", "2024-04-01")]):
        y = 100 + i * 20
        page.draw_rect(pymupdf.Rect(330, y, 555, y + 20), width=0.5)
        _put(page, 335, y + 14, label)
        _put(page, 435, y + 14, value)
    for x, head in zip((44, 94, 334, 404, 484), ("Pos", "Article", "Qty.", "Price/Unit", "Total"), strict=True):
        _put(page, x, 290, head, font="hebo")
    rows = [("1", "Servo motor SM-200", "4", "120,00", "480,00"), ("2", "Cable harness 2 m", "10", "8,25", "82,50")]
    for r, row in enumerate(rows):
        for x, cell in zip((44, 94, 334, 404, 484), row, strict=True):
            _put(page, x, 310 + r * 18, cell)
    _put(page, 400, 380, "Total EUR", 10, "hebo")
    _put(page, 500, 380, "562,50", 10, "hebo")
    doc.save(tmp_path / "po.pdf")
    po = docroute.extract(tmp_path / "po.pdf", schema=demo.PurchaseOrder, vlm={"backend": "none"}).value
    assert (po.po_number, po.order_date, po.delivery_date, po.supplier) == (
        "4500012345", date(2024, 3, 15), date(2024, 4, 1), "Delta Components BV")
    assert po.total == Decimal("562.50") and [(x.description, x.amount) for x in po.lines] == [
        ("Servo motor SM-200", Decimal("480.00")), ("Cable harness 2 m", Decimal("82.50"))]

    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    for x, y, text in [(40, 100, "N° de bon de livraison : BL-77812"), (300, 100, "Transporteur : Geodis"),
                       (40, 120, "Votre commande : CMD-5521"), (300, 120, "Colis : 3"),
                       (40, 140, "Destinataire : Boulangerie Martin"), (300, 140, "Date de livraison : 03/05/2024"),
                       (40, 260, "Quantité totale : 18")]:
        _put(page, x, y, text, 10)
    for x, head in zip((40, 140, 380, 470), ("Code", "Désignation", "Quantité", "Unité"), strict=True):
        _put(page, x, 190, head, font="hebo")
    for r, row in enumerate([("FA-01", "Farine T55 25 kg", "12", "sacs"), ("LV-10", "Levure fraîche", "6", "pcs")]):
        for x, cell in zip((40, 140, 380, 470), row, strict=True):
            _put(page, x, 210 + r * 16, cell)
    doc.save(tmp_path / "bl.pdf")
    dn = docroute.extract(tmp_path / "bl.pdf", schema=demo.DeliveryNote, vlm={"backend": "none"}).value
    assert (dn.delivery_note_number, dn.order_reference, dn.recipient, dn.carrier, dn.packages, dn.total_quantity) == (
        "BL-77812", "CMD-5521", "Boulangerie Martin", "Geodis", 3, Decimal("18"))
    assert dn.delivery_date == date(2024, 5, 3)  # a French page reads an undecided date day first
    assert [(i.description, i.quantity, i.unit) for i in dn.items] == [
        ("Farine T55 25 kg", Decimal("12"), "sacs"), ("Levure fraîche", Decimal("6"), "pcs")]


def test_labels_above_values_and_a_totals_block(tmp_path):
    """Labels above values without boxes, "Supplier:" beside another label, right-aligned money columns,
    a subtotal / tax / total block under the table (it ends the table), no currency label ($ amounts)."""
    import pymupdf

    doc = pymupdf.open()
    page = doc.new_page(width=612, height=792)

    def put(x, y, text, font="helv", right=False):
        x -= pymupdf.get_text_length(text, fontname=font, fontsize=9) if right else 0
        page.insert_text((x, y), text, fontsize=9, fontname=font)

    for x, label, value in [(40, "P.O. Number", "NW-77310"), (200, "Order Date", "April 8, 2024"),
                            (360, "Requested Delivery", "May 1, 2024")]:
        put(x, 80, label, "hebo")
        put(x, 93, value)
    put(40, 130, "Supplier:", "hebo")
    put(300, 130, "Ship To:", "hebo")
    put(40, 143, "Blue Harbor Packaging Co.")
    put(300, 143, "Northwind Traders Warehouse 2")
    heads = ("Part No.", "Description", "Qty Ordered", "Unit Cost", "Ext. Price")
    rows = [heads, ("BX-100", "Shipping box 40x30x20", "200", "$0.85", "$170.00"),
            ("TP-220", "Packing tape, clear", "48", "$2.10", "$100.80")]
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            put([42, 112][c] if c < 2 else [0, 0, 416, 496, 568][c], 200 + 16 * r, cell, "hebo" if r == 0 else "helv", c >= 2)
    for i, (label, value) in enumerate([("Subtotal", "$270.80"), ("Sales Tax 8%", "$21.66"), ("Total", "$292.46")]):
        put(490, 260 + 16 * i, label, "hebo", True)
        put(568, 260 + 16 * i, value, "helv", True)
    doc.save(tmp_path / "po.pdf")
    got = docroute.extract(tmp_path / "po.pdf", schema=demo.PurchaseOrder, vlm={"backend": "none"})
    po = got.value
    assert (po.po_number, po.order_date, po.delivery_date, po.supplier, po.currency, po.total) == (
        "NW-77310", date(2024, 4, 8), date(2024, 5, 1), "Blue Harbor Packaging Co.", "USD", Decimal("292.46"))
    assert [(x.item_code, x.quantity, x.unit_price, x.amount) for x in po.lines] == [
        ("BX-100", 200, Decimal("0.85"), Decimal("170.00")), ("TP-220", 48, Decimal("2.10"), Decimal("100.80"))]
    # this schema's check says the lines sum to the total; here the total includes tax: flagged
    assert "check_failed:sum(lines[].amount) == total" in got.review_reasons


def test_german_statement_with_the_opening_balance_as_first_table_row(tmp_path):
    import pymupdf

    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)

    def put(x, y, text, right=False):
        x -= pymupdf.get_text_length(text, fontname="helv", fontsize=9) if right else 0
        page.insert_text((x, y), text, fontsize=9, fontname="helv")

    for x, y, text in [(40, 80, "Kontoinhaber: Elbe Software GmbH"), (320, 80, "IBAN: DE44 5001 0517 5407 3249 31"),
                       (40, 96, "Datum: 30.04.2024"), (320, 96, "Währung: EUR")]:
        put(x, y, text)
    rows = [("Buchungstag", "Verwendungszweck", "Betrag", "Saldo"), ("", "Alter Kontostand", "", "1.000,00"),
            ("02.04.2024", "Miete April", "-750,00", "250,00"), ("15.04.2024", "Gutschrift Kunde 4711", "1.200,00", "1.450,00")]
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            put([40, 110, 480, 555][c], 140 + 16 * r, cell, c >= 2)
    put(40, 220, "Neuer Kontostand")
    put(555, 220, "1.450,00", True)
    doc.save(tmp_path / "ka.pdf")
    got = docroute.extract(tmp_path / "ka.pdf", schema=demo.BankStatement, vlm={"backend": "none"})
    st = got.value
    assert (st.account_holder, st.account_number, st.statement_date, st.currency) == (
        "Elbe Software GmbH", "DE44 5001 0517 5407 3249 31", date(2024, 4, 30), "EUR")
    assert (st.opening_balance, st.closing_balance) == (Decimal("1000.00"), Decimal("1450.00"))
    assert [(t.booked_on, t.amount) for t in st.transactions] == [
        (date(2024, 4, 2), Decimal("-750.00")), (date(2024, 4, 15), Decimal("1200.00"))]
    assert not got.needs_review, got.review_reasons  # the opening balance plus the amounts is the closing one


def test_a_table_header_on_two_lines(tmp_path):
    import pymupdf

    doc = pymupdf.open()
    page = doc.new_page(width=612, height=792)

    def put(x, y, text, right=False, font="helv"):
        x -= pymupdf.get_text_length(text, fontname=font, fontsize=9) if right else 0
        page.insert_text((x, y), text, fontsize=9, fontname=font)

    put(40, 80, "PO Number: 88-1204")
    for x, y, text, right in [(42, 190, "Item", False), (112, 190, "Description", False), (416, 182, "Unit", True),
                              (416, 192, "Price", True), (496, 182, "Qty", True), (568, 182, "Line", True),
                              (568, 192, "Total", True)]:
        put(x, y, text, right, "hebo")
    for r, row in enumerate([("A-1", "Widget, large", "12.00", "3", "36.00"), ("B-2", "Gadget", "4.50", "10", "45.00")]):
        for c, cell in enumerate(row):
            put([42, 112, 416, 496, 568][c], 212 + r * 16, cell, c >= 2)
    doc.save(tmp_path / "po.pdf")
    po = docroute.extract(tmp_path / "po.pdf", schema=demo.PurchaseOrder, vlm={"backend": "none"}).value
    assert [(x.description, x.quantity, x.unit_price, x.amount) for x in po.lines] == [
        ("Widget, large", 3, Decimal("12.00"), Decimal("36.00")), ("Gadget", 10, Decimal("4.50"), Decimal("45.00"))]


def test_labels_come_from_the_model():
    assert words_of("poNumber") == "po number" == words_of("po_number")
    assert {"po no", "po #", "purchase order number", "bestellnummer"} <= set(variants("po number"))
    specs = {s.name: s for s in field_specs(demo.PurchaseOrder)}
    assert specs["delivery_date"].kind == "date" and ("required by", 1.0) in specs["delivery_date"].labels
    assert specs["po_number"].kind == "text" and ("purchase order number", 0.9) in specs["po_number"].labels
    assert specs["currency"].kind == "choice" and ("EUR", "EUR") in specs["currency"].choices
    assert specs["lines"].kind == "table" and [c.name for c in specs["lines"].columns][:2] == ["item_code", "description"]
    assert {s.name: s.kind for s in field_specs(demo.DeliveryNote)}["received_in_good_condition"] == "bool"


def _po(**changes) -> demo.PurchaseOrder:
    lines = [demo.POLine(quantity=Decimal(2), unit_price=Decimal("1.50"), amount=Decimal("3.00")),
             demo.POLine(quantity=Decimal(1), unit_price=Decimal("4.00"), amount=Decimal("4.00"))]
    return demo.PurchaseOrder(**({"total": Decimal("7.00"), "lines": lines} | changes))


def test_declared_checks_become_review_reasons():
    assert run_checks(_po()) == []
    assert run_checks(_po(total=Decimal("7.01"))) == []  # a cent of rounding slack
    assert run_checks(_po(total=Decimal("9.00"))) == ["check_failed:sum(lines[].amount) == total"]
    bad_row = _po(lines=[demo.POLine(quantity=Decimal(2), unit_price=Decimal("1.50"), amount=Decimal("7.00"))])
    assert "check_failed:lines[].quantity * lines[].unit_price == lines[].amount:1" in run_checks(bad_row)
    assert run_checks(_po(total=None)) == []  # a value is missing: not applicable
    assert run_checks(_po(), ["total === 1"]) == ["invalid_check:total === 1"]
    fields = {"total": FieldValue(name="total", value=Decimal("9.00"), confidence=0.9, source="layout"),
              "lines": FieldValue(name="lines", value=[dict(r) for r in _po().model_dump()["lines"]],
                                  confidence=0.9, source="layout")}
    ex = build_extraction(demo.PurchaseOrder, fields)
    assert "check_failed:sum(lines[].amount) == total" in ex.review_reasons and "missing:po_number" in ex.review_reasons
    rows = [dict(r) for r in _po().model_dump()["lines"]]
    rows[1]["amount"] = None  # a cell the table reader did not read, in a column the other rows have
    ex = build_extraction(demo.PurchaseOrder, {"lines": FieldValue(name="lines", value=rows, confidence=0.9, source="ocr")})
    assert "missing:lines[2].amount" in ex.review_reasons and "missing:lines[1].item_code" not in ex.review_reasons


class Signed(demo.DeliveryNote):
    @model_validator(mode="after")
    def _received(self):
        if self.delivery_note_number and self.received_in_good_condition is False:
            raise ValueError("delivered goods must be signed for")
        return self


def test_a_model_validator_error_is_a_review_reason_and_keeps_the_values():
    with pytest.raises(ValidationError):
        Signed(delivery_note_number="DN-1", received_in_good_condition=False)
    fields = {"delivery_note_number": FieldValue(name="delivery_note_number", value="DN-1", confidence=0.9, source="layout"),
              "received_in_good_condition": FieldValue(name="received_in_good_condition", value=False, confidence=0.9,
                                                       source="layout")}
    ex = build_extraction(Signed, fields)
    assert "check_failed:delivered goods must be signed for" in ex.review_reasons
    assert ex.data["delivery_note_number"] == "DN-1" and not ex.validation_errors


def test_python_api_extracts_one_document_in_memory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing is written
    got = docroute.extract(OTHER / "bank_statements" / "bank_statement_a.pdf", schema=demo.BankStatement,
                           vlm={"backend": "none"})
    assert isinstance(got.value, demo.BankStatement) and got.status == "ok" and not got.needs_review
    assert got.value.statement_date == date(2024, 3, 31) and got.value.closing_balance == Decimal("5404.11")
    assert len(got.value.transactions) == 5 and got.value.transactions[0].amount == Decimal("-86.40")
    assert got.fields["closing_balance"].raw_text == "5,404.11" and got.confidence("closing_balance") > 0.6
    with pytest.raises(ValidationError):
        got.status = "failed"  # frozen
    assert list(tmp_path.iterdir()) == []
    by_name = docroute.extract(OTHER / "purchase_orders" / "purchase_order_a.pdf",
                               schema="sample_docs.schemas_demo:PurchaseOrder", vlm={"backend": "none"})
    assert by_name.value.po_number == "PO-2024-0815"


def _labels_file(path: Path, files: list[Path]) -> Path:
    docs = [{"file": f.name, "fields": json.loads(f.with_suffix(".expected.json").read_text())["fields"]} for f in files]
    path.write_text(json.dumps({"documents": docs}))
    return path


@pytest.mark.prefect
@pytest.mark.parametrize("kind", list(KINDS))
def test_cli_run_with_own_schema_and_eval(kind, prefect_api, tmp_path):
    schema = KINDS[kind]
    out = tmp_path / "out"
    proc = cli(["run", str(OTHER / kind), "--out", str(out), "--schema", f"sample_docs.schemas_demo:{schema.__name__}"],
               api_url=prefect_api, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (out / "extractions" / schema.schema_name).is_dir()
    docs = sorted((OTHER / kind).glob("*.pdf"))
    for subset, floor in (("digital", 0.9), ("scanned", 0.8)):
        files = [f for f in docs if ("scanned" in f.name) == (subset == "scanned")]
        labels = _labels_file(tmp_path / f"{subset}.json", files)
        proc = cli(["eval", str(labels), "--out", str(out), "--schema", schema.schema_name], api_url=prefect_api, cwd=REPO)
        assert proc.returncode == 0, proc.stderr
        report = json.loads((out / "eval.json").read_text())
        correct = sum(s["correct"] for s in report["per_field"].values())
        labelled = sum(s["labelled"] for s in report["per_field"].values())
        assert labelled and correct / labelled >= floor, (subset, report["per_field"])
