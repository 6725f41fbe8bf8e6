"""PII redaction: detectors (validated, not bare patterns) and redaction of everything written, with a
record of which kind was redacted where."""

from __future__ import annotations

import json

import pymupdf
import pytest

from docroute.pipelines import pii
from docroute.pipelines.process import process_document
from docroute.pipelines.redact import RedactOptions, redact
from docroute.pipelines.settings import Settings
from docroute.pipelines.sink import DeltaSink, read_tables

PII = {
    "email": ["jane.doe+billing@example.co.uk", "ap@muller-schmidt.de"],
    "phone": ["+49 30 1234567", "(415) 555-0132", "+1 415-555-0132", "020 7946 0958", "01 42 68 53 00",
              "0044 20 7946 0958"],
    "iban": ["DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432", "FR14 2004 1010 0505 0001 3M02 606"],
    "card": ["4111 1111 1111 1111", "5555-5555-5555-4444", "3782 822463 10005"],
    "ssn": ["123-45-6789"],
}
NOT_PII = [
    "Total 164.00 EUR", "164,95", "1,234.56", "Invoice INV-2024-00123", "dated 2024-03-15", "15.03.2024",
    "PO 4500012345", "ref 0301234567", "Siret 53084813400017", "EAN 4006381333931", "New Haven, CT 06520-8283",
    "22,030 136.0", "qty 12 x 84.90", "DE89 3704 0044 0532 0130 01",  # a wrong IBAN check digit
    "4111 1111 1111 1112",  # fails Luhn
    "219-09-9999",  # an SSN the SSA never issues
    "name@localhost",
]


@pytest.mark.parametrize("kind,value", [(k, v) for k, vs in PII.items() for v in vs])
def test_each_kind_is_found_in_running_text(kind, value):
    text = f"Please contact us: {value}. Thank you."
    spans = pii.find(text, pii.KINDS, ("US", "GB", "DE", "FR"))
    assert [(s.kind, text[s.start:s.end]) for s in spans] == [(kind, value)]
    assert pii.replace(text, spans) == f"Please contact us: [{kind.upper()}]. Thank you."


@pytest.mark.parametrize("text", NOT_PII)
def test_amounts_dates_and_references_are_not_pii(text):
    assert pii.find(text, pii.KINDS, ("US", "GB", "DE", "FR")) == []


def test_only_the_asked_kinds_and_a_bare_number_only_after_a_phone_cue():
    text = "mail a@b.com, tel 030 12345678, IBAN DE89 3704 0044 0532 0130 00"
    assert [s.kind for s in pii.find(text, ["iban"])] == ["iban"]
    assert [s.kind for s in pii.find(text, ["email", "phone"], ("DE",))] == ["email", "phone"]
    assert pii.find("ref 03012345678", ["phone"], ("DE",)) == []
    assert [s.kind for s in pii.find("Fon: 03012345678", ["phone"], ("DE",))] == ["phone"]


def _invoice_with_pii(path):
    doc = pymupdf.open()
    page = doc.new_page()
    lines = [
        "INVOICE", "Invoice Number: INV-7781", "Invoice Date: 2024-03-15",
        "Vendor: Northwind Traders, billing@northwind-example.com, Tel. +49 30 1234567",
        "Bill to: Jane Roe, jane.roe@example.org, phone (415) 555-0132",
        "Pay to IBAN DE89 3704 0044 0532 0130 00 or card 4111 1111 1111 1111",
        "Description            Qty   Unit Price   Amount",
        "Consulting             2     100.00       200.00",
        "Subtotal 200.00", "Tax 0.00", "Total 200.00",
    ]
    for i, line in enumerate(lines):
        page.insert_text((60, 80 + 22 * i), line, fontsize=11)
    doc.save(path)


SECRETS = ["billing@northwind-example.com", "jane.roe@example.org", "+49 30 1234567", "(415) 555-0132",
           "DE89 3704 0044 0532 0130 00", "4111 1111 1111 1111", "555-0132", "1111 1111", "0532"]


def test_redaction_covers_everything_written_and_is_recorded(tmp_path):
    src = tmp_path / "pii_invoice.pdf"
    _invoice_with_pii(src)
    plain = process_document(src, Settings(workers=1))
    assert "jane.roe@example.org" in plain.pages[0].parsed.text and plain.redactions is None

    result = process_document(src, Settings(workers=1, redact=("email", "phone", "iban", "card", "ssn")))
    assert result.status == "ok"
    out = tmp_path / "out"
    DeltaSink(out, "invoice").write(result, "r1")
    written = json.dumps({k: v.to_dict("records") for k, v in read_tables(out).items()}, default=str)
    for secret in SECRETS:
        assert secret not in written, secret
    for token in ("[EMAIL]", "[PHONE]", "[IBAN]", "[CARD]"):
        assert token in written
    # words stay consistent with the text: nothing left for a later stage to leak
    words = " ".join(w.text for p in result.pages for w in p.parsed.words)
    assert not any(s in words for s in ("jane.roe@example.org", "4111", "1234567"))
    # the record: kind, table, column, where, count; never the value
    record = {(r.kind, r.table, r.column) for r in result.redactions}
    assert {("email", "pages", "text"), ("phone", "pages", "text"), ("iban", "pages", "text"),
            ("card", "pages", "text"), ("email", "elements", "text")} <= record
    assert all(r.count >= 1 for r in result.redactions)
    docs = read_tables(out)["documents"]
    rows = list(docs["redactions"][0])
    assert {r["kind"] for r in rows} == {"email", "phone", "iban", "card"}
    assert all(r["table"] in ("pages", "elements", "extractions/invoice") for r in rows)
    assert not any(s in json.dumps(rows, default=str) for s in SECRETS)
    # amounts and dates are not PII: the extraction is unchanged by redaction there
    for name in ("invoice_number", "invoice_date", "total"):
        assert result.extractions[0].data.get(name) == plain.extractions[0].data.get(name), name


def test_redaction_reaches_nested_values_raw_json_and_provenance():
    from datetime import UTC, datetime
    from decimal import Decimal

    from docroute.schemas import BBox, Document, DocumentResult, Extraction, FieldValue

    ex = Extraction(
        schema_name="invoice", schema_version="1",
        data={"vendor_address": "1 Main St, call +1 415-555-0132", "total": Decimal("12.50"),
              "line_items": [{"description": "refund to DE89 3704 0044 0532 0130 00", "amount": Decimal("1")}]},
        fields={"vendor_address": FieldValue(name="vendor_address", value="1 Main St, call +1 415-555-0132",
                                             confidence=0.9, source="layout", page_number=1,
                                             bbox=BBox(x0=0, y0=0, x1=1, y1=1), raw_text="call +1 415-555-0132")},
        raw_json=json.dumps({"layout": {"vendor_address": "1 Main St, call +1 415-555-0132", "total": "12.50"}}),
    )
    result = DocumentResult(
        document=Document(doc_id="d" * 64, source_path="x.pdf", file_name="x.pdf", mime_type="application/pdf",
                          size_bytes=1, n_pages=1),
        status="ok", extractions=(ex,), processed_at=datetime.now(UTC), pipeline_version="t",
    )
    red = redact(result, RedactOptions(kinds=("phone", "iban"))).extractions[0]
    assert red.data["vendor_address"] == "1 Main St, call [PHONE]"
    assert red.data["line_items"][0]["description"] == "refund to [IBAN]"
    assert red.data["total"] == Decimal("12.50")
    assert red.fields["vendor_address"].raw_text == "call [PHONE]"
    assert red.fields["vendor_address"].value == "1 Main St, call [PHONE]"
    assert "415" not in red.raw_json and json.loads(red.raw_json)["layout"]["total"] == "12.50"
    recs = {(r.table, r.column, r.ref) for r in redact(result, RedactOptions(kinds=("phone", "iban"))).redactions}
    assert ("extractions/invoice", "line_items", "line_items[1].description") in recs
    assert ("extractions/invoice", "field_provenance.raw_text", "vendor_address") in recs
    assert ("extractions/invoice", "raw_json", "$.layout.vendor_address") in recs


def test_redact_setting_accepts_a_comma_list_and_rejects_unknown_kinds():
    assert Settings(redact="email, iban").redact.kinds == ("email", "iban")
    with pytest.raises(ValueError):
        Settings(redact="email,passport")


def test_table_html_is_redacted_between_tags_only():
    from docroute.pipelines.redact import _Redactor

    r = _Redactor(["email", "phone"], ("US",))
    html = '<table><tr><td colspan="2">ap@acme.example.com</td><td>(415) 555-0132</td></tr></table>'
    assert r.html(html, "elements", "table_html", 1, "/page/1/table/1") == (
        '<table><tr><td colspan="2">[EMAIL]</td><td>[PHONE]</td></tr></table>')
    assert sum(r.counts.values()) == 2
