"""Tests of the layout-route invoice field extractor (docroute.extractors.fields)."""

from __future__ import annotations

import json
import os
import sys
from datetime import date
from decimal import Decimal
from functools import cache
from pathlib import Path

os.environ.setdefault("OMP_THREAD_LIMIT", "1")

import pymupdf  # noqa: E402
import pytest  # noqa: E402

from docroute.extractors.fields import extract_invoice  # noqa: E402
from docroute.extractors.fields.amounts import DAY_FIRST, MONTH_FIRST, NumberStyle, find_amounts  # noqa: E402
from docroute.extractors.fields.conventions import infer_currency, infer_style  # noqa: E402
from docroute.extractors.fields.currency import currency_code  # noqa: E402
from docroute.extractors.fields.dates import find_dates  # noqa: E402
from docroute.schemas.targets import Invoice  # noqa: E402
from docroute.schemas.values import BBox, FieldValue, ParsedPage, Word  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import invoices_eval  # noqa: E402
import realdocs_split  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_docs"
INVOICE2DATA = REPO.parent / "shared" / "realdocs" / "invoice2data"


# --------------------------------------------------------------------------- pages through the real reader
@cache
def load_pages(path: str) -> tuple[ParsedPage, ...]:
    """ParsedPage values as the pipeline makes them: text layer, or tesseract for pages without one."""
    from docroute.pipelines.process import process_document
    from docroute.pipelines.settings import Settings

    result = process_document(Path(path), Settings(workers=1, schema_name="table"))
    assert result.status == "ok", result.error
    return tuple(p.parsed for p in result.pages)


def pages_of(doc: pymupdf.Document) -> tuple[ParsedPage, ...]:
    """Pages of an in-memory PDF, saved to a temporary file and read by the real reader."""
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".pdf", delete=False) as fh:
        fh.write(doc.tobytes())
    try:
        return load_pages(fh.name)
    finally:
        os.unlink(fh.name)


# --------------------------------------------------------------------------- helpers
def _words(text: str, y: float = 0.0) -> list[Word]:
    """A line of words 6 pt per character apart, for value-parsing tests."""
    out, x = [], 0.0
    for t in text.split():
        out.append(Word(text=t, bbox=BBox(x0=x, y0=y, x1=x + 6 * len(t), y1=y + 10), confidence=1.0))
        x += 6 * len(t) + 3
    return out


US = NumberStyle(decimal=".", date_order=MONTH_FIRST, currency="USD")
EU = NumberStyle(decimal=",", date_order=DAY_FIRST, currency="EUR")


def _check_field_values(fields: dict[str, FieldValue], pages) -> None:
    """Every FieldValue is well formed: known name, confidence in [0, 1], a page and a box on it."""
    sizes = {p.page_number: (p.width, p.height) for p in pages}
    for name, fv in fields.items():
        assert name == fv.name and (name in Invoice.model_fields), name
        assert 0.0 <= fv.confidence <= 1.0
        assert fv.source in {"layout", "ocr", "derived"}
        if fv.bbox is not None:
            w, h = sizes[fv.page_number]
            assert -1 <= fv.bbox.x0 <= fv.bbox.x1 <= w + 1 and -1 <= fv.bbox.y0 <= fv.bbox.y1 <= h + 1, name
    Invoice.model_validate(_as_invoice(fields))  # typed values fit the target schema


def _as_invoice(fields: dict[str, FieldValue]) -> dict:
    return {name: fv.value for name, fv in fields.items()}


# --------------------------------------------------------------------------- values: money
@pytest.mark.parametrize(("text", "style", "value", "currency"), [
    ("1,234.50", US, "1234.50", None),
    ("$1,234.50", US, "1234.50", "USD"),
    ("1.234,50", EU, "1234.50", None),
    ("1 234,50 €", EU, "1234.50", "EUR"),
    ("€ 4.053,67", EU, "4053.67", "EUR"),
    ("€ 12,-", EU, "12.00", "EUR"),
    ("-12.50", US, "-12.50", None),
    ("(12.50)", US, "-12.50", None),
    ("\u221245,00 €", EU, "-45.00", "EUR"),
    ("12.50 EUR", US, "12.50", "EUR"),
    ("USD 1,000", US, "1000", "USD"),
    ("Rs 1939", US, "1939", "INR"),
    ("\u20b9 319.00", US, "319.00", "INR"),
    ("£6.40", US, "6.40", "GBP"),
    ("CHF 1'234.50", US, "1234.50", "CHF"),
    ("1.234", EU, "1234", None),  # thousands in a comma-decimal document
    ("1.234.567,89", EU, "1234567.89", None),
    ("1,234,567.89", US, "1234567.89", None),
    ("0,75 €", EU, "0.75", "EUR"),
])
def test_amounts(text, style, value, currency):
    found = find_amounts(_words(text), style)
    assert len(found) == 1, found
    assert found[0].value == Decimal(value)
    assert found[0].currency == currency


@pytest.mark.parametrize("text", ["15.00%", "03/20/2023", "15.03.2024", "INV-2024", "NL810433941B01",
                                  "(870)-931-0505", "Vintage 15,4''", "Invoice"])
def test_not_amounts(text):
    assert find_amounts(_words(text), US) == []


def test_amounts_in_a_row_keep_their_order_and_skip_percentages():
    found = find_amounts(_words("Tax 15% on $ 112.90 $ 16.94"), US)
    assert [a.value for a in found] == [Decimal("112.90"), Decimal("16.94")]


# --------------------------------------------------------------------------- values: dates
@pytest.mark.parametrize(("text", "style", "expected"), [
    ("03/15/2024", US, "2024-03-15"),
    ("15.03.2024", EU, "2024-03-15"),
    ("15/03/2024", EU, "2024-03-15"),
    ("15/03/2024", US, "2024-03-15"),  # impossible as month-first: the day comes first whatever the style
    ("03/15/2024", EU, "2024-03-15"),  # and the other way round
    ("2024-03-15", EU, "2024-03-15"),
    ("15 March 2024", US, "2024-03-15"),
    ("March 15, 2024", US, "2024-03-15"),
    ("August 3 , 2014", US, "2014-08-03"),
    ("Jan 1, 2022", US, "2022-01-01"),
    ("05/06/2024", US, "2024-05-06"),
    ("05/06/2024", EU, "2024-06-05"),
    ("7. Mai 2014", EU, "2014-05-07"),
    ("le 02 Juillet 2015", EU, "2015-07-02"),
    ("29 maart 2014", EU, "2014-03-29"),
    ("8-9-2022", EU, "2022-09-08"),
    ("21.05.14", EU, "2014-05-21"),
])
def test_dates(text, style, expected):
    found = find_dates(_words(text), style)
    assert [d.value for d in found] == [date.fromisoformat(expected)]


@pytest.mark.parametrize("text", ["2014", "15.00%", "3/64", "12 GB", "1 2 3", "01.05.14-31.05.14", "$4.11"])
def test_not_dates(text):
    assert find_dates(_words(text), US) == []


@pytest.mark.parametrize(("document", "order", "expected"), [
    ("Date 13/02/2024 Due 05/03/2024", DAY_FIRST, "2024-03-05"),  # another date has a day > 12
    ("Date 02/13/2024 Due 05/03/2024", MONTH_FIRST, "2024-05-03"),  # another date has a month-day > 12
    ("Total € 12,00 Date 05/03/2024", DAY_FIRST, "2024-03-05"),  # euro: day first
    ("Total $12.00 Date 05/03/2024", MONTH_FIRST, "2024-05-03"),  # dollar: month first
    ("Datum 05.03.2024", DAY_FIRST, "2024-03-05"),  # dotted dates are day first
])
def test_date_order_comes_from_the_document(document, order, expected):
    words = _words(document)
    style = infer_style(words, ("en", "de", "fr", "nl"))
    assert style.date_order == order
    assert find_dates(_words("05/03/2024" if "/" in document else "05.03.2024"), style)[0].value == \
        date.fromisoformat(expected)


def test_decimal_separator_comes_from_the_document():
    assert infer_style(_words("Total 56,02 € TVA 9,34 €"), ("fr",)).decimal == ","
    assert infer_style(_words("Total $4.11 Tax $0.00"), ("en",)).decimal == "."


# --------------------------------------------------------------------------- values: currency
@pytest.mark.parametrize(("token", "code"), [
    ("$", "USD"), ("€", "EUR"), ("£", "GBP"), ("₹", "INR"), ("¥", "JPY"), ("EUR", "EUR"), ("CHF", "CHF"),
    ("Rs", "INR"), ("Rs.", "INR"), ("US$", "USD"), ("C$", "CAD"), ("A$", "AUD"), ("zł", "PLN"), ("Total", None),
])
def test_currency_code(token, code):
    assert currency_code(token) == code


def test_currency_of_a_document():
    assert infer_currency(_words("Total $4.11")) == "USD"
    assert infer_currency(_words("Total $4.11 all prices in CAD")) == "CAD"  # "$" alone is USD unless told
    assert infer_currency(_words("Grand Total Rs 1939")) == "INR"
    assert infer_currency(_words("Total 34,73 EUR"), ",") == "EUR"
    assert infer_currency(_words("Total 34,73"), ",") is None


# --------------------------------------------------------------------------- synthetic documents
def _put(page, x, y, text, size=10, font="helv", align="left"):
    if align == "right":
        x -= pymupdf.get_text_length(text, fontname=font, fontsize=size)
    page.insert_text((x, y), text, fontsize=size, fontname=font)


def _german_two_page_invoice() -> pymupdf.Document:
    """German, EUR (a code: base-14 fonts cannot show "€"), ambiguous dotted dates, labels beside
    values, a wrapped description, and an item table that runs onto page 2 without a repeated header."""
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    _put(page, 50, 70, "Muster Elektro GmbH", 16, "hebo")
    _put(page, 50, 88, "Hauptstraße 5", 9)
    _put(page, 50, 99, "80331 München", 9)
    _put(page, 545, 70, "Rechnung", 22, "hebo", "right")
    for i, (label, value) in enumerate([("Rechnungsnummer:", "R-2024-007"), ("Rechnungsdatum:", "05.03.2024"),
                                        ("Fällig am:", "04.04.2024")]):
        _put(page, 360, 130 + 15 * i, label)
        _put(page, 470, 130 + 15 * i, value)
    _put(page, 50, 140, "Rechnungsempfänger", 9)
    for i, line in enumerate(["Beispiel Handel AG", "Ringstraße 1", "10115 Berlin"]):
        _put(page, 50, 155 + 13 * i, line)
    _put(page, 50, 240, "Beschreibung", 10, "hebo")
    _put(page, 360, 240, "Menge", 10, "hebo", "right")
    _put(page, 450, 240, "Einzelpreis", 10, "hebo", "right")
    _put(page, 545, 240, "Betrag", 10, "hebo", "right")

    def item(pg, y, desc, qty, unit, amount):
        _put(pg, 50, y, desc)
        _put(pg, 360, y, qty, align="right")
        _put(pg, 450, y, unit, align="right")
        _put(pg, 545, y, amount, align="right")

    item(page, 262, "Kabel NYM-J 3x1,5 mm², 50 m", "2", "48,50 EUR", "97,00 EUR")
    item(page, 282, "Installationsarbeiten vor Ort,", "3", "65,00 EUR", "195,00 EUR")
    _put(page, 50, 294, "inkl. Anfahrt und Material")
    _put(page, 297, 810, "Seite 1 von 2", 8)
    page = doc.new_page(width=595, height=842)
    _put(page, 50, 60, "Rechnung R-2024-007 (Fortsetzung)", 11, "hebo")
    item(page, 100, "Sicherungsautomat B16", "4", "7,50 EUR", "30,00 EUR")
    item(page, 120, "FI-Schutzschalter 40 A", "1", "1.049,00 EUR", "1.049,00 EUR")
    for i, (label, value) in enumerate([("Zwischensumme", "1.371,00 EUR"), ("MwSt. 19 %", "260,49 EUR"),
                                        ("Gesamtbetrag", "1.631,49 EUR")]):
        _put(page, 450, 160 + 16 * i, label, align="right")
        _put(page, 545, 160 + 16 * i, value, align="right")
    _put(page, 297, 810, "Seite 2 von 2", 8)
    return doc


def test_german_invoice_across_two_pages():
    pages = pages_of(_german_two_page_invoice())
    fields = extract_invoice(pages, languages=("de", "en"))
    _check_field_values(fields, pages)
    got = _as_invoice(fields)
    assert got["invoice_number"] == "R-2024-007"
    assert got["invoice_date"] == date(2024, 3, 5)  # 05.03.2024: day first (dotted, euro, German)
    assert got["due_date"] == date(2024, 4, 4)
    assert got["vendor_name"] == "Muster Elektro GmbH"
    assert got["vendor_address"] == "Hauptstraße 5, 80331 München"
    assert got["customer_name"] == "Beispiel Handel AG"
    assert got["customer_address"] == "Ringstraße 1, 10115 Berlin"
    assert (got["subtotal"], got["tax_total"], got["total"]) == (Decimal("1371.00"), Decimal("260.49"),
                                                                 Decimal("1631.49"))
    assert got["currency"] == "EUR"
    assert fields["total"].page_number == 2 and fields["total"].raw_text == "1.631,49 EUR"
    assert fields["invoice_number"].source == "layout" and fields["invoice_number"].confidence > 0.9
    items = got["line_items"]
    assert [i["description"] for i in items] == [
        "Kabel NYM-J 3x1,5 mm², 50 m", "Installationsarbeiten vor Ort, inkl. Anfahrt und Material",
        "Sicherungsautomat B16", "FI-Schutzschalter 40 A"]
    assert [i["amount"] for i in items] == [Decimal(v) for v in ("97.00", "195.00", "30.00", "1049.00")]
    assert [i["quantity"] for i in items] == [Decimal(v) for v in ("2", "3", "4", "1")]
    assert items[3]["unit_price"] == Decimal("1049.00")


def _us_invoice_values_below_labels() -> pymupdf.Document:
    """Labels above their values, an order date that fixes the date order, and no amount column."""
    doc = pymupdf.open()
    page = doc.new_page(width=612, height=792)
    _put(page, 50, 60, "ACME Widgets LLC", 14, "hebo")
    _put(page, 50, 75, "12 Industrial Way", 9)
    _put(page, 50, 86, "Springfield, IL 62701", 9)
    for x, label, value in [(50, "Invoice Date", "04/05/2024"), (200, "Invoice #", "A-1009"),
                            (350, "Due Date", "05/05/2024"), (470, "Order date", "04/13/2024")]:
        _put(page, x, 120, label, 9, "hebo")
        _put(page, x, 134, value, 10)
    _put(page, 50, 170, "Sold To", 9, "hebo")
    for i, line in enumerate(["Jane Smith", "77 Oak St", "Dayton, OH 45402"]):
        _put(page, 50, 184 + 12 * i, line)
    _put(page, 50, 250, "Item", 10, "hebo")
    _put(page, 400, 250, "Qty", 10, "hebo", "right")
    _put(page, 540, 250, "Unit Price", 10, "hebo", "right")
    for i, (desc, qty, unit) in enumerate([("Blue widget", "3", "$4.25"), ("Red widget, large", "2", "$10.00")]):
        _put(page, 50, 270 + 18 * i, desc)
        _put(page, 400, 270 + 18 * i, qty, align="right")
        _put(page, 540, 270 + 18 * i, unit, align="right")
    _put(page, 460, 340, "Amount Due:", 11, "hebo", "right")
    _put(page, 540, 340, "$32.75", 11, "hebo", "right")
    return doc


def test_values_below_labels_and_derived_amounts():
    pages = pages_of(_us_invoice_values_below_labels())
    fields = extract_invoice(pages)
    _check_field_values(fields, pages)
    got = _as_invoice(fields)
    assert got["invoice_number"] == "A-1009"
    assert got["invoice_date"] == date(2024, 4, 5)  # month first: 04/13/2024 on the same page
    assert got["due_date"] == date(2024, 5, 5)
    assert got["total"] == got["amount_due"] == Decimal("32.75") and got["currency"] == "USD"
    assert "subtotal" not in fields and "tax_total" not in fields  # never invented
    assert got["customer_name"] == "Jane Smith" and got["customer_address"] == "77 Oak St, Dayton, OH 45402"
    assert got["vendor_name"] == "ACME Widgets LLC"
    items = fields["line_items"]
    assert [i["amount"] for i in items.value] == [Decimal("12.75"), Decimal("20.00")]  # qty x unit price
    assert items.source == "derived" and items.confidence < fields["total"].confidence


def _prepaid_invoice(labels: tuple[str, ...], values: tuple[str, ...]
                     ) -> pymupdf.Document:
    """An invoice whose totals block deducts a prepayment: subtotal, tax, grand total, paid, amount due."""
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    _put(page, 50, 70, "Nordlicht Studio GmbH", 14, "hebo")
    _put(page, 50, 86, "Am Hafen 3, 20457 Hamburg", 9)
    _put(page, 360, 130, "Invoice No: NS-2024-118")
    _put(page, 360, 145, "Date: 12.06.2024")
    _put(page, 50, 240, "Description", 10, "hebo")
    _put(page, 545, 240, "Amount", 10, "hebo", "right")
    _put(page, 50, 262, "Workshop, two days")
    _put(page, 545, 262, values[0], align="right")
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        _put(page, 450, 300 + 16 * i, label, align="right")
        _put(page, 545, 300 + 16 * i, value, align="right")
    return doc


@pytest.mark.parametrize(("labels", "values", "languages"), [
    (("Subtotal", "VAT 19%", "Total", "Prepayment", "Balance due"),
     ("1,000.00 EUR", "190.00 EUR", "1,190.00 EUR", "-500.00 EUR", "690.00 EUR"), ("en",)),
    (("Nettobetrag", "MwSt. 19 %", "Gesamtbetrag", "Anzahlung", "Zahlbetrag"),
     ("1.000,00 EUR", "190,00 EUR", "1.190,00 EUR", "-500,00 EUR", "690,00 EUR"), ("de", "en")),
    (("Total HT", "TVA 19 %", "Total TTC", "Acompte", "Net à payer"),
     ("1 000,00 EUR", "190,00 EUR", "1 190,00 EUR", "-500,00 EUR", "690,00 EUR"), ("fr", "en")),
])
def test_total_is_the_grand_total_and_amount_due_what_is_left(labels, values, languages):
    pages = pages_of(_prepaid_invoice(labels, values))
    got = _as_invoice(extract_invoice(pages, languages=languages))
    assert (got["subtotal"], got["tax_total"], got["total"], got["amount_due"]) == (
        Decimal("1000.00"), Decimal("190.00"), Decimal("1190.00"), Decimal("690.00"))


def test_an_amount_due_above_the_total_is_kept_for_review():
    labels = ("Subtotal", "VAT 19%", "Total", "Previous balance", "Amount due")
    values = ("1,000.00 EUR", "190.00 EUR", "1,190.00 EUR", "500.00 EUR", "1,690.00 EUR")
    got = _as_invoice(extract_invoice(pages_of(_prepaid_invoice(labels, values)), languages=("en",)))
    assert (got["total"], got["amount_due"]) == (Decimal("1190.00"), Decimal("1690.00"))


def test_only_an_amount_due_printed_is_the_total_unless_something_was_paid():
    pages = pages_of(_us_invoice_values_below_labels())  # prints "Amount Due: $32.75" and nothing paid
    got = _as_invoice(extract_invoice(pages))
    assert got["total"] == got["amount_due"] == Decimal("32.75")
    doc = _us_invoice_values_below_labels()
    _put(doc[0], 460, 322, "Amount paid:", 11, "hebo", "right")
    _put(doc[0], 540, 322, "$10.00", 11, "hebo", "right")
    got = _as_invoice(extract_invoice(pages_of(doc)))
    assert got["amount_due"] == Decimal("32.75") and "total" not in got  # the grand total is not printed


def test_the_account_holder_printed_as_a_line_of_its_own_is_the_vendor():
    """The top block names the customer (no label); the footer names the company that is paid."""
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    for i, line in enumerate(["Maison Verte", "12 rue des Lilas", "69003 Lyon"]):
        _put(page, 50, 70 + 12 * i, line)
    _put(page, 360, 130, "Facture n° F-2024-301")
    _put(page, 360, 145, "Date : 03/06/2024")
    _put(page, 400, 300, "Total TTC :", align="right")
    _put(page, 545, 300, "120,00 €", align="right")
    _put(page, 50, 700, "Banque Exemple – Titulaire du compte : ATELIER BLEU – IBAN FR76 3000 6000 0112 3456 7890 189")
    _put(page, 297, 780, "ATELIER BLEU", 9, align="right")
    _put(page, 50, 792, "SARL au capital de 5 000 € – 8 quai Claude Bernard, 69007 Lyon", 8)
    got = _as_invoice(extract_invoice(pages_of(doc), languages=("fr", "en")))
    assert got["vendor_name"] == "ATELIER BLEU"


def test_ocr_words_give_ocr_source_and_their_confidence():
    pages = pages_of(_us_invoice_values_below_labels())
    ocr = [p.model_copy(update={"words": tuple(w.model_copy(update={"source": "ocr", "confidence": 0.5, "font": None})
                                               for w in p.words)}) for p in pages]
    fields = extract_invoice(ocr)
    assert fields["invoice_number"].value == "A-1009"
    assert fields["invoice_number"].source == "ocr"
    assert all(fv.confidence <= 0.5 + 1e-9 for fv in fields.values())


def test_no_words_no_fields():
    assert extract_invoice([]) == {}
    assert extract_invoice([ParsedPage(page_number=1, width=100, height=100, has_text_layer=False,
                                       parser="none", text="")]) == {}


# --------------------------------------------------------------------------- sample invoices
def _sample(name: str) -> tuple[Path, dict]:
    path = SAMPLES / name
    exp = SAMPLES / f"{Path(name).stem}.expected.json"
    if not path.exists() or not exp.exists():
        pytest.skip(f"{path.name} and its expected JSON are not in sample_docs/ yet "
                    "(run: python sample_docs/make_samples.py)")
    return path, json.loads(exp.read_text())["invoice"]


def _typed(name: str, value):
    if value is None:
        return None
    if name.endswith("_date"):
        return date.fromisoformat(value)
    if name in {"subtotal", "tax_total", "total", "amount_due"}:
        return Decimal(value)
    return value


@pytest.mark.parametrize("name", ["invoice_ruled.pdf", "invoice_unruled.pdf", "invoice_two_page.pdf"])
def test_digital_sample_invoices(name):
    path, expected = _sample(name)
    pages = load_pages(str(path))
    fields = extract_invoice(pages)
    _check_field_values(fields, pages)
    got = _as_invoice(fields)
    for key, value in expected.items():
        if key == "line_items":
            continue
        assert got.get(key) == _typed(key, value), key
    items = got.get("line_items", [])
    assert len(items) == len(expected["line_items"])
    for mine, want in zip(items, expected["line_items"], strict=True):
        assert mine["description"] == want["description"]
        for key in ("quantity", "unit_price", "amount"):
            assert mine[key] == Decimal(want[key]), (want["description"], key)
    assert all(fv.source == "layout" for fv in fields.values())


@pytest.mark.parametrize("name", ["invoice_scanned.pdf", "invoice_photo.png"])
def test_scanned_and_photographed_sample_invoices(name):
    path, expected = _sample(name)
    pages = load_pages(str(path))
    fields = extract_invoice(pages)
    _check_field_values(fields, pages)
    got = _as_invoice(fields)
    for key in ("invoice_number", "invoice_date", "total", "currency"):
        assert got.get(key) == _typed(key, expected[key]), key
        assert fields[key].source == "ocr"


# --------------------------------------------------------------------------- real invoices, test half
# Scored as bench/invoices_eval.py scores them (labels, conventions, the split fixed by file hash), on the
# TEST half only: nothing was tuned on these documents. `python bench/invoices_eval.py` prints both halves.
# Field exact match measured on the test half (2026-11-28): see README "Real invoices"; the floors are
# what is measured, never above it.
TEST_HALF_FLOOR = 0.90  # overall field exact match (the bar)
TEST_HALF_ITEMS_FLOOR = 0.66  # documents whose priced rows are all read: 2 of 3 measured
TEST_HALF_FIELD_FLOOR = {"invoice_number": 1.0, "date": 1.0, "amount": 1.0, "currency": 1.0, "issuer": 1.0}


@pytest.fixture(scope="module")
def test_half() -> dict[str, tuple[Path, dict]]:
    """Per test-half invoice: its path and the invoice row's data (whole pipeline, defaults, no VLM)."""
    from docroute.pipelines.process import process_document
    from docroute.pipelines.settings import Settings

    if not INVOICE2DATA.exists():
        pytest.skip(f"{INVOICE2DATA} is not available")
    out = {}
    for path in invoices_eval.invoices():
        name = f"{path.parent.name}/{path.name}"
        if realdocs_split.half_of(name) != "test":
            continue
        result = process_document(path, Settings(workers=1))
        (inv,) = [ex for ex in result.extractions if ex.schema_name == "invoice"]
        out[name] = (path, dict(inv.data))
    return out


def test_real_invoices_test_half_field_accuracy(test_half):
    scored = {name: invoices_eval.score_data(path, data) for name, (path, data) in test_half.items()}
    assert len(scored) >= 6, sorted(scored)
    hits = [ok for right in scored.values() for ok in right.values()]
    misses = {name: [k for k, ok in right.items() if not ok] for name, right in scored.items()}
    assert sum(hits) / len(hits) >= TEST_HALF_FLOOR, (sum(hits), len(hits), misses)
    for key, floor in TEST_HALF_FIELD_FLOOR.items():
        per = [right[key] for right in scored.values() if key in right]
        assert per and sum(per) / len(per) >= floor, (key, misses)


def test_real_invoices_test_half_line_items(test_half):
    """The share of test-half invoice2data PDFs listing priced lines whose priced rows are all read, with
    their amounts, is at least what was measured."""
    complete = {}
    for name, (path, data) in test_half.items():
        if path.suffix != ".pdf" or path.parent.name != "invoice2data":
            continue
        truth = json.loads(path.with_suffix(".json").read_text())[0]
        want = [ln for ln in truth.get("lines", []) if any(k in ln for k in ("price", "price_subtotal"))]
        if not want:
            continue
        # priced rows only: an e-invoice's section and note lines (AzureInterior's UBL) carry an amount of 0
        got = sorted(it["amount"] for it in data["line_items"] if it["amount"])
        complete[name] = got == sorted(a for ln in want if (a := Decimal(str(ln.get("price_subtotal", ln.get("price"))))))
    assert len(complete) >= 3, complete
    assert sum(complete.values()) / len(complete) >= TEST_HALF_ITEMS_FLOOR, complete


def test_real_invoices_field_values_are_well_formed(test_half):
    for name, (path, _) in test_half.items():
        pages = load_pages(str(path))
        fields = extract_invoice(pages)
        _check_field_values(fields, pages)
        assert all(fv.source == ("ocr" if path.suffix == ".png" else "layout") for fv in fields.values()
                   if fv.source != "derived"), name


# --------------------------------------------------------------------------- lexicon audit
# Entries of the invoice lexicons that the text layers of realdocs print only in TEST-half documents,
# reviewed one by one as general vocabulary (README "Lexicon audit"): standard German invoice words that
# only QualityHosting prints because no German invoice is in the tuning half, plain English and German
# terms. A new entry found only in a test-half document fails here: take it out, or argue it in.
GENERAL_VOCABULARY = frozenset({
    "amount due", "total amount due", "total amount", "due on", "attn", "issued by", "particulars", "units",
    "gst", "disc", "rechnung", "rechnungsnummer", "rechnungsnr", "rechnungsdatum", "zahlungsziel",
    "zahlungsbedingungen", "kundennr", "ustid", "steuer-nr", "seite", "rabatt", "beschreibung", "preis",
    "mwst.", "netto", "ohne",
})


def test_no_lexicon_entry_comes_only_from_a_test_half_document():
    import re

    from docroute.extractors.fields import labels, line_items
    from docroute.extractors.fields.lines import fold

    if not realdocs_split.REALDOCS.exists():
        pytest.skip("../shared/realdocs is not laid beside the checkout")
    texts: list[tuple[str, str]] = []  # (half, folded text layer); scans and photos are audited in the README
    for name, half in realdocs_split.split().items():
        if name.lower().endswith(".pdf"):
            with pymupdf.open(realdocs_split.REALDOCS / name) as doc:
                texts.append((half, " ".join(fold(" ".join(p.get_text() for p in doc)).split())))
    for path in sorted(SAMPLES.rglob("*.pdf")):
        if not path.name.startswith("broken"):
            with pymupdf.open(path) as doc:
                texts.append(("sample", " ".join(fold(" ".join(p.get_text() for p in doc)).split())))
    entries = {label for table in (labels.LEXICON, line_items.COLUMN_LEXICON) for labs in table.values()
               for label, _ in labs}
    only_test = set()
    for entry in entries:
        pattern = re.compile(r"(?<!\w)" + re.escape(" ".join(fold(entry).split())) + r"(?!\w)")
        if {half for half, text in texts if pattern.search(text)} == {"test"}:
            only_test.add(entry)
    assert only_test <= GENERAL_VOCABULARY, sorted(only_test - GENERAL_VOCABULARY)
