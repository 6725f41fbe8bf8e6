"""Machine-readable invoice data beside the picture: an embedded e-invoice, payment QR codes, and the
cross-check of what is printed against them.

- :func:`read_embedded` finds a CII/UBL attachment in a PDF (MuPDF's embedded files) and reads it
  (:mod:`docroute.extractors.einvoice`).
- :func:`read_qr_codes` decodes payment QR codes (Swiss QR-bill, EPC) on the invoice's pages, from the
  handle's render cache.
- :func:`machine_fields` turns both into fields: the XML's (source ``einvoice``, confidence 1.0) win
  (GrandTotalAmount / TaxInclusiveAmount is the total, DuePayableAmount / PayableAmount the amount due);
  a QR code gives IBAN, currency, payment reference and, where the XML does not, the amount due: a
  payment code carries what is to be paid, not the grand total (source ``qr``, confidence 0.95: a
  strong candidate, read from pixels).
- :func:`cross_check` compares the printed values (layout and VLM) with them. A disagreement on the
  invoice number, invoice date, total, amount due or IBAN is a review reason naming both values, e.g.
  ``einvoice_mismatch:total:printed=160.65:xml=135.00`` or ``qr_mismatch:iban:printed=..:qr=..``; the
  machine-readable value is the one in the row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from docroute.extractors import einvoice, payment_qr
from docroute.extractors.document import DocumentHandle
from docroute.schemas import BBox, FieldValue, PageResult

QR_DPI = 200
MAX_XML_BYTES = 50 * 1024 * 1024  # an embedded "XML" larger than this is not read (a decompression bomb)
QR_CONFIDENCE = 0.95
CHECKED = ("invoice_number", "invoice_date", "total", "amount_due", "iban")
_IBAN_TEXT = re.compile(r"\b[A-Z]{2}\d{2}(?:\s?[A-Z0-9]{4}){2,7}(?:\s?[A-Z0-9]{1,3})?\b")


@dataclass(frozen=True)
class MachineRead:
    einvoice: einvoice.EInvoice | None = None
    qr_codes: tuple[payment_qr.PaymentCode, ...] = ()
    errors: tuple[str, ...] = ()  # attachments that could not be read
    qr_errors: tuple[str, ...] = ()  # pages the QR decoder failed on

    @property
    def found(self) -> bool:
        return self.einvoice is not None or bool(self.qr_codes)

    def raw(self) -> dict[str, Any]:
        """What raw_json keeps: the profile and attachment, each QR code, validation errors."""
        out: dict[str, Any] = {}
        if inv := self.einvoice:
            out["einvoice"] = {"syntax": inv.syntax, "profile": inv.profile, "guideline": inv.guideline,
                               "attachment": inv.attachment, "xsd_errors": list(inv.errors), "rules": inv.rules,
                               "rule_failures": [f.__dict__ for f in inv.rule_failures]}
        if self.qr_codes:
            out["payment_qr"] = [{"kind": c.kind, "iban": c.iban, "creditor": c.creditor,
                                  "amount": None if c.amount is None else str(c.amount), "currency": c.currency,
                                  "reference": c.reference, "page": c.page_number} for c in self.qr_codes]
        if self.errors or self.qr_errors:
            out["machine_errors"] = [*self.errors, *self.qr_errors]
        return out


def read_embedded(doc: DocumentHandle) -> tuple[einvoice.EInvoice | None, list[str]]:
    """The e-invoice embedded in a PDF (Factur-X, ZUGFeRD 2.x, XRechnung), if any."""
    if not getattr(doc.doc, "is_pdf", False):
        return None, []
    errors: list[str] = []
    files: list[tuple[str, bytes]] = []
    try:
        names = doc.doc.embfile_names()
    except Exception as exc:  # a damaged name tree: the picture is still read
        return None, [f"embedded files unreadable: {type(exc).__name__}: {exc}"]
    for name in names:
        try:
            info = doc.doc.embfile_info(name)
            file_name = str(info.get("ufilename") or info.get("filename") or name)
            if not (name.lower().endswith(".xml") or file_name.lower().endswith(".xml")):
                continue  # only XML attachments can be an e-invoice: others are never decompressed
            if int(info.get("size") or 0) > MAX_XML_BYTES:
                errors.append(f"embedded file {name!r} is {info['size']} bytes, over {MAX_XML_BYTES}: not read")
                continue
            files.append((name, doc.doc.embfile_get(name)))
        except Exception as exc:
            errors.append(f"embedded file {name!r} unreadable: {type(exc).__name__}: {exc}")
    return einvoice.embedded(files), errors


def _may_hold_qr(page: PageResult) -> bool:
    """A QR code is a picture, or vector art that is one filled square or made of filled squares: a page
    with neither (ruling lines, table borders, shaded rows) is not rendered for the decoder."""
    s = page.signals
    return s.image_coverage > 0 or s.filled_squares > 0 or not page.parsed.has_text_layer


def read_qr_codes(doc: DocumentHandle, pages: list[PageResult]) -> tuple[list[payment_qr.PaymentCode], list[str]]:
    """Payment codes on the pages that have pictures or filled square drawings (:func:`_may_hold_qr`)."""
    codes, errors = [], []
    for page in pages:
        if not _may_hold_qr(page):
            continue
        n = page.page_number
        try:
            hits = payment_qr.decode(doc.render(n, QR_DPI, gray=True, annots=False))
        except Exception as exc:  # the page was read; only its codes are lost, and raw_json says so
            errors.append(f"page {n}: QR decoding failed: {type(exc).__name__}: {exc}")
            continue
        finally:
            doc.clear_renders()
        for text, box in hits:
            if code := payment_qr.parse(text):
                codes.append(payment_qr.PaymentCode(**{**code.__dict__, "page_number": n, "position": box}))
    return codes, errors


def read(doc: DocumentHandle, pages: list[PageResult]) -> MachineRead:
    inv, errors = read_embedded(doc)
    codes, qr_errors = read_qr_codes(doc, pages)
    return MachineRead(einvoice=inv, qr_codes=tuple(codes), errors=tuple(errors), qr_errors=tuple(qr_errors))


def _qr_fields(code: payment_qr.PaymentCode) -> dict[str, FieldValue]:
    raw = f"{'SPC' if code.kind == 'swiss_qr' else 'BCD'} QR code, page {code.page_number}"
    box = BBox(**dict(zip(("x0", "y0", "x1", "y1"), (v * 72 / QR_DPI for v in code.position), strict=True))) \
        if code.position else None  # pixels at QR_DPI -> PDF points
    values = {"iban": code.iban, "currency": code.currency, "amount_due": code.amount,
              "payment_reference": code.reference}
    return {name: FieldValue(name=name, value=v, confidence=QR_CONFIDENCE, source="qr",
                             page_number=code.page_number, bbox=box, raw_text=raw)
            for name, v in values.items() if v is not None}


def machine_fields(read: MachineRead) -> dict[str, FieldValue]:
    """The fields that win over the printed ones: the XML's, then the first QR code's where the XML is silent."""
    out: dict[str, FieldValue] = {}
    if read.qr_codes:
        out.update(_qr_fields(read.qr_codes[0]))
    if read.einvoice:
        out.update(read.einvoice.fields)
    return out


def _norm(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in ("total", "amount_due"):
        return Decimal(str(value)).quantize(Decimal("0.01"))
    if name == "invoice_date":
        return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
    return re.sub(r"\s+", "", str(value)).upper()


def printed_ibans(pages: list[PageResult]) -> list[str]:
    """The valid IBANs printed on the pages (text layer or OCR), spaces removed."""
    from stdnum import iban

    found = []
    for page in pages:
        for m in _IBAN_TEXT.finditer(page.parsed.text.upper()):
            compact = m.group(0).replace(" ", "")
            if iban.is_valid(compact) and compact not in found:
                found.append(compact)
    return found


def cross_check(printed: dict[str, FieldValue], read: MachineRead, pages: list[PageResult]) -> list[str]:
    """Review reasons for every checked field where the picture and the machine-readable data disagree."""
    reasons: list[str] = []
    sources: list[tuple[str, str, dict[str, Any]]] = []
    if read.einvoice:
        sources.append(("einvoice", "xml", {k: fv.value for k, fv in read.einvoice.fields.items()}))
    for code in read.qr_codes:
        sources.append(("qr", "qr", {"iban": code.iban, "amount_due": code.amount}))
    ibans = printed_ibans(pages)
    for prefix, tag, values in sources:
        for name in CHECKED:
            machine = values.get(name)
            if machine is None:
                continue
            if name == "iban":
                if ibans and _norm(name, machine) not in ibans:
                    reasons.append(f"{prefix}_mismatch:iban:printed={ibans[0]}:{tag}={_norm(name, machine)}")
                continue
            fv = printed.get(name)
            if name == "amount_due" and prefix == "qr" and (fv is None or fv.value is None):
                fv = printed.get("total")  # no amount due printed: the code's amount is the total's
            if fv is None or fv.value in (None, ""):
                continue
            try:
                a, b = _norm(name, fv.value), _norm(name, machine)
            except (ValueError, ArithmeticError):
                continue
            if a != b:
                reasons.append(f"{prefix}_mismatch:{name}:printed={a}:{tag}={b}")
    if read.einvoice and read.qr_codes:  # the two machine-readable sources against each other
        xml = read.einvoice.fields
        due = xml.get("amount_due") or xml.get("total")
        for code in read.qr_codes:
            if due is not None and code.amount is not None and _norm("amount_due", due.value) != _norm("amount_due", code.amount):
                reasons.append(f"qr_mismatch:amount_due:xml={_norm('amount_due', due.value)}:qr={_norm('amount_due', code.amount)}")
    return list(dict.fromkeys(reasons))


def validation_reasons(read: MachineRead) -> list[str]:
    """The e-invoice's XSD failures (``einvoice_invalid:xsd``), its fatal EN 16931 rule failures
    (``einvoice_invalid:BR-S-02``; warnings stay in raw_json) and unreadable attachments as review reasons."""
    reasons = []
    if read.einvoice and read.einvoice.errors:
        reasons.append("einvoice_invalid:xsd")
    if read.einvoice:
        reasons += [f"einvoice_invalid:{f.id}" for f in read.einvoice.rule_failures if f.flag == "fatal"]
    if read.errors:
        reasons.append("einvoice_unreadable")
    return reasons


def covers_document(read: MachineRead) -> bool:
    """The XML gives every field the VLM's document call would read: the VLM is not asked for them."""
    fields = read.einvoice.fields if read.einvoice else {}
    return {"invoice_number", "total", "vendor_name", "customer_name", "line_items"} <= set(fields)
