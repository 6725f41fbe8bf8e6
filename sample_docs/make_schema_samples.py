"""Generate the non-invoice samples in sample_docs/other/: purchase orders, delivery notes, bank statements.

Called from make_samples.py (``build(out / "other")``); also runnable on its own:
``python sample_docs/make_schema_samples.py [--out DIR]``. Deterministic like make_samples.py. Each kind
has its own folder (one schema per run), its model in sample_docs/schemas_demo.py, and per kind two
layouts: ``*_a.pdf`` (labels left of values, English, US numbers), ``*_b.pdf`` (labels above values in
boxes, other wording or language) and ``*_b_scanned.pdf`` (layout b rendered, degraded and embedded as
an image). Each file's ``<name>.expected.json`` holds the schema and the expected field values.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from decimal import Decimal
from pathlib import Path

import numpy as np
import pymupdf
from PIL import Image, ImageFilter

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import make_samples as ms  # noqa: E402  (the invoice generator's drawing helpers)

put, pdf_bytes, LIGHT, GRAY = ms.put, ms.pdf_bytes, ms.LIGHT, ms.GRAY
SCHEMAS = "sample_docs.schemas_demo"

PO = {"po_number": "PO-2024-0815", "order_date": "2024-04-02", "delivery_date": "2024-04-19",
      "supplier": "Granite Ridge Industrial Supply", "buyer": "Lakeshore Fabrication Inc.", "currency": "USD",
      "lines": [("HX-1042", "Hex bolt M10 x 50, zinc", 400, "0.38"), ("WS-2210", "Flat washer M10, pack of 100", 4, "6.90"),
                ("AN-7781", "Angle bracket 90 deg, steel", 60, "2.75"), ("CB-0031", "Cable tie 300 mm, bag of 500", 3, "18.40"),
                ("GL-5520", "Work gloves, nitrile coated, L", 24, "4.15")]}
DN = {"delivery_note_number": "DN-2024-0311", "delivery_date": "2024-04-12", "order_reference": "PO-2024-0788",
      "recipient": "Brightwater Garden Centre", "carrier": "Harbourline Freight", "packages": 6,
      "received_in_good_condition": True,
      "items": [("TP-300", "Terracotta pot 30 cm", 24, "pcs"), ("PS-050", "Potting soil 50 L", 40, "bags"),
                ("HG-012", "Hanging basket, wire", 15, "pcs"), ("WC-200", "Watering can 10 L, green", 12, "pcs")]}
BS = {"account_holder": "Marlow & Finch Consulting Ltd", "account_number": "GB29 NWBK 6016 1331 9268 19",
      "statement_date": "2024-03-31", "currency": "EUR", "opening_balance": "4250.00",
      "transactions": [("2024-03-04", "Card payment Office World", "-86.40"),
                       ("2024-03-08", "Transfer from Kestrel Bioscience", "1820.00"),
                       ("2024-03-15", "Rent March 2024", "-1450.00"), ("2024-03-21", "Direct debit Telecom", "-64.99"),
                       ("2024-03-28", "Transfer from Atelier Lumiere", "935.50")]}


def money(v: Decimal, eu: bool = False, symbol: str = "") -> str:
    s = f"{v:,.2f}"
    if eu:
        s = s.replace(",", "_").replace(".", ",").replace("_", ".")
    return symbol + s


def us_date(iso: str) -> str:
    y, m, d = iso.split("-")
    return f"{m}/{d}/{y}"


def eu_date(iso: str) -> str:
    y, m, d = iso.split("-")
    return f"{d}.{m}.{y}"


def grid(page, xs, top, rh, head, rows, aligns, font_size=10):
    """A table with a shaded header; ``aligns`` per column ("l" or "r")."""
    page.draw_rect(pymupdf.Rect(xs[0], top, xs[-1], top + rh), color=None, fill=LIGHT)
    for r, cells in enumerate([head, *rows]):
        y = top + r * rh + 15
        for c, cell in enumerate(cells):
            if aligns[c] == "l":
                put(page, xs[c] + 6, y, cell, font_size, "hebo" if r == 0 else "helv")
            else:
                put(page, xs[c + 1] - 6, y, cell, font_size, "hebo" if r == 0 else "helv", align="right")
    return top + (len(rows) + 1) * rh


def boxes(page, x, y, w, h, pairs):
    """Labels above values, each pair in its own ruled box."""
    for i, (label, value) in enumerate(pairs):
        r = pymupdf.Rect(x + i * w, y, x + (i + 1) * w, y + h)
        page.draw_rect(r, width=0.6)
        put(page, r.x0 + 5, r.y0 + 11, label, 8, color=GRAY)
        put(page, r.x0 + 5, r.y0 + 27, value, 10)


def labeled(page, x, y, pairs, dx=110, lead=16):
    for i, (label, value) in enumerate(pairs):
        put(page, x, y + i * lead, label, 10, "hebo")
        put(page, x + dx, y + i * lead, value, 10)


# ------------------------------------------------------------------------ purchase order
def po_lines():
    return [(c, d, q, Decimal(p), (q * Decimal(p)).quantize(Decimal("0.01"))) for c, d, q, p in PO["lines"]]


def po_a(doc):
    page = doc.new_page(width=ms.LETTER.width, height=ms.LETTER.height)
    put(page, 54, 70, PO["buyer"], 14, "hebo")
    put(page, 558, 72, "PURCHASE ORDER", 20, "hebo", align="right")
    labeled(page, 54, 120, [("PO Number:", PO["po_number"]), ("Order Date:", us_date(PO["order_date"])),
                            ("Delivery Date:", us_date(PO["delivery_date"])), ("Supplier:", PO["supplier"]),
                            ("Buyer:", PO["buyer"]), ("Currency:", PO["currency"])])
    lines = po_lines()
    rows = [(c, d, str(q), money(p), money(a)) for c, d, q, p, a in lines]
    bottom = grid(page, [54, 124, 330, 380, 468, 558], 240, 22, ("Item Code", "Description", "Qty", "Unit Price", "Amount"),
                  rows, "llrrr")
    put(page, 468, bottom + 22, "Total:", 11, "hebo", align="right")
    put(page, 552, bottom + 22, money(sum(a for *_, a in lines)), 11, "hebo", align="right")
    put(page, 54, bottom + 70, "Please quote the PO number on all delivery notes and invoices.", 9)


def po_b(doc):
    page = doc.new_page(width=ms.A4.width, height=ms.A4.height)
    put(page, 50, 64, "Purchase Order", 22, "hebo")
    put(page, 50, 84, PO["buyer"] + "  -  Procurement", 10, color=GRAY)
    boxes(page, 50, 110, 165, 36, [("PO #", PO["po_number"]), ("Order Date", ms.fmt_date(PO["order_date"], "iso")),
                                  ("Required By", ms.fmt_date(PO["delivery_date"], "iso"))])
    boxes(page, 50, 150, 165, 36, [("Vendor", PO["supplier"]), ("Customer", PO["buyer"]), ("Currency", PO["currency"])])
    lines = po_lines()
    rows = [(d, c, str(q), money(p), money(a)) for c, d, q, p, a in lines]
    bottom = grid(page, [50, 250, 330, 390, 460, 545], 220, 22, ("Item", "SKU", "Quantity", "Price", "Line Total"),
                  rows, "llrrr")
    put(page, 460, bottom + 24, "Grand Total", 11, "hebo", align="right")
    put(page, 539, bottom + 24, money(sum(a for *_, a in lines)), 11, "hebo", align="right")


def po_expected():
    lines = po_lines()
    return {**{k: PO[k] for k in ("po_number", "order_date", "delivery_date", "supplier", "buyer", "currency")},
            "total": str(sum(a for *_, a in lines)),
            "lines": [{"item_code": c, "description": d, "quantity": str(q), "unit_price": str(p), "amount": str(a)}
                      for c, d, q, p, a in lines]}


# ------------------------------------------------------------------------ delivery note
def checkbox(page, x, y, checked):
    page.draw_rect(pymupdf.Rect(x, y - 9, x + 10, y + 1), width=0.8)
    if checked:
        put(page, x + 2, y - 0.5, "X", 9, "hebo")


def dn_a(doc):
    page = doc.new_page(width=ms.LETTER.width, height=ms.LETTER.height)
    put(page, 54, 70, "Harbourline Freight Services", 12, "hebo")
    put(page, 558, 72, "DELIVERY NOTE", 20, "hebo", align="right")
    labeled(page, 54, 120, [("Delivery Note No:", DN["delivery_note_number"]), ("Delivery Date:", us_date(DN["delivery_date"])),
                            ("Order Reference:", DN["order_reference"]), ("Ship To:", DN["recipient"]),
                            ("Carrier:", DN["carrier"]), ("Packages:", str(DN["packages"]))], dx=120)
    rows = [(c, d, str(q), u) for c, d, q, u in DN["items"]]
    bottom = grid(page, [54, 140, 380, 470, 558], 250, 22, ("Item Code", "Description", "Quantity", "Unit"), rows, "llrl")
    put(page, 54, bottom + 24, "Total Quantity:", 10, "hebo")
    put(page, 174, bottom + 24, str(sum(q for _, _, q, _ in DN["items"])), 10)
    checkbox(page, 54, bottom + 60, DN["received_in_good_condition"])
    put(page, 70, bottom + 60, "Goods received in good condition", 10)
    put(page, 54, bottom + 100, "Signature: ______________________", 10)


def dn_b(doc):
    page = doc.new_page(width=ms.A4.width, height=ms.A4.height)
    put(page, 50, 64, "Lieferschein", 22, "hebo")
    put(page, 50, 84, "Harbourline Freight Services GmbH  -  Hafenstraße 4  -  20457 Hamburg", 9, color=GRAY)
    boxes(page, 50, 110, 165, 36, [("Lieferschein Nr.", DN["delivery_note_number"]),
                                  ("Lieferdatum", eu_date(DN["delivery_date"])), ("Ihre Bestellung", DN["order_reference"])])
    boxes(page, 50, 150, 165, 36, [("Empfänger", DN["recipient"]), ("Spediteur", DN["carrier"]),
                                  ("Packstücke", str(DN["packages"]))])
    rows = [(c, d, str(q), u) for c, d, q, u in DN["items"]]
    bottom = grid(page, [50, 130, 360, 440, 545], 220, 22, ("Art.-Nr.", "Bezeichnung", "Menge", "Einheit"), rows, "llrl")
    put(page, 50, bottom + 24, "Gesamtmenge:", 10, "hebo")
    put(page, 150, bottom + 24, str(sum(q for _, _, q, _ in DN["items"])), 10)
    checkbox(page, 50, bottom + 60, DN["received_in_good_condition"])
    put(page, 66, bottom + 60, "Ware einwandfrei erhalten", 10)


def dn_expected():
    return {**{k: DN[k] for k in ("delivery_note_number", "delivery_date", "order_reference", "recipient", "carrier")},
            "packages": str(DN["packages"]), "received_in_good_condition": True,
            "total_quantity": str(sum(q for _, _, q, _ in DN["items"])),
            "items": [{"item_code": c, "description": d, "quantity": str(q), "unit": u} for c, d, q, u in DN["items"]]}


# ------------------------------------------------------------------------ bank statement
def bs_rows():
    bal = Decimal(BS["opening_balance"])
    out = []
    for d, text, amount in BS["transactions"]:
        bal += Decimal(amount)
        out.append((d, text, Decimal(amount), bal))
    return out


def bs_a(doc):
    page = doc.new_page(width=ms.LETTER.width, height=ms.LETTER.height)
    put(page, 54, 70, "Northbank plc", 16, "hebo")
    put(page, 558, 72, "ACCOUNT STATEMENT", 16, "hebo", align="right")
    labeled(page, 54, 120, [("Account Holder:", BS["account_holder"]), ("Account Number:", BS["account_number"]),
                            ("Statement Date:", us_date(BS["statement_date"])), ("Currency:", BS["currency"])], dx=120)
    rows = bs_rows()
    put(page, 54, 205, "Opening Balance:", 10, "hebo")
    put(page, 558, 205, money(Decimal(BS["opening_balance"])), 10, align="right")
    body = [(us_date(d), t, money(a), money(b)) for d, t, a, b in rows]
    bottom = grid(page, [54, 140, 380, 470, 558], 220, 22, ("Date", "Description", "Amount", "Balance"), body, "llrr")
    put(page, 54, bottom + 24, "Closing Balance:", 10, "hebo")
    put(page, 558, bottom + 24, money(rows[-1][3]), 10, "hebo", align="right")


def bs_b(doc):
    page = doc.new_page(width=ms.A4.width, height=ms.A4.height)
    put(page, 50, 64, "Statement of Account", 20, "hebo")
    put(page, 50, 84, "Northbank plc  -  Business Banking", 10, color=GRAY)
    boxes(page, 50, 110, 248, 36, [("Account Holder", BS["account_holder"]), ("Account No.", BS["account_number"])])
    boxes(page, 50, 150, 165, 36, [("Statement Date", eu_date(BS["statement_date"])), ("Currency", BS["currency"]),
                                  ("Previous Balance", money(Decimal(BS["opening_balance"]), eu=True))])
    rows = bs_rows()
    body = [(eu_date(d), t, money(a, eu=True), money(b, eu=True)) for d, t, a, b in rows]
    bottom = grid(page, [50, 130, 360, 450, 545], 220, 22, ("Value Date", "Details", "Amount", "Balance"), body, "llrr")
    put(page, 360, bottom + 24, "New Balance", 10, "hebo")
    put(page, 539, bottom + 24, money(rows[-1][3], eu=True), 10, "hebo", align="right")


def bs_expected():
    rows = bs_rows()
    return {**{k: BS[k] for k in ("account_holder", "account_number", "statement_date", "currency", "opening_balance")},
            "closing_balance": str(rows[-1][3]),
            "transactions": [{"booked_on": d, "description": t, "amount": str(a), "balance": str(b)}
                             for d, t, a, b in rows]}


# ------------------------------------------------------------------------ build
KINDS = {  # folder -> (file stem, schema class, layout a, layout b, expected fields, text_contains)
    "purchase_orders": ("purchase_order", "PurchaseOrder", po_a, po_b, po_expected,
                        [PO["po_number"], PO["supplier"], PO["lines"][-1][1]]),
    "delivery_notes": ("delivery_note", "DeliveryNote", dn_a, dn_b, dn_expected,
                       [DN["delivery_note_number"], DN["recipient"], DN["items"][-1][1]]),
    "bank_statements": ("bank_statement", "BankStatement", bs_a, bs_b, bs_expected,
                        [BS["account_holder"], BS["account_number"], BS["transactions"][-1][1]]),
}


def scan(doc, seed: int) -> bytes:
    """Layout b as a scan: 200 dpi, slight rotation, blur, paper tone, noise; an image-only PDF page."""
    rng = np.random.default_rng(seed)
    img = Image.fromarray(ms.render_gray(doc, 200))
    img = img.rotate(0.4, resample=Image.BICUBIC, fillcolor=255).filter(ImageFilter.GaussianBlur(0.5))
    a = np.asarray(img, dtype=np.float32) * (236 / 255) + 12
    a += rng.normal(0, 5, a.shape)
    buf = io.BytesIO()
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=70, dpi=(200, 200))
    out = pymupdf.open()
    page = out.new_page(width=img.width * 72 / 200, height=img.height * 72 / 200)
    page.insert_image(page.rect, stream=buf.getvalue())
    return pdf_bytes(out, "Scanned document")


def build(out: Path) -> list[Path]:
    written = []
    for seed, (folder, (stem, cls, draw_a, draw_b, fields, text)) in enumerate(KINDS.items(), start=1):
        target = out / folder
        target.mkdir(parents=True, exist_ok=True)
        docs = {}
        for suffix, draw in (("a", draw_a), ("b", draw_b)):
            doc = pymupdf.open()
            draw(doc)
            docs[f"{stem}_{suffix}.pdf"] = (pdf_bytes(doc, stem.replace("_", " ").title()), True)
            if suffix == "b":
                docs[f"{stem}_b_scanned.pdf"] = (scan(doc, 4200 + seed), False)
        for name, (data, text_layer) in docs.items():
            (target / name).write_bytes(data)
            # the record of make_samples.expected() (so tests over the whole folder read it alike), plus
            # the schema to run and its expected fields ("invoice" is null: these are not invoices)
            record = {**ms.expected(name, stem, [text_layer], text), "schema": f"{SCHEMAS}:{cls}",
                      "fields": fields()}
            exp = target / f"{name[:-4]}.expected.json"
            exp.write_text(json.dumps(record, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
            written += [target / name, exp]
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "other", help="output folder (default: sample_docs/other)")
    for path in build(ap.parse_args().out):
        print(f"{path.stat().st_size:>9,}  {path.relative_to(path.parents[1])}")


if __name__ == "__main__":
    main()
