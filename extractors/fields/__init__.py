"""Layout-route invoice field extraction from parsed pages, with no per-vendor templates.

``extract_invoice(pages)`` reads words and their geometry (text layer or OCR) and returns one
``FieldValue`` per ``Invoice`` field it found. Modules, each owning one step:

* ``lines``: words -> phrases -> rows;
* ``labels``: the multilingual label lexicon and fuzzy label matching;
* ``regions``: where a label's value is printed (right of it, or below it);
* ``currency``, ``amounts``, ``dates``: currencies, money and dates in printed text;
* ``conventions``: the document's own number, date and currency conventions;
* ``line_items``: the item table (header columns, rows, wrapped descriptions, page breaks);
* ``parties``: vendor and customer names and addresses;
* ``invoice``: the composition for invoices;
* ``receipt``: a till receipt's merchant, address, date and total payable (documents typed ``receipt``);
  ``receipt_items``: its subtotal, tax and item lines where they reconcile with that total;
* ``common``: candidates and their FieldValue (confidence, provenance), identifiers — shared;
* ``schema_labels``, ``synonyms.toml``, ``values``, ``tables``, ``generic``: the schema-driven
  extractor for any other ``TargetSchema`` (labels from the model, values typed by its annotations,
  ``list[Model]`` fields from tables).
"""

from collections.abc import Sequence

from docroute.schemas.targets import Invoice
from docroute.schemas.values import FieldValue, ParsedPage

from .generic import extract_fields, read_document
from .invoice import extract_invoice
from .receipt import extract_receipt
from .schema_labels import field_specs as schema_fields

# a receipt's fields that only the receipt rules fill: its amounts' terms where they reconcile, and its
# merchant and address (the invoice rules' party blocks guess a price column's head or an item on a till
# strip); the date and the total fall back to the invoice rules' where the receipt rules found none
RECEIPT_OWNS = ("subtotal", "tax_total", "line_items", "vendor_name", "vendor_address")


def extract(schema: type, pages: Sequence[ParsedPage], kind: str = "invoice") -> dict[str, FieldValue]:
    """The one entry: the invoice rules for ``Invoice`` (the engine's document reading with the invoice
    lexicon, then vendor/customer blocks, totals reconciliation, currency, its item table; for a document
    typed ``receipt`` the receipt's merchant, address, date and total payable on top, and its merchant,
    address, subtotal, tax and item lines only from the receipt rules (:data:`RECEIPT_OWNS`); for one typed
    ``invoice_or_receipt``, extractors/doctype.field_rules, the receipt rules fill only what the invoice
    rules left empty), the schema-driven extractor for any other schema."""
    if issubclass(schema, Invoice):
        fields = extract_invoice(pages)
        if kind == "invoice_or_receipt":
            return extract_receipt(pages) | fields
        if kind != "receipt":
            return fields
        return {k: v for k, v in fields.items() if k not in RECEIPT_OWNS} | extract_receipt(pages)
    return extract_fields(schema, pages)


__all__ = ["extract", "extract_fields", "extract_invoice", "extract_receipt", "read_document", "schema_fields"]
