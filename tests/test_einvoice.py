"""Machine-readable invoices: embedded and bare CII/UBL XML, payment QR codes, and the cross-check."""

from __future__ import annotations

import json
import os
from datetime import date
from decimal import Decimal
from pathlib import Path

import pymupdf
import pytest
from lxml import etree

from docroute.extractors import einvoice, payment_qr
from docroute.pipelines import ingest
from docroute.pipelines.process import process_document
from docroute.pipelines.settings import Settings
from docroute.pipelines.sink import extraction_row

from conftest import SAMPLES, expected, realdoc

SETTINGS = Settings(workers=1)
XML_SAMPLES = ["einvoice_cii.xml", "einvoice_ubl.xml", "einvoice_facturx.pdf", "einvoice_mismatch.pdf"]
QR_SAMPLES = ["invoice_swiss_qr.pdf", "invoice_epc_qr.pdf"]


def _typed(name: str, value):
    if value is None:
        return None
    if name in ("invoice_date", "due_date"):
        return date.fromisoformat(value)
    if name in ("subtotal", "tax_total", "total", "amount_due"):
        return Decimal(value)
    return value


def _extraction(name: str, path: Path | None = None):
    result = process_document(path or SAMPLES / name, SETTINGS)
    assert result.status == "ok", result.error
    (ex,) = [e for e in result.extractions if e.schema_name == "invoice"]
    return result, ex


def _xml_of(name: str) -> bytes:
    path = SAMPLES / name
    if path.suffix == ".xml":
        return path.read_bytes()
    with pymupdf.open(path) as doc:
        return doc.embfile_get("factur-x.xml")


@pytest.mark.parametrize("name", XML_SAMPLES)
def test_every_xml_field_exactly_with_source_einvoice_and_its_element_path(name):
    case = expected(name)
    result, ex = _extraction(name)
    want = case["invoice"]
    for field, value in want.items():
        if field == "line_items":
            continue
        assert ex.data[field] == _typed(field, value), (name, field)
        if value is not None:
            assert ex.fields[field].source == "einvoice" and ex.fields[field].confidence == 1.0, (name, field)
    items = [{k: (v if k == "description" else Decimal(v)) for k, v in it.items()} for it in want["line_items"]]
    assert ex.data["line_items"] == items
    assert ex.fields["line_items"].source == "einvoice"
    # provenance: raw_text is the path of the element the value was read from, in the XML itself
    root = etree.fromstring(_xml_of(name))
    for field, fv in ex.fields.items():
        hits = root.getroottree().xpath(fv.raw_text, namespaces=einvoice.NS)
        assert hits, (field, fv.raw_text)
        if field in ("invoice_number", "currency", "total"):
            assert str(fv.value) == hits[0].text
    prov = {p["field"]: p for p in extraction_row(result, ex, "run")["field_provenance"]}
    assert prov["invoice_number"]["raw_text"] in ("/rsm:CrossIndustryInvoice/rsm:ExchangedDocument/ram:ID", "/inv:Invoice/cbc:ID")
    assert prov["total"]["x0"] is None and prov["total"]["raw_text"] == ex.fields["total"].raw_text
    raw = json.loads(ex.raw_json)
    assert raw["einvoice"]["profile"] == case["machine"]["profile"] and raw["einvoice"]["xsd_errors"] == []
    assert raw["merged_from"]["total"] == "einvoice"
    assert list(ex.review_reasons) == case["machine"]["review_reasons"]
    if name.endswith(".xml"):
        assert result.document.n_pages == 0 and result.pages == ()
        assert result.document.mime_type == "application/xml"


def test_disagreeing_total_is_flagged_with_both_values_and_the_xml_wins():
    _, ex = _extraction("einvoice_mismatch.pdf")
    assert "einvoice_mismatch:total:printed=160.65:xml=135.00" in ex.review_reasons and ex.needs_review
    assert ex.data["total"] == Decimal("135.00")
    raw = json.loads(ex.raw_json)
    assert raw["layout"]["total"]["value"] == "160.65"  # the picture's value is kept beside the XML's


def _only_unsure_layout_fields(ex) -> bool:
    """No check failed, nothing is missing: what remains for review is at most a field read off the
    picture that the calibration does not give 99 in 100 (pipelines/validate.STRAIGHT_THROUGH_CONFIDENCE)."""
    return all(r.startswith("unsure:") and ex.fields[r.partition(":")[2]].source == "layout" for r in ex.review_reasons)


@pytest.mark.parametrize("name", QR_SAMPLES)
def test_payment_qr_amount_iban_reference_decoded(name):
    case = expected(name)
    _, ex = _extraction(name)
    want = case["invoice"]
    for field in ("iban", "payment_reference", "amount_due", "currency"):  # a code's amount is what is to pay
        assert ex.data[field] == _typed(field, want[field]), field
        assert ex.fields[field].source == "qr", field
    assert ex.data["total"] == _typed("total", want["total"]) and ex.fields["total"].source == "layout"
    (code,) = json.loads(ex.raw_json)["payment_qr"]
    assert code["kind"] == ("swiss_qr" if "swiss" in name else "epc") and code["page"] == 1
    assert Decimal(code["amount"]) == Decimal(want["amount_due"]) and code["iban"] == want["iban"]
    assert ex.data["invoice_number"] == want["invoice_number"]  # the rest still comes from the layout
    box = ex.fields["iban"].bbox  # where the generator drew the code, in points: Rect(380, 560, 510, 690)
    assert 375 <= box.x0 < box.x1 <= 515 and 555 <= box.y0 < box.y1 <= 695
    assert ex.fields["invoice_number"].source == "layout" and _only_unsure_layout_fields(ex)


def test_payload_parsers_reject_other_codes_and_bad_ibans():
    assert payment_qr.parse("https://example.org/pay") is None
    epc = "BCD\n002\n1\nSCT\n\nACME\nDE89370400440532013000\nEUR12.5\n\n\nInvoice 7"
    code = payment_qr.parse(epc)
    assert (code.iban, code.amount, code.currency, code.reference) == ("DE89370400440532013000", Decimal("12.5"), "EUR",
                                                                         "Invoice 7")
    assert payment_qr.parse(epc.replace("DE89", "DE88")) is None  # IBAN check digits wrong: not a payment code


def _attach(src: str, xml: bytes, out: Path) -> Path:
    with pymupdf.open(SAMPLES / src) as doc:
        doc.embfile_add("factur-x.xml", xml)
        doc.save(out)
    return out


MINIMUM = b"""<?xml version="1.0" encoding="UTF-8"?>
<rsm:CrossIndustryInvoice xmlns:rsm="urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
 xmlns:ram="urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"
 xmlns:udt="urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100">
<rsm:ExchangedDocumentContext><ram:GuidelineSpecifiedDocumentContextParameter><ram:ID>urn:factur-x.eu:1p0:minimum</ram:ID>
</ram:GuidelineSpecifiedDocumentContextParameter></rsm:ExchangedDocumentContext>
<rsm:ExchangedDocument><ram:ID>INV-2024-0042</ram:ID><ram:TypeCode>380</ram:TypeCode>
<ram:IssueDateTime><udt:DateTimeString format="102">20240315</udt:DateTimeString></ram:IssueDateTime></rsm:ExchangedDocument>
<rsm:SupplyChainTradeTransaction><ram:ApplicableHeaderTradeAgreement>
<ram:SellerTradeParty><ram:Name>Bluefield Office Supply Co.</ram:Name>
<ram:PostalTradeAddress><ram:CountryID>US</ram:CountryID></ram:PostalTradeAddress>
<ram:SpecifiedTaxRegistration><ram:ID schemeID="VA">US123456789</ram:ID></ram:SpecifiedTaxRegistration></ram:SellerTradeParty>
<ram:BuyerTradeParty><ram:Name>Crescent Valley Dental Group</ram:Name></ram:BuyerTradeParty>
</ram:ApplicableHeaderTradeAgreement><ram:ApplicableHeaderTradeDelivery/><ram:ApplicableHeaderTradeSettlement>
<ram:InvoiceCurrencyCode>USD</ram:InvoiceCurrencyCode><ram:SpecifiedTradeSettlementHeaderMonetarySummation>
<ram:TaxBasisTotalAmount>1827.20</ram:TaxBasisTotalAmount><ram:TaxTotalAmount currencyID="USD">150.74</ram:TaxTotalAmount>
<ram:GrandTotalAmount>1977.94</ram:GrandTotalAmount><ram:DuePayableAmount>1977.94</ram:DuePayableAmount>
</ram:SpecifiedTradeSettlementHeaderMonetarySummation></ram:ApplicableHeaderTradeSettlement>
</rsm:SupplyChainTradeTransaction></rsm:CrossIndustryInvoice>
"""


def test_minimum_profile_leaves_line_items_and_addresses_to_the_layout(tmp_path):
    _, ex = _extraction("", _attach("invoice_ruled.pdf", MINIMUM, tmp_path / "minimum.pdf"))
    raw = json.loads(ex.raw_json)
    assert raw["einvoice"]["profile"] == "MINIMUM" and raw["einvoice"]["xsd_errors"] == []
    assert raw["einvoice"]["rules"] == "Factur-X minimum"
    assert ex.fields["total"].source == "einvoice" and ex.fields["vendor_name"].source == "einvoice"
    assert ex.fields["line_items"].source == "layout" and len(ex.data["line_items"]) == 4
    assert ex.fields["vendor_address"].source == "layout"
    assert _only_unsure_layout_fields(ex)  # picture and data agree


def test_printed_iban_and_number_against_the_xml(tmp_path):
    # the unruled sample prints IBAN DE89...; attach the bare CII invoice (another number, IBAN, total)
    path = _attach("invoice_unruled.pdf", (SAMPLES / "einvoice_cii.xml").read_bytes(), tmp_path / "other.pdf")
    _, ex = _extraction("", path)
    reasons = set(ex.review_reasons)
    assert "einvoice_mismatch:iban:printed=DE89370400440532013000:xml=DE02120300000000202051" in reasons
    assert "einvoice_mismatch:invoice_number:printed=RE-2024-1187:xml=XR-2024-771" in reasons
    assert "einvoice_mismatch:invoice_date:printed=2024-03-15:xml=2024-05-02" in reasons
    assert ex.data["invoice_number"] == "XR-2024-771"


def test_xsd_failure_is_a_review_reason(tmp_path):
    bad = (SAMPLES / "einvoice_cii.xml").read_bytes().replace(b"<ram:TypeCode>380</ram:TypeCode>", b"")
    path = tmp_path / "bad.xml"
    path.write_bytes(bad)
    _, ex = _extraction("", path)
    assert "einvoice_invalid:xsd" in ex.review_reasons
    assert "TypeCode" in json.loads(ex.raw_json)["einvoice"]["xsd_errors"][0]
    assert ex.data["total"] == Decimal("3070.20")  # the values are still read


def test_en16931_rule_failures_are_review_reasons(tmp_path):
    # without the seller's VAT identifier a standard-rated invoice breaks BR-S-02 and BR-CO-26 (CEN rules)
    xml = (SAMPLES / "einvoice_cii.xml").read_bytes()
    start, end = xml.index(b"<ram:SpecifiedTaxRegistration>"), xml.index(b"</ram:SpecifiedTaxRegistration>")
    path = tmp_path / "no_vat.xml"
    path.write_bytes(xml[:start] + xml[end + len(b"</ram:SpecifiedTaxRegistration>"):])
    _, ex = _extraction("", path)
    assert {"einvoice_invalid:BR-S-02", "einvoice_invalid:BR-CO-26"} <= set(ex.review_reasons)
    raw = json.loads(ex.raw_json)["einvoice"]
    assert raw["xsd_errors"] == [] and raw["rules"] == "Factur-X en16931 (EN 16931 rules only)"
    assert not any(f["id"].startswith("FX-") for f in raw["rule_failures"])  # an XRechnung is no Factur-X
    _, ok = _extraction("einvoice_cii.xml")
    assert not [r for r in ok.review_reasons if r.startswith("einvoice_invalid")]


def test_vlm_is_not_asked_for_what_the_xml_gives(tmp_path):
    # the handwriting note is routed to the VLM; with a full e-invoice attached it is not
    path = _attach("handwriting_note.pdf", (SAMPLES / "einvoice_cii.xml").read_bytes(), tmp_path / "hw.pdf")
    result, ex = _extraction("", path)
    assert [p.decision.route for p in result.pages] == ["layout"]
    assert "not sent to the VLM" in result.pages[0].decision.explanation
    assert "vlm_unavailable" not in ex.review_reasons
    plain = process_document(SAMPLES / "handwriting_note.pdf", SETTINGS)
    assert [p.decision.route for p in plain.pages] == ["vlm"]


def test_sniff_and_discovery_take_invoice_xml_only(tmp_path):
    for name in ("einvoice_cii.xml", "einvoice_ubl.xml"):
        (tmp_path / name).write_bytes((SAMPLES / name).read_bytes())
    (tmp_path / "pom.xml").write_bytes(b'<?xml version="1.0"?>\n<project xmlns="http://maven.apache.org/POM/4.0.0"/>')
    (tmp_path / "truth.expected.json").write_text("{}")
    os.mkfifo(tmp_path / "pipe.xml")  # never opened: discovery would block on it
    found = sorted(p.name for p in ingest.discover(str(tmp_path)))
    assert found == ["einvoice_cii.xml", "einvoice_ubl.xml"]
    assert ingest.ingest(tmp_path / "einvoice_ubl.xml").mime_type == "application/xml"
    assert ingest.sniff((SAMPLES / "einvoice_cii.xml").read_bytes()[:8192])[0] == "application/xml"
    assert ingest.sniff(b'<?xml version="1.0"?><rss version="2.0"/>')[0] is None
    prefixed_ubl = b'<x:Invoice xmlns:x="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2">'
    assert einvoice.sniff_root(prefixed_ubl) == "ubl"
    assert einvoice.sniff_root(b'<Invoice xmlns="urn:example:not-ubl">') is None


def test_a_hybrid_made_by_other_software_odoo_ubl():
    """invoice2data's AzureInterior.pdf: an Odoo invoice with its UBL 2.1 XML attached (no guideline id)."""
    path = realdoc("invoice2data/AzureInterior.pdf")
    gt = json.loads(path.with_suffix(".json").read_text())[0]
    _, ex = _extraction("", path)
    assert json.loads(ex.raw_json)["einvoice"] == {
        "syntax": "ubl", "profile": "UBL", "guideline": "", "attachment": "UBL-Invoice-2.1.xml", "xsd_errors": [],
        "rules": "not checked: the UBL does not claim EN 16931 (CustomizationID)", "rule_failures": []}
    assert ex.data["invoice_number"] == gt["invoice_number"]
    assert ex.data["invoice_date"] == date.fromisoformat(gt["date"])
    assert ex.data["due_date"] == date.fromisoformat(gt["date_due"])  # UBL PaymentMeans/PaymentDueDate
    for field, key in (("total", "amount"), ("tax_total", "amount_tax"), ("subtotal", "amount_untaxed")):
        assert ex.data[field] == Decimal(str(gt[key])), field
        assert ex.fields[field].source == "einvoice"
    assert ex.data["currency"] == gt["currency"] and ex.data["vendor_name"] == gt["issuer"]
    sold = [line for line in gt["lines"] if "price_subtotal" in line]
    items = [it for it in ex.data["line_items"] if it["amount"]]
    assert [it["amount"] for it in items] == [Decimal(str(line["price_subtotal"])) for line in sold]
    # Odoo writes the invoiced quantity as the price's base quantity: the unit price stays as written
    assert [it["unit_price"] for it in items][-1] == Decimal("10.00")
    assert not ex.review_reasons  # the printed page agrees with its XML


def test_odd_content_is_reported_not_a_crash(tmp_path):
    xml = (SAMPLES / "einvoice_cii.xml").read_bytes()
    xml = xml.replace(b"<ram:InvoiceCurrencyCode>EUR<", b"<ram:InvoiceCurrencyCode>EU'R<")
    xml = xml.replace(b">20240502</udt:DateTimeString>", b">20241345</udt:DateTimeString>")
    path = tmp_path / "odd.xml"
    path.write_bytes(xml)
    result, ex = _extraction("", path)
    assert ex.data["invoice_date"] is None and ex.data["currency"] is None  # unreadable values are not guessed
    assert {"missing:invoice_date", "validation_errors"} <= set(ex.review_reasons)
    assert any(r.startswith("einvoice_invalid:") for r in ex.review_reasons)  # the rules see the odd currency
    assert ex.data["total"] == Decimal("3070.20")
    broken = tmp_path / "broken.xml"
    broken.write_bytes(xml[: len(xml) // 2])  # the root still sniffs as CII; the rest is cut off
    result = process_document(broken, SETTINGS)
    assert result.status == "failed" and "not a readable e-invoice" in result.error


def test_vector_drawn_qr_code_is_decoded_and_ruled_pages_are_not_rendered_for_it(tmp_path, monkeypatch):
    """A payment code drawn as vector art (filled squares, no picture) is still read; a ruled invoice
    page (lines and borders only, no picture, no filled square) is never rendered for the QR decoder."""
    import segno

    from docroute.pipelines import machine

    epc = "BCD\n002\n1\nSCT\n\nACME GmbH\nDE89370400440532013000\nEUR42.50\n\n\nRE-2024-7"
    svg = tmp_path / "code.svg"
    segno.make(epc, error="m", micro=False).save(str(svg), scale=4, border=4)
    with pymupdf.open(svg) as art:
        vector = pymupdf.open("pdf", art.convert_to_pdf())
    path = tmp_path / "vector_qr.pdf"
    with pymupdf.open(SAMPLES / "invoice_ruled.pdf") as doc:
        page = doc[0]
        assert not page.get_images()
        page.show_pdf_page(pymupdf.Rect(400, 600, 520, 720), vector, 0)
        doc.save(path)
    renders = []
    decode = payment_qr.decode
    monkeypatch.setattr(payment_qr, "decode", lambda image: renders.append(image.size) or decode(image))
    _, ex = _extraction("vector_qr.pdf", path)
    assert ex.data["iban"] == "DE89370400440532013000" and ex.fields["iban"].source == "qr"
    assert ex.data["amount_due"] == Decimal("42.50") and ex.data["payment_reference"] == "RE-2024-7"
    assert len(renders) == 1
    renders.clear()
    result, _ = _extraction("invoice_ruled.pdf")
    assert result.pages[0].signals.drawings > 0 and not renders  # ruled, no picture: nothing decoded
    assert not machine._may_hold_qr(result.pages[0])
