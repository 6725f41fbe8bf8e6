"""The machine-readable invoice samples (called by make_samples.py; deterministic like it).

- einvoice_facturx.pdf: a Factur-X (EN 16931 profile) hybrid: the printed invoice with its CII XML
  attached by the ``factur-x`` library (PDF/A-3 attachment, XMP metadata; fixed dates);
- einvoice_mismatch.pdf: a Factur-X hybrid whose XML total (135.00) is not the printed one (160.65);
- einvoice_cii.xml: a bare CII invoice (XRechnung 3.0 guideline); einvoice_ubl.xml: a bare UBL invoice
  (Peppol BIS Billing 3.0);
- invoice_swiss_qr.pdf: an invoice with a Swiss QR-bill code (SPC payload); invoice_epc_qr.pdf: one
  with an EPC (GiroCode) QR code; both drawn with ``segno``.

Each XML is checked against factur-x's XSD while it is made. The expected JSON's ``invoice`` is what the
machine-readable data says; ``machine`` names the source, profile and the review reasons it must raise.
"""

from __future__ import annotations

import io
from decimal import Decimal
from unittest import mock
from xml.sax.saxutils import escape

FIXED_PDF_DATE = "D:20240315090000+00'00'"
FIXED_XMP_DATE = "2024-03-15T09:00:00+00:00"

INVOICES = {
    "einvoice_facturx": {
        "vat": "FR40303265045",
        "layout": "unruled", "locale": "eu", "currency": "EUR", "symbol": "EUR", "tax": ("TVA 20%", "0.20"),
        "invoice_number": "FA-2024-0315", "invoice_date": "2024-03-15", "due_date": "2024-04-14",
        "vendor": ("Atelier Lumière SARL", ["14 rue des Lilas", "69003 Lyon", "FR"]),
        "customer": ("Müller & Schmidt Technik GmbH", ["Hauptstraße 112", "10115 Berlin", "DE"]),
        "items": [("Pendant lamp, brushed brass", 6, "129.00"), ("Wall light, opal glass", 10, "58.50"),
                  ("Installation labour (hours)", 4, "72.00")],
        "iban": "FR7630006000011234567890189", "reference": "FA-2024-0315",
        "notes": ["Paiement à 30 jours. TVA FR 40 303 265 045", "IBAN FR76 3000 6000 0112 3456 7890 189"],
        "profile": ("urn:cen.eu:en16931:2017", "EN 16931"),
    },
    "einvoice_mismatch": {
        "vat": "US123456789",
        "layout": "ruled", "locale": "us", "currency": "USD", "symbol": "$", "tax": ("Tax (19%)", "0.19"),
        "invoice_number": "INV-2024-0913", "invoice_date": "2024-03-15", "due_date": "2024-04-14",
        "vendor": ("Harborline Consulting LLC", ["88 Pier Street", "04101 Portland", "US"]),
        "customer": ("Kestrel Bioscience Inc", ["22 Chapel Lane", "02139 Cambridge", "US"]),
        "items": [("Advisory services, March", 1, "135.00")],
        "notes": ["Payment terms: Net 30."],
        "profile": ("urn:cen.eu:en16931:2017", "EN 16931"),
        "xml_tax": "0",  # the attached XML books no tax: its total is 135.00, the picture says 160.65
    },
    "einvoice_cii": {
        "vat": "DE298114507",
        "currency": "EUR", "tax": ("USt 19%", "0.19"),
        "invoice_number": "XR-2024-771", "invoice_date": "2024-05-02", "due_date": "2024-06-01",
        "vendor": ("Nordlicht Software GmbH", ["Speicherstadt 5", "20457 Hamburg", "DE"]),
        "customer": ("Landesamt für Statistik", ["Am Markt 1", "24103 Kiel", "DE"]),
        "items": [("Software licence, annual", 3, "480.00"), ("Support hours", 12, "95.00")],
        "iban": "DE02120300000000202051", "reference": "04011000-12345-34",
        "profile": ("urn:cen.eu:en16931:2017#compliant#urn:xeinkauf.de:kosit:xrechnung_3.0", "XRechnung"),
    },
    "einvoice_ubl": {
        "vat": "NL123456789B01",
        "currency": "EUR", "tax": ("BTW 21%", "0.21"),
        "invoice_number": "NL-2024-00418", "invoice_date": "2024-04-10", "due_date": "2024-05-10",
        "vendor": ("Van Dijk Kantoorartikelen B.V.", ["Keizersgracht 221", "1016 DV Amsterdam", "NL"]),
        "customer": ("Bruxelles Design SPRL", ["Rue Haute 48", "1000 Bruxelles", "BE"]),
        "items": [("Archive boxes, pack of 10", 8, "24.90"), ("Desk organiser, bamboo", 5, "18.40")],
        "iban": "NL91ABNA0417164300", "reference": "NL-2024-00418",
        "profile": ("urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0", "Peppol BIS"),
    },
    "invoice_swiss_qr": {
        "layout": "unruled", "locale": "eu", "currency": "CHF", "symbol": "CHF", "tax": ("MWST 8.1%", "0.081"),
        "invoice_number": "CH-2024-0457", "invoice_date": "2024-03-15", "due_date": "2024-04-14",
        "vendor": ("Bergblick Reinigung AG", ["Bahnhofstrasse 17", "8001 Zürich", "Switzerland"]),
        "customer": ("Café Lindenhof GmbH", ["Lindenhofstrasse 3", "3011 Bern", "Switzerland"]),
        "items": [("Office cleaning, monthly", 1, "640.00"), ("Window cleaning", 2, "85.00")],
        "iban": "CH9300762011623852957", "reference": "RF18539007547034",
        "notes": ["Zahlbar innert 30 Tagen mit dem QR-Zahlteil.", "IBAN CH93 0076 2011 6238 5295 7"],
        "qr": "swiss",
    },
    "invoice_epc_qr": {
        "layout": "unruled", "locale": "eu", "currency": "EUR", "symbol": "EUR", "tax": ("MwSt 19%", "0.19"),
        "invoice_number": "RE-2024-2210", "invoice_date": "2024-03-15", "due_date": "2024-04-15",
        "vendor": ("Grünwald Druck & Medien GmbH", ["Lindwurmstraße 76", "80337 München", "Germany"]),
        "customer": ("Atelier Lumière SARL", ["14 rue des Lilas", "69003 Lyon", "France"]),
        "items": [("Brochures A5, 16 pages", 500, "0.84"), ("Posters A2, matt", 40, "3.10")],
        "iban": "DE89370400440532013000", "reference": "RF71RE20242210",
        "notes": ["Zahlbar innerhalb von 30 Tagen. Scannen Sie den GiroCode mit Ihrer Banking-App.",
                  "IBAN DE89 3704 0044 0532 0130 00  -  BIC COBADEFFXXX"],
        "qr": "epc",
    },
}

NS = ('xmlns:rsm="urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100" '
      'xmlns:ram="urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100" '
      'xmlns:udt="urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100"')


def _split_address(lines):
    """(street, postcode, city, country) from ["street", "postcode city", "country"]."""
    street, place, country = lines
    postcode, city = place.split(" ", 1)
    return street, postcode, city, country


def amounts(inv, ms):
    lines, sub, tax, total = ms.totals(inv)
    if "xml_tax" in inv:
        tax = Decimal(inv["xml_tax"]).quantize(Decimal("0.01"))
        total = sub + tax
    return lines, sub, tax, total


def rate(inv) -> str:
    return f"{Decimal(inv['tax'][1]) * 100:f}".rstrip("0").rstrip(".")


def cii_xml(inv, ms) -> bytes:
    lines, sub, tax, total = amounts(inv, ms)
    cur, d = inv["currency"], lambda iso: iso.replace("-", "")
    out = [f'<?xml version="1.0" encoding="UTF-8"?>\n<rsm:CrossIndustryInvoice {NS}>',
           "<rsm:ExchangedDocumentContext><ram:GuidelineSpecifiedDocumentContextParameter>"
           f"<ram:ID>{inv['profile'][0]}</ram:ID></ram:GuidelineSpecifiedDocumentContextParameter>"
           "</rsm:ExchangedDocumentContext>",
           f"<rsm:ExchangedDocument><ram:ID>{escape(inv['invoice_number'])}</ram:ID><ram:TypeCode>380</ram:TypeCode>"
           f'<ram:IssueDateTime><udt:DateTimeString format="102">{d(inv["invoice_date"])}</udt:DateTimeString>'
           "</ram:IssueDateTime></rsm:ExchangedDocument>", "<rsm:SupplyChainTradeTransaction>"]
    tax_rate = "0" if "xml_tax" in inv else rate(inv)
    category = "Z" if "xml_tax" in inv else "S"
    for i, (desc, qty, price, amount) in enumerate(lines, start=1):
        out.append(
            f"<ram:IncludedSupplyChainTradeLineItem><ram:AssociatedDocumentLineDocument><ram:LineID>{i}</ram:LineID>"
            f"</ram:AssociatedDocumentLineDocument><ram:SpecifiedTradeProduct><ram:Name>{escape(desc)}</ram:Name>"
            "</ram:SpecifiedTradeProduct><ram:SpecifiedLineTradeAgreement><ram:NetPriceProductTradePrice>"
            f"<ram:ChargeAmount>{price}</ram:ChargeAmount></ram:NetPriceProductTradePrice></ram:SpecifiedLineTradeAgreement>"
            f'<ram:SpecifiedLineTradeDelivery><ram:BilledQuantity unitCode="C62">{qty}</ram:BilledQuantity>'
            "</ram:SpecifiedLineTradeDelivery><ram:SpecifiedLineTradeSettlement><ram:ApplicableTradeTax>"
            f"<ram:TypeCode>VAT</ram:TypeCode><ram:CategoryCode>{category}</ram:CategoryCode>"
            f"<ram:RateApplicablePercent>{tax_rate}</ram:RateApplicablePercent></ram:ApplicableTradeTax>"
            "<ram:SpecifiedTradeSettlementLineMonetarySummation>"
            f"<ram:LineTotalAmount>{amount}</ram:LineTotalAmount></ram:SpecifiedTradeSettlementLineMonetarySummation>"
            "</ram:SpecifiedLineTradeSettlement></ram:IncludedSupplyChainTradeLineItem>")
    out.append("<ram:ApplicableHeaderTradeAgreement>")
    for role, (name, addr) in (("Seller", inv["vendor"]), ("Buyer", inv["customer"])):
        street, postcode, city, country = _split_address(addr)
        vat = (f'<ram:SpecifiedTaxRegistration><ram:ID schemeID="VA">{inv["vat"]}</ram:ID>'
               "</ram:SpecifiedTaxRegistration>") if role == "Seller" else ""
        out.append(f"<ram:{role}TradeParty><ram:Name>{escape(name)}</ram:Name><ram:PostalTradeAddress>"
                   f"<ram:PostcodeCode>{postcode}</ram:PostcodeCode><ram:LineOne>{escape(street)}</ram:LineOne>"
                   f"<ram:CityName>{escape(city)}</ram:CityName><ram:CountryID>{country}</ram:CountryID>"
                   f"</ram:PostalTradeAddress>{vat}</ram:{role}TradeParty>")
    out.append("</ram:ApplicableHeaderTradeAgreement><ram:ApplicableHeaderTradeDelivery/>"
               "<ram:ApplicableHeaderTradeSettlement>")
    if inv.get("reference"):
        out.append(f"<ram:PaymentReference>{escape(inv['reference'])}</ram:PaymentReference>")
    out.append(f"<ram:InvoiceCurrencyCode>{cur}</ram:InvoiceCurrencyCode>")
    if inv.get("iban"):
        out.append("<ram:SpecifiedTradeSettlementPaymentMeans><ram:TypeCode>58</ram:TypeCode>"
                   f"<ram:PayeePartyCreditorFinancialAccount><ram:IBANID>{inv['iban']}</ram:IBANID>"
                   "</ram:PayeePartyCreditorFinancialAccount></ram:SpecifiedTradeSettlementPaymentMeans>")
    out.append(f"<ram:ApplicableTradeTax><ram:CalculatedAmount>{tax}</ram:CalculatedAmount>"
               f"<ram:TypeCode>VAT</ram:TypeCode><ram:BasisAmount>{sub}</ram:BasisAmount>"
               f"<ram:CategoryCode>{category}</ram:CategoryCode>"
               f"<ram:RateApplicablePercent>{tax_rate}</ram:RateApplicablePercent></ram:ApplicableTradeTax>"
               '<ram:SpecifiedTradePaymentTerms><ram:DueDateDateTime><udt:DateTimeString format="102">'
               f"{d(inv['due_date'])}</udt:DateTimeString></ram:DueDateDateTime></ram:SpecifiedTradePaymentTerms>"
               f"<ram:SpecifiedTradeSettlementHeaderMonetarySummation><ram:LineTotalAmount>{sub}</ram:LineTotalAmount>"
               f"<ram:TaxBasisTotalAmount>{sub}</ram:TaxBasisTotalAmount>"
               f'<ram:TaxTotalAmount currencyID="{cur}">{tax}</ram:TaxTotalAmount>'
               f"<ram:GrandTotalAmount>{total}</ram:GrandTotalAmount><ram:DuePayableAmount>{total}</ram:DuePayableAmount>"
               "</ram:SpecifiedTradeSettlementHeaderMonetarySummation></ram:ApplicableHeaderTradeSettlement>"
               "</rsm:SupplyChainTradeTransaction></rsm:CrossIndustryInvoice>\n")
    return "\n".join(out).encode()


def ubl_xml(inv, ms) -> bytes:
    lines, sub, tax, total = amounts(inv, ms)
    cur = inv["currency"]
    amt = lambda tag, v: f'<cbc:{tag} currencyID="{cur}">{v}</cbc:{tag}>'  # noqa: E731
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2" '
           'xmlns:cac="urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2" '
           'xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2">',
           f"<cbc:CustomizationID>{inv['profile'][0]}</cbc:CustomizationID>",
           "<cbc:ProfileID>urn:fdc:peppol.eu:2017:poacc:billing:01:1.0</cbc:ProfileID>",
           f"<cbc:ID>{escape(inv['invoice_number'])}</cbc:ID><cbc:IssueDate>{inv['invoice_date']}</cbc:IssueDate>",
           f"<cbc:DueDate>{inv['due_date']}</cbc:DueDate><cbc:InvoiceTypeCode>380</cbc:InvoiceTypeCode>",
           f"<cbc:DocumentCurrencyCode>{cur}</cbc:DocumentCurrencyCode>"]
    for role, (name, addr) in (("Supplier", inv["vendor"]), ("Customer", inv["customer"])):
        street, postcode, city, country = _split_address(addr)
        out.append(f"<cac:Accounting{role}Party><cac:Party><cac:PostalAddress><cbc:StreetName>{escape(street)}"
                   f"</cbc:StreetName><cbc:CityName>{escape(city)}</cbc:CityName><cbc:PostalZone>{postcode}"
                   f"</cbc:PostalZone><cac:Country><cbc:IdentificationCode>{country}</cbc:IdentificationCode>"
                   "</cac:Country></cac:PostalAddress>"
                   + (f"<cac:PartyTaxScheme><cbc:CompanyID>{inv['vat']}</cbc:CompanyID><cac:TaxScheme><cbc:ID>VAT"
                      "</cbc:ID></cac:TaxScheme></cac:PartyTaxScheme>" if role == "Supplier" else "")
                   + "<cac:PartyLegalEntity>"
                   f"<cbc:RegistrationName>{escape(name)}</cbc:RegistrationName></cac:PartyLegalEntity>"
                   f"</cac:Party></cac:Accounting{role}Party>")
    out.append(f"<cac:PaymentMeans><cbc:PaymentMeansCode>30</cbc:PaymentMeansCode><cbc:PaymentID>{inv['reference']}"
               f"</cbc:PaymentID><cac:PayeeFinancialAccount><cbc:ID>{inv['iban']}</cbc:ID></cac:PayeeFinancialAccount>"
               "</cac:PaymentMeans>")
    category = f"<cbc:ID>S</cbc:ID><cbc:Percent>{rate(inv)}</cbc:Percent><cac:TaxScheme><cbc:ID>VAT</cbc:ID></cac:TaxScheme>"
    out.append(f"<cac:TaxTotal>{amt('TaxAmount', tax)}<cac:TaxSubtotal>{amt('TaxableAmount', sub)}"
               f"{amt('TaxAmount', tax)}<cac:TaxCategory>{category}</cac:TaxCategory></cac:TaxSubtotal></cac:TaxTotal>")
    out.append(f"<cac:LegalMonetaryTotal>{amt('LineExtensionAmount', sub)}{amt('TaxExclusiveAmount', sub)}"
               f"{amt('TaxInclusiveAmount', total)}{amt('PayableAmount', total)}</cac:LegalMonetaryTotal>")
    for i, (desc, qty, price, amount) in enumerate(lines, start=1):
        out.append(f'<cac:InvoiceLine><cbc:ID>{i}</cbc:ID><cbc:InvoicedQuantity unitCode="C62">{qty}</cbc:InvoicedQuantity>'
                   f"{amt('LineExtensionAmount', amount)}<cac:Item><cbc:Name>{escape(desc)}</cbc:Name>"
                   f"<cac:ClassifiedTaxCategory>{category}</cac:ClassifiedTaxCategory></cac:Item>"
                   f"<cac:Price>{amt('PriceAmount', price)}</cac:Price></cac:InvoiceLine>")
    out.append("</Invoice>\n")
    return "\n".join(out).encode()


def check_xsd(xml: bytes) -> None:
    from facturx import facturx
    from lxml import etree

    root = etree.fromstring(xml)
    flavor = facturx.get_flavor(root)
    facturx.xml_check_xsd(root, flavor=flavor, level="autodetect" if flavor.startswith("ubl") else
                          facturx.get_level(root, flavor))


def facturx_pdf(pdf: bytes, xml: bytes) -> bytes:
    """Attach ``xml`` with factur-x (PDF/A-3 attachment and XMP), its clock fixed."""
    import logging

    from facturx import facturx

    logging.getLogger("factur-x").setLevel(logging.ERROR)
    with mock.patch.object(facturx, "_get_pdf_timestamp", lambda date=None: FIXED_PDF_DATE), \
            mock.patch.object(facturx, "_get_metadata_timestamp", lambda: FIXED_XMP_DATE):
        return facturx.generate_from_binary(pdf, xml, flavor="factur-x", check_xsd=True,
                                            pdf_metadata={"author": "docroute sample generator",
                                                          "keywords": "Factur-X", "title": "Invoice",
                                                          "subject": "Factur-X invoice"})


def swiss_payload(inv, total) -> str:
    name, (street, place, _country) = inv["vendor"][0], inv["vendor"][1]
    postcode, city = place.split(" ", 1)
    creditor = ["S", name, street.rsplit(" ", 1)[0], street.rsplit(" ", 1)[1], postcode, city, "CH"]
    debtor_name, (d_street, d_place, _) = inv["customer"][0], inv["customer"][1]
    d_post, d_city = d_place.split(" ", 1)
    debtor = ["S", debtor_name, d_street.rsplit(" ", 1)[0], d_street.rsplit(" ", 1)[1], d_post, d_city, "CH"]
    return "\n".join(["SPC", "0200", "1", inv["iban"], *creditor, "", "", "", "", "", "", "",
                      f"{total:.2f}", inv["currency"], *debtor, "SCOR", inv["reference"],
                      f"Invoice {inv['invoice_number']}", "EPD"])


def qr_png(inv, total) -> bytes:
    import segno
    from segno import helpers

    if inv["qr"] == "swiss":
        code = segno.make(swiss_payload(inv, total), error="m", encoding="utf-8", micro=False)
    else:
        code = helpers.make_epc_qr(name=inv["vendor"][0], iban=inv["iban"], amount=total, reference=inv["reference"],
                                   bic="COBADEFFXXX", encoding="utf-8")
    buf = io.BytesIO()
    code.save(buf, kind="png", scale=4, border=2)
    return buf.getvalue()


def add_samples(ms, files: dict[str, bytes], records: list[dict]) -> None:
    """Draw each sample with make_samples' helpers (``ms``) and add it and its expected JSON."""
    import pymupdf

    for stem, inv in INVOICES.items():
        lines, sub, tax, total = amounts(inv, ms)
        expected = ms.invoice_expected(inv)
        expected.update({"subtotal": str(sub), "tax_total": str(tax), "total": str(total), "amount_due": str(total),
                         "iban": inv.get("iban"), "payment_reference": inv.get("reference")})
        machine = {"source": "einvoice" if "profile" in inv else "qr", "review_reasons": []}
        if "profile" in inv:
            machine["profile"] = inv["profile"][1]
            if "layout" not in inv:  # a bare XML file: no pages
                xml = cii_xml(inv, ms) if stem.endswith("cii") else ubl_xml(inv, ms)
                check_xsd(xml)
                files[f"{stem}.xml"] = xml
                rec = ms.expected(f"{stem}.xml", "invoice", [], invoice=expected)
                records.append({**rec, "n_pages": 0, "machine": machine})
                continue
            doc = ms.invoice_doc(inv)
            pdf = ms.pdf_bytes(doc, f"Invoice {inv['invoice_number']}")
            files[f"{stem}.pdf"] = facturx_pdf(pdf, cii_xml(inv, ms))
            if "xml_tax" in inv:
                _, _, _, printed = ms.totals(inv)
                machine["review_reasons"] = [f"einvoice_mismatch:total:printed={printed}:xml={total}"]
        else:
            doc = ms.invoice_doc(inv)
            page = doc[0]
            page.insert_image(pymupdf.Rect(380, 560, 380 + 130, 560 + 130), stream=qr_png(inv, total))
            files[f"{stem}.pdf"] = ms.pdf_bytes(doc, f"Invoice {inv['invoice_number']}")
            expected = {**ms.invoice_expected(inv), "iban": inv["iban"], "payment_reference": inv["reference"]}
        text = [inv["invoice_number"], inv["vendor"][0], inv["customer"][0], lines[-1][0],
                ms.fmt_amount(ms.totals(inv)[3], inv)]
        records.append({**ms.expected(f"{stem}.pdf", "invoice", [True], text, expected), "machine": machine})
