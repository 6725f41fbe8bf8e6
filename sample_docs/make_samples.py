"""Generate the docroute sample documents and their expected outputs.

Usage: python sample_docs/make_samples.py [--out DIR]   (default: this folder)

Deterministic: same bytes on every run with the same PyMuPDF, Pillow, numpy and pypdf (fixed seeds,
fixed PDF dates, no document IDs). Each invoice is one dict below; the same dict draws the document
and writes its <name>.expected.json, so layout and expected values cannot drift apart.
"""

import argparse
import io
import json
import math
import random
import secrets
import sys
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from unittest import mock

import make_einvoice_samples
import numpy as np
import pymupdf
from PIL import Image, ImageFilter

HERE = Path(__file__).resolve().parent
LETTER, A4 = pymupdf.paper_rect("letter"), pymupdf.paper_rect("a4")
BLACK, GRAY, LIGHT = (0, 0, 0), (0.35, 0.35, 0.35), (0.9, 0.9, 0.9)
INK = (0.08, 0.12, 0.5)
FIXED_DATE = "D:20240315090000Z"
CENT = Decimal("0.01")
HEAD = ("Description", "Qty", "Unit Price", "Amount")

# --------------------------------------------------------------------------- data
INVOICES = {
    "invoice_ruled": {
        "layout": "ruled", "locale": "us", "currency": "USD", "symbol": "$", "tax": ("Tax (8.25%)", "0.0825"),
        "invoice_number": "INV-2024-0042", "invoice_date": "2024-03-15", "due_date": "2024-04-14",
        "vendor": ("Bluefield Office Supply Co.", ["1847 Harbor View Dr", "Suite 300", "Oakland, CA 94607"]),
        "customer": ("Crescent Valley Dental Group", ["512 Maple Avenue", "Fresno, CA 93721"]),
        "items": [("Ergonomic mesh office chair", 4, "189.00"), ("Standing desk converter", 2, "245.50"),
                  ("Toner cartridge, black", 6, "72.25"), ("Copy paper, 10-ream case", 3, "48.90")],
        "notes": ["Payment terms: Net 30. Please make checks payable to Bluefield Office Supply Co.",
                  "Questions? billing@bluefield-example.com  |  Phone (555) 014-2290"],
    },
    "invoice_unruled": {
        "layout": "unruled", "locale": "eu", "currency": "EUR", "symbol": "EUR", "tax": ("VAT 19%", "0.19"),
        "invoice_number": "RE-2024-1187", "invoice_date": "2024-03-15", "due_date": "2024-04-15",
        "vendor": ("Müller & Schmidt Technik GmbH", ["Hauptstraße 112", "10115 Berlin", "Germany"]),
        "customer": ("Atelier Lumière SARL", ["14 rue des Lilas", "69003 Lyon", "France"]),
        "items": [("LED panel 60x60, 40 W", 12, "84.90"), ("Mounting frame, aluminium", 12, "17.35"),
                  ("Dimmable driver unit DA-40", 6, "39.00"), ("Installation labour (hours)", 9, "65.00"),
                  ("Cable set 5 m, shielded", 10, "11.80")],
        "notes": ["Payment within 30 days without deduction. VAT ID DE 298 114 507",
                  "IBAN DE89 3704 0044 0532 0130 00  -  BIC COBADEFFXXX"],
    },
    "invoice_two_page": {
        "layout": "two_page", "locale": "iso", "currency": "GBP", "symbol": "£", "tax": ("VAT 20%", "0.20"),
        "invoice_number": "GB-INV-00731", "invoice_date": "2024-03-15", "due_date": "2024-04-14",
        "vendor": ("Thornbury Lab Supplies Ltd", ["Unit 7, Avon Park", "Bristol BS2 0QT", "United Kingdom"]),
        "customer": ("Kestrel Bioscience Ltd", ["22 Chapel Lane", "Cambridge CB1 2LA", "United Kingdom"]),
        "items": [("Nitrile gloves, size M, box", 20, "6.40"), ("Nitrile gloves, size L, box", 15, "6.40"),
                  ("Pipette tips, 200 ul, rack", 30, "4.75"), ("Pipette tips, 1000 ul, rack", 25, "5.10"),
                  ("Microcentrifuge tubes, 1.5 ml", 8, "12.90"), ("Conical tubes, 15 ml, case", 4, "58.00"),
                  ("Conical tubes, 50 ml, case", 4, "74.50"), ("Petri dishes, 90 mm, sleeve", 40, "3.20"),
                  ("Serological pipettes, 10 ml", 10, "14.60"), ("Lab coat, cotton, size M", 6, "22.00"),
                  ("Lab coat, cotton, size L", 6, "22.00"), ("Safety goggles, anti-fog", 12, "8.95"),
                  ("Beaker, borosilicate, 250 ml", 24, "3.85"), ("Beaker, borosilicate, 600 ml", 12, "5.40"),
                  ("Erlenmeyer flask, 500 ml", 10, "7.25"), ("Graduated cylinder, 100 ml", 8, "9.80"),
                  ("Wash bottle, LDPE, 500 ml", 15, "2.95"), ("Weighing boats, pack of 500", 5, "16.30"),
                  ("Parafilm M, 4 in x 125 ft", 3, "38.70"), ("Cryo labels, roll of 1000", 4, "27.50"),
                  ("Cryo boxes, 81-place", 20, "4.60"), ("Ethanol 70%, 5 L", 6, "18.90"),
                  ("Disinfectant wipes, tub of 200", 10, "9.40"), ("Autoclave tape, 19 mm x 55 m", 6, "5.75"),
                  ("Biohazard bags, pack of 100", 8, "11.20"), ("Sharps container, 5 L", 10, "6.85"),
                  ("Filter paper, grade 1, 125 mm", 5, "13.60"), ("pH indicator strips, pack", 6, "7.90"),
                  ("Magnetic stir bars, assorted set", 2, "24.00"), ("Cuvettes, PS, box of 100", 5, "15.40")],
        "notes": ["Payment by BACS within 30 days.", "Sort code 20-00-00, account 55779911."],
    },
    "invoice_scanned": {
        "layout": "ruled", "locale": "us", "currency": "USD", "symbol": "$", "tax": ("Tax (7%)", "0.07"),
        "invoice_number": "INV-2024-0178", "invoice_date": "2024-05-02", "due_date": "2024-06-01",
        "vendor": ("Northgate Printing & Signs", ["77 Commerce Street", "Hartford, CT 06103"]),
        "customer": ("Pinecrest Realty LLC", ["2300 Elm Street", "Floor 2", "New Haven, CT 06510"]),
        "items": [("Vinyl banner 3 x 8 ft, full color", 2, "145.00"), ("Yard signs 18 x 24 in", 25, "14.80"),
                  ("Business cards, 500 count", 6, "39.50")],
        "notes": ["Payment terms: Net 30. Please make checks payable to Northgate Printing & Signs.",
                  "Questions? billing@northgate-example.com  |  Phone (555) 013-7741"],
    },
    "invoice_photo": {
        "layout": "unruled", "locale": "us", "currency": "USD", "symbol": "$", "tax": ("Tax (6%)", "0.06"),
        "invoice_number": "A-58213", "invoice_date": "2024-02-09", "due_date": "2024-03-10",
        "vendor": ("Redwood Creek Landscaping", ["418 Orchard Road", "Asheville, NC 28801"]),
        "customer": ("Helen Ortega", ["93 Birchwood Court", "Asheville, NC 28805"]),
        "items": [("Spring yard cleanup", 1, "380.00"), ("Mulch, dark brown (cu yd)", 6, "42.50"),
                  ("Boxwood shrubs, 3 gallon", 8, "31.75"), ("Labor, planting (hours)", 5, "55.00")],
        "notes": ["Payment due within 30 days. Checks and card payments accepted.", "Thank you!"],
    },
}


def totals(inv: dict) -> tuple[list[tuple[str, int, Decimal, Decimal]], Decimal, Decimal, Decimal]:
    """Line items as (description, qty, unit price, amount), subtotal, tax, total; cents rounded half-up."""
    lines = [(d, q, Decimal(p), (q * Decimal(p)).quantize(CENT, ROUND_HALF_UP)) for d, q, p in inv["items"]]
    subtotal = sum((a for *_, a in lines), Decimal("0.00"))
    tax = (subtotal * Decimal(inv["tax"][1])).quantize(CENT, ROUND_HALF_UP)
    return lines, subtotal, tax, subtotal + tax


def fmt_amount(value: Decimal, inv: dict) -> str:
    s = f"{value:,.2f}"
    if inv["locale"] == "eu":
        return s.replace(",", "_").replace(".", ",").replace("_", ".") + " " + inv["symbol"]
    return inv["symbol"] + s


def fmt_date(iso: str, locale: str) -> str:
    y, m, d = iso.split("-")
    return {"us": f"{m}/{d}/{y}", "eu": f"{d}.{m}.{y}", "iso": iso}[locale]


# ------------------------------------------------------------------------ helpers
def put(page, x, y, s, size=10, font="helv", color=BLACK, align="left", rotate=0):
    """insert_text with left/right/center alignment on x."""
    if not s:
        return
    if align != "left":
        w = pymupdf.get_text_length(s, fontname=font, fontsize=size)
        x -= w if align == "right" else w / 2
    page.insert_text((x, y), s, fontsize=size, fontname=font, color=color, rotate=rotate)


def block(page, x, y, lines, size=10, lead=13, font="helv", first_font=None, align="left"):
    for i, s in enumerate(lines):
        put(page, x, y + i * lead, s, size, (first_font or font) if i == 0 else font, align=align)


def table_row(page, xs, y, cells, size=10, font="helv", color=BLACK, pad=6):
    """First cell left-aligned in column [xs[0], xs[1]], the others right-aligned in theirs."""
    put(page, xs[0] + pad, y, cells[0], size, font, color)
    for c, cell in enumerate(cells[1:], start=2):
        put(page, xs[c] - pad, y, cell, size, font, color, align="right")


def item_cells(inv, line):
    d, q, p, a = line
    return d, str(q), fmt_amount(p, inv), fmt_amount(a, inv)


def pdf_bytes(doc, title: str) -> bytes:
    """Save with fixed metadata, no /ID, one merged content stream per page."""
    doc.set_metadata({"title": title, "author": "docroute sample generator", "creator": "make_samples.py",
                      "producer": "docroute", "creationDate": FIXED_DATE, "modDate": FIXED_DATE})
    buf = io.BytesIO()
    doc.save(buf, garbage=3, deflate=True, clean=True, no_new_id=True)
    return buf.getvalue()


# ------------------------------------------------------------------------ layouts
def draw_ruled(doc, inv):
    """US style, Letter: vendor top-left, INVOICE top-right, Bill To, fully ruled item grid."""
    page = doc.new_page(width=LETTER.width, height=LETTER.height)
    lines, sub, tax, total = totals(inv)
    block(page, 54, 64, [inv["vendor"][0], *inv["vendor"][1]], first_font="hebo")
    put(page, 558, 74, "INVOICE", 26, "hebo", align="right")
    meta = [("Invoice No:", inv["invoice_number"]), ("Invoice Date:", fmt_date(inv["invoice_date"], "us")),
            ("Due Date:", fmt_date(inv["due_date"], "us"))]
    for i, (label, value) in enumerate(meta):
        put(page, 390, 104 + i * 15, label, 10, "hebo")
        put(page, 558, 104 + i * 15, value, 10, align="right")
    put(page, 54, 178, "Bill To:", 10, "hebo")
    block(page, 54, 193, [inv["customer"][0], *inv["customer"][1]])
    xs, top, rh = [54, 324, 380, 468, 558], 262, 22
    page.draw_rect(pymupdf.Rect(xs[0], top, xs[-1], top + rh), color=None, fill=LIGHT)
    table_row(page, xs, top + 15, HEAD, font="hebo")
    for r, line in enumerate(lines, start=1):
        table_row(page, xs, top + r * rh + 15, item_cells(inv, line))
    bottom = top + (len(lines) + 1) * rh
    for y in range(top, bottom + 1, rh):
        page.draw_line((xs[0], y), (xs[-1], y), width=0.8)
    for x in xs:
        page.draw_line((x, top), (x, bottom), width=0.8)
    for i, (label, value) in enumerate([("Subtotal", sub), (inv["tax"][0], tax), ("Total", total)]):
        y0, font = bottom + i * rh, "hebo" if label == "Total" else "helv"
        page.draw_rect(pymupdf.Rect(xs[2], y0, xs[4], y0 + rh), width=0.8)
        page.draw_line((xs[3], y0), (xs[3], y0 + rh), width=0.8)
        table_row(page, xs[1:], y0 + 15, ("", label, fmt_amount(value, inv)), font=font)
    block(page, 54, bottom + 3 * rh + 40, inv["notes"], size=9, lead=13)
    put(page, 306, 740, "Thank you for your business!", 11, "hebo", align="center")


def draw_unruled(doc, inv):
    """A4: vendor top-left, meta labels on the right, columns aligned by whitespace only."""
    page = doc.new_page(width=A4.width, height=A4.height)
    lines, sub, tax, total = totals(inv)
    put(page, 50, 70, inv["vendor"][0], 16, "hebo")
    block(page, 50, 88, inv["vendor"][1], size=9, lead=11)
    put(page, 545, 130, "Invoice", 22, "hebo", align="right")
    meta = [("Invoice #", inv["invoice_number"]), ("Date", fmt_date(inv["invoice_date"], inv["locale"])),
            ("Due", fmt_date(inv["due_date"], inv["locale"]))]
    for i, (label, value) in enumerate(meta):
        put(page, 470, 158 + i * 15, label, 10, color=GRAY, align="right")
        put(page, 480, 158 + i * 15, value, 10, "hebo")
    put(page, 50, 158, "Bill To", 10, color=GRAY)
    block(page, 50, 173, [inv["customer"][0], *inv["customer"][1]], first_font="hebo")
    xs = [50, 300, 345, 445, 545]
    table_row(page, xs, 270, HEAD, font="hebo", pad=0)
    for r, line in enumerate(lines, start=1):
        table_row(page, xs, 270 + r * 20, item_cells(inv, line), pad=0)
    y = 270 + len(lines) * 20 + 36
    for label, value in (("Subtotal", sub), (inv["tax"][0], tax), ("Total due", total)):
        big = label == "Total due"
        table_row(page, xs[1:], y, ("", label, fmt_amount(value, inv)), 12 if big else 10,
                  "hebo" if big else "helv", pad=0)
        y += 18
    block(page, 50, 760, inv["notes"], size=9, lead=12)


def draw_two_page(doc, inv, first_page_rows=21):
    """UK style, A4: item table with a filled header, continued on page 2, totals on page 2."""
    lines, sub, tax, total = totals(inv)
    xs, rh = [45, 340, 395, 470, 550], 19
    chunks = [lines[:first_page_rows], lines[first_page_rows:]]
    for pno, chunk in enumerate(chunks):
        page = doc.new_page(width=A4.width, height=A4.height)
        if pno == 0:
            put(page, 45, 70, "TAX INVOICE", 22, "hebo")
            block(page, 550, 62, [inv["vendor"][0], *inv["vendor"][1], "VAT Reg. No. GB 284 1937 55"], 9, 12,
                  first_font="hebo", align="right")
            meta = [("Invoice Number", inv["invoice_number"]), ("Invoice Date", inv["invoice_date"]),
                    ("Due Date", inv["due_date"])]
            for i, (label, value) in enumerate(meta):
                put(page, 45, 110 + i * 14, label, 10, "hebo")
                put(page, 150, 110 + i * 14, value, 10)
            put(page, 45, 170, "Invoice To", 10, "hebo")
            block(page, 45, 185, [inv["customer"][0], *inv["customer"][1]])
            top = 250
        else:
            put(page, 45, 60, f"Invoice {inv['invoice_number']} (continued)", 12, "hebo")
            top = 80
        page.draw_rect(pymupdf.Rect(xs[0], top, xs[-1], top + rh), color=None, fill=(0.2, 0.27, 0.4))
        table_row(page, xs, top + 13, HEAD, 9.5, "hebo", (1, 1, 1), pad=5)
        for r, line in enumerate(chunk, start=1):
            table_row(page, xs, top + r * rh + 13, item_cells(inv, line), 9.5, pad=5)
            page.draw_line((xs[0], top + (r + 1) * rh), (xs[-1], top + (r + 1) * rh), color=(0.7, 0.7, 0.7),
                           width=0.5)
        y = top + (len(chunk) + 1) * rh + 20
        if pno == 0:
            put(page, 550, y, "Continued on next page", 9, color=GRAY, align="right")
        else:
            for label, value in (("Subtotal", sub), (inv["tax"][0], tax), ("Total", total)):
                if label == "Total":
                    page.draw_line((395, y - 12), (550, y - 12), width=0.8)
                table_row(page, xs[1:], y, ("", label, fmt_amount(value, inv)), 10,
                          "hebo" if label == "Total" else "helv", pad=5)
                y += 16
            block(page, 45, y + 30, inv["notes"], 9)
        put(page, 297, 810, f"Page {pno + 1} of {len(chunks)}", 8, color=GRAY, align="center")


def invoice_doc(inv):
    doc = pymupdf.open()
    {"ruled": draw_ruled, "unruled": draw_unruled, "two_page": draw_two_page}[inv["layout"]](doc, inv)
    return doc


# ------------------------------------------------------------------- degradations
def render_gray(doc, dpi) -> np.ndarray:
    pix = doc[0].get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY, alpha=False)
    return np.frombuffer(pix.samples, dtype=np.uint8).reshape(pix.height, pix.width).copy()


def make_scan(inv) -> bytes:
    """Render at 200 dpi, rotate slightly, add paper tone and noise; image-only PDF page (JPEG)."""
    rng = np.random.default_rng(1701)
    img = Image.fromarray(render_gray(invoice_doc(inv), 200))
    img = img.rotate(0.6, resample=Image.BICUBIC, fillcolor=255).filter(ImageFilter.GaussianBlur(0.6))
    a = np.asarray(img, dtype=np.float32) * (236 / 255) + 12          # off-white paper, gray-ish ink
    a += rng.normal(0, 6, a.shape)
    specks = rng.random(a.shape) < 0.0004
    a[specks] = rng.uniform(60, 160, specks.sum())
    buf = io.BytesIO()
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=60, dpi=(200, 200))
    doc = pymupdf.open()
    page = doc.new_page(width=img.width * 72 / 200, height=img.height * 72 / 200)
    page.insert_image(page.rect, stream=buf.getvalue())
    return pdf_bytes(doc, f"Scanned invoice {inv['invoice_number']}")


def perspective_coeffs(dst_quad, src_size):
    """Coefficients for Image.transform(PERSPECTIVE): output quad -> full source rectangle."""
    w, h = src_size
    src = [(0, 0), (w, 0), (w, h), (0, h)]
    rows, rhs = [], []
    for (x, y), (u, v) in zip(dst_quad, src, strict=True):
        rows += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        rhs += [u, v]
    return np.linalg.solve(np.array(rows, float), np.array(rhs, float)).tolist()


def make_photo(inv) -> bytes:
    """Phone-photo look: paper on a desk, perspective, lighting gradient, blur, JPEG artefacts, noise."""
    rng = np.random.default_rng(4242)
    paper = Image.fromarray(render_gray(invoice_doc(inv), 170)).convert("RGB")
    W, H = 1200, 1620
    quad = [(52, 48), (1158, 86), (1176, 1590), (28, 1566)]
    coeffs = perspective_coeffs(quad, paper.size)
    warped = paper.transform((W, H), Image.PERSPECTIVE, coeffs, Image.BICUBIC)
    mask = Image.new("L", paper.size, 255).transform((W, H), Image.PERSPECTIVE, coeffs, Image.BICUBIC)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    desk = np.stack([92 + 20 * xx / W, 70 + 12 * yy / H, 52 + 0 * xx], axis=-1)
    m = (np.asarray(mask, np.float32) / 255)[..., None]
    a = np.asarray(warped, np.float32) * np.array([1.0, 0.97, 0.9]) * m + desk * (1 - m)
    light = 1.02 - 0.22 * (xx / W) * 0.6 - 0.22 * (yy / H) * 0.9                # light from top-left
    light -= 0.08 * (((xx - W / 2) / W) ** 2 + ((yy - H / 2) / H) ** 2)          # vignette
    a *= light[..., None]
    a = np.asarray(Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.8)))
    a = a + rng.normal(0, 2, (H, W, 1))                                             # sensor noise
    buf = io.BytesIO()
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=50)  # JPEG artefacts
    out = io.BytesIO()
    Image.open(buf).save(out, "PNG", dpi=(150, 150))
    return out.getvalue()


# ---------------------------------------------------------------- handwriting
GLYPHS = {  # advance; strokes separated by "|"; points "x,y"
    "a": "1.0; .8,.8 .4,1 .05,.6 .2,.05 .6,.1 .8,.6 .8,1 .8,.05 .95,.1",
    "b": ".95; .1,2 .1,0 | .1,.5 .45,1 .8,.6 .6,.05 .1,.1",
    "d": "1.0; .8,.7 .4,1 .05,.5 .3,0 .8,.3 | .8,2 .8,0",
    "e": ".9; .1,.5 .8,.6 .6,1 .2,.9 .05,.4 .3,0 .8,.15",
    "g": "1.0; .8,.8 .4,1 .05,.6 .3,.2 .75,.5 | .8,1 .8,-.6 .5,-1 .1,-.7",
    "i": ".5; .2,1 .2,0 .4,.1 | .2,1.45 .26,1.52",
    "l": ".55; .2,2 .2,.1 .45,.05",
    "m": "1.25; 0,.9 .05,0 .05,.7 .3,1 .55,.7 .55,0 .55,.7 .8,1 1.05,.7 1.05,0",
    "o": ".95; .5,1 .1,.7 .1,.2 .5,0 .85,.3 .85,.75 .5,1 .3,.95",
    "r": ".75; .05,1 .1,0 | .1,.6 .4,1 .7,.9",
    "s": ".85; .75,.9 .4,1 .1,.8 .4,.5 .75,.25 .45,0 .05,.15",
    "x": ".9; .05,1 .8,0 | .8,1 .05,0",
    "J": "1.1; .3,2 1,2 | .7,2 .7,.2 .4,-.1 .1,.2",
    "M": "1.4; 0,0 .1,2 .55,.6 1,2 1.1,0",
    "2": "1.0; .1,1.5 .4,2 .8,1.7 .7,1.2 .05,0 .9,.05",
    ".": ".45; .1,0 .16,.06",
    " ": ".6; ",
}


def glyph(ch):
    """(advance, strokes) of a glyph, in x-height units: baseline y=0, x-height 1, ascender 2."""
    adv, strokes = GLYPHS[ch].split(";")
    return float(adv), [[tuple(map(float, pt.split(","))) for pt in st.split()] for st in strokes.split("|")
                        if st.strip()]


def catmull_rom(pts, steps=6):
    """Smooth curve through pts (uniform Catmull-Rom spline)."""
    p, t, out = np.array([pts[0], *pts, pts[-1]], float), np.arange(steps)[:, None] / steps, []
    for a, b, c, d in zip(p, p[1:], p[2:], p[3:], strict=False):
        seg = 2 * b + (c - a) * t + (2 * a - 5 * b + 4 * c - d) * t**2 + (3 * b - a - 3 * c + d) * t**3
        out += (0.5 * seg).tolist()
    return out + [pts[-1]]


def handwrite(page, x, y, word, size, rng):
    """Draw `word` as smoothed, slanted, jittered pen strokes; baseline at y, x-height `size` points."""
    shape = page.new_shape()
    for ch in word:
        adv, strokes = glyph(ch)
        for stroke in strokes:
            pts = [(gx + rng.uniform(-0.05, 0.05), gy + rng.uniform(-0.05, 0.05)) for gx, gy in stroke]
            pts = [(x + (gx + 0.28 * gy) * size, y - gy * size) for gx, gy in catmull_rom(pts)]
            shape.draw_polyline(pts)
        x += adv * size * rng.uniform(0.95, 1.1)
    shape.finish(color=INK, width=1.2, lineCap=1, lineJoin=1, closePath=False)
    shape.commit()


def signature_strokes(x, y):
    """One looping, slanted pen stroke with a tall first loop, plus an underline flourish."""
    pen = []
    for i in range(241):
        t = i / 240
        ph = 2 * math.pi * 6.3 * t
        height = 24 * math.exp(-5 * t) + 7 + 3 * math.sin(2 * math.pi * 2.3 * t)
        dy = height * (0.5 - 0.5 * math.cos(ph)) + 4 * t
        pen.append((x + 150 * t - 7 * math.sin(ph) + 0.35 * dy, y - dy))
    under = [(x - 8 + 190 * t / 20, y + 7 - 5 * math.sin(math.pi * t / 20) + 0.02 * t * t) for t in range(21)]
    return [pen, under]


def make_handwriting(doc):
    page = doc.new_page(width=A4.width, height=A4.height)
    rng = random.Random(77)
    put(page, 50, 70, "DELIVERY NOTE", 20, "hebo")
    block(page, 50, 95, ["Harbourline Freight Services", "Pier 4, Dock Road, Southampton SO14 3FX"], 9)
    block(page, 380, 75, ["Delivery No:", "Date:", "Order ref:"], lead=15, font="hebo")
    block(page, 460, 75, ["DN-58213", "2024-03-18", "PO-77120"], lead=15)
    put(page, 50, 170, "Deliver to: Kestrel Bioscience Ltd, 22 Chapel Lane, Cambridge CB1 2LA", 10)
    rows = [("Item", "Packages", "Weight"), ("Laboratory consumables", "4 boxes", "38 kg"),
            ("Glassware (fragile)", "2 boxes", "12 kg"), ("Cold-chain samples", "1 cooler", "9 kg")]
    for r, row in enumerate(rows):
        for x, cell in zip((50, 330, 450), row, strict=True):
            put(page, x, 210 + 18 * r, cell, 10, "hebo" if r == 0 else "helv")
    put(page, 50, 330, "Goods received in good condition unless noted below.", 10)
    for label, y, word, end in (("Remarks:", 380, "2 boxes damaged", 545), ("Name:", 440, "J. Miller", 330),
                                ("Received by:", 500, "", 330)):
        put(page, 50, y, label, 10, "hebo")
        handwrite(page, 120, y + 1, word, 9, rng)
        page.draw_line((115, y + 5), (end, y + 5), color=GRAY, width=0.5)
    annot = page.add_ink_annot(signature_strokes(150, 500))
    annot.set_colors(stroke=INK)
    annot.set_border(width=1.3)
    annot.set_info(title="Driver tablet", content="signature")
    annot.update()
    put(page, 50, 780, "Carrier copy - please retain for your records.", 8, color=GRAY)


# ------------------------------------------------------------ other documents
REGIONS = ["North America", "South America", "Western Europe", "Eastern Europe", "Middle East", "Africa",
           "Asia Pacific", "Oceania"]


def make_complex_table(doc):
    page = doc.new_page(width=A4.width, height=A4.height)
    rng = random.Random(2023)
    put(page, 35, 70, "Table 3. Net revenue by region and quarter (EUR thousands)", 13, "hebo")
    data = [[rng.randrange(120, 2400) for _ in range(8)] for _ in REGIONS]
    rows = [[r, *[f"{v:,}" for v in vals]] for r, vals in zip(REGIONS, data, strict=True)]
    rows.append(["Total", *[f"{sum(col):,}" for col in zip(*data, strict=True)]])
    x0, cw, top, rh = 35, 52, 95, 20
    xs = [x0, x0 + 109] + [x0 + 109 + cw * (i + 1) for i in range(8)]
    bottom = top + rh * (2 + len(rows))
    page.draw_rect(pymupdf.Rect(x0, top, xs[-1], top + 2 * rh), color=None, fill=LIGHT)
    page.draw_rect(pymupdf.Rect(x0, top, xs[-1], bottom), color=BLACK, width=0.9)
    put(page, (xs[0] + xs[1]) / 2, top + rh + 4, "Region", 10, "hebo", align="center")  # rowspan 2
    for i, year in enumerate(("2023", "2024")):                                      # colspan 4
        put(page, (xs[1 + 4 * i] + xs[5 + 4 * i]) / 2, top + 14, year, 10, "hebo", align="center")
        for q in range(4):
            put(page, (xs[1 + 4 * i + q] + xs[2 + 4 * i + q]) / 2, top + rh + 14, f"Q{q + 1}", 10, "hebo",
                align="center")
    page.draw_line((xs[1], top + rh), (xs[-1], top + rh), width=0.6)               # only under the years
    for i, x in enumerate(xs[1:-1], start=1):
        page.draw_line((x, top if i in (1, 5) else top + rh), (x, bottom), width=0.6)
    for r, row in enumerate(rows):
        y = top + (2 + r) * rh
        page.draw_line((x0, y), (xs[-1], y), width=0.9 if r == 0 or row[0] == "Total" else 0.4)
        font = "hebo" if row[0] == "Total" else "helv"
        put(page, x0 + 5, y + 14, row[0], 9.5, font)
        for c, cell in enumerate(row[1:], start=1):
            put(page, xs[c + 1] - 5, y + 14, cell, 9.5, font, align="right")
    put(page, 35, bottom + 18, "Source: Orvane Group internal reporting, unaudited.", 8, color=GRAY)


CHART = [("Phone", 82), ("Email", 67), ("Live chat", 74), ("Forum", 41), ("Social", 55), ("In-store", 90)]


def make_chart(doc):
    page = doc.new_page(width=LETTER.width, height=LETTER.height)
    put(page, 306, 90, "Customer Satisfaction by Support Channel, 2024", 15, "hebo", align="center")
    left, right, top, base = 110, 530, 140, 500
    scale = (base - top) / 100
    for v in (0, 25, 50, 75, 100):
        y = base - v * scale
        page.draw_line((left, y), (right, y), color=LIGHT, width=0.6)                 # grid (x axis covers 0)
        page.draw_line((left - 5, y), (left, y), color=BLACK, width=1)
        put(page, left - 9, y + 3.5, str(v), 10, align="right")
    page.draw_line((left, top - 10), (left, base), color=BLACK, width=1.2)           # y axis
    page.draw_line((left, base), (right, base), color=BLACK, width=1.2)              # x axis
    slot = (right - left) / len(CHART)
    for i, (label, value) in enumerate(CHART):
        cx = left + slot * (i + 0.5)
        page.draw_rect(pymupdf.Rect(cx - slot * 0.3, base - value * scale, cx + slot * 0.3, base),
                       color=None, fill=(0.2, 0.42, 0.7))
        page.draw_line((cx, base), (cx, base + 5), color=BLACK, width=1)
        put(page, cx, base + 18, label, 10, align="center")
    put(page, (left + right) / 2, base + 45, "Support channel", 11, "hebo", align="center")
    put(page, 62, (top + base) / 2 + 70, "Satisfied customers (%)", 11, "hebo", rotate=90)


PROSE = [
    "The Harbour Towns of the Veln Estuary",
    "For most of the nineteenth century the small harbour towns on the Veln estuary lived from two things: "
    "herring in the autumn and timber in the spring. Ships came up the river on the flood tide, loaded sawn "
    "planks at the long wooden quays, and left again two tides later.",
    "The arrival of the railway in 1868 changed this pattern within a decade. Timber could now travel inland "
    "without waiting for wind or tide, and the merchants who had owned the quays began to invest in "
    "warehouses by the new station. Several old quays silted up; their outlines still show at low water.",
    "Fishing held on longer. The herring fleet, never large, counted some forty boats in 1890 and fewer than "
    "ten by 1925. Families who had fished for generations moved into boat repair, ferry services, and later "
    "into the summer visitor trade, which grew steadily once the coast road was paved.",
    "Today the estuary is better known for its birds than for its commerce. The salt marshes are protected, "
    "and the former customs house is a small museum whose archive of harbour ledgers is open to researchers.",
]


def make_plain_text(doc):
    page = doc.new_page(width=LETTER.width, height=LETTER.height)
    put(page, 72, 90, PROSE[0], 18, "hebo")
    rect = pymupdf.Rect(72, 115, 540, 720)
    left = page.insert_textbox(rect, "\n\n".join(PROSE[1:]), fontname="tiro", fontsize=11.5, lineheight=1.35,
                               align=pymupdf.TEXT_ALIGN_JUSTIFY)
    assert left >= 0, "prose does not fit the page"


# ------------------------------------------------------------------ expectations
def expected(file, kind, text_layer, text=(), invoice=None, error=None, status=None):
    """The expected-JSON record; text_layer is the per-page list, None for a broken file."""
    pages = len(text_layer or [])
    route = "vlm" if kind in ("handwriting", "complex_table", "chart") else "layout"
    reasons = [kind] if route == "vlm" else []
    return {"file": file, "kind": kind, "status": status or ("failed" if kind == "broken" else "ok"),
            "n_pages": None if text_layer is None else pages, "has_text_layer": text_layer or [],
            "expected_route": [route] * pages, "expected_reasons": [reasons] * pages,
            "error_contains": error, "invoice": invoice, "text_contains": list(text)}


def invoice_expected(inv) -> dict:
    lines, sub, tax, total = totals(inv)
    return {"invoice_number": inv["invoice_number"], "invoice_date": inv["invoice_date"],
            "due_date": inv["due_date"], "vendor_name": inv["vendor"][0],
            "vendor_address": ", ".join(inv["vendor"][1]), "customer_name": inv["customer"][0],
            "customer_address": ", ".join(inv["customer"][1]), "currency": inv["currency"],
            "subtotal": str(sub), "tax_total": str(tax), "total": str(total),
            # what is still to pay: printed ("Total due") by the unruled layout only; no sample prints a prepayment
            "amount_due": str(total) if inv.get("layout") == "unruled" else None,
            "line_items": [{"description": d, "quantity": str(q), "unit_price": str(p), "amount": str(a)}
                           for d, q, p, a in lines]}


def encrypt(data: bytes) -> bytes:
    """AES-256 (R6), user password "secret", owner "owner", reproducible bytes. MuPDF and qpdf draw the
    file key, salts and IVs from OS entropy (new bytes every run); pypdf draws them from
    secrets.token_bytes, which is swapped for a seeded generator during this call only."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.pdf_header = "%PDF-1.7"  # pypdf defaults to 1.3, too old to announce AES-256
    buf = io.BytesIO()
    with mock.patch.object(secrets, "token_bytes", random.Random(6).randbytes):
        writer.encrypt(user_password="secret", owner_password="owner", algorithm="AES-256")
        writer.write(buf)
    return buf.getvalue()


OTHERS = [  # file, draw function, kind, text_contains
    ("handwriting_note.pdf", make_handwriting, "handwriting",
     ["DELIVERY NOTE", "DN-58213", "Received by:", "Harbourline Freight Services"]),
    ("complex_table.pdf", make_complex_table, "complex_table",
     ["Net revenue by region", "Region", "2023", "Q4", "Asia Pacific"]),
    ("chart.pdf", make_chart, "chart", ["Satisfaction by Support Channel", "Support channel", "Phone"]),
    ("plain_text.pdf", make_plain_text, "text", [PROSE[0], "herring in the autumn", "railway in 1868"]),
]


# ------------------------------------------------------------------------ main
def build(out: Path) -> list[Path]:
    files: dict[str, bytes] = {}
    records: list[dict] = []
    for stem, inv in INVOICES.items():
        name = stem + (".png" if stem == "invoice_photo" else ".pdf")
        if stem == "invoice_scanned":
            files[name], text_layer = make_scan(inv), [False]
        elif stem == "invoice_photo":
            files[name], text_layer = make_photo(inv), [False]
        else:
            doc = invoice_doc(inv)
            files[name], text_layer = pdf_bytes(doc, f"Invoice {inv['invoice_number']}"), [True] * len(doc)
        lines, *_, total = totals(inv)
        text = [inv["invoice_number"], inv["vendor"][0], inv["customer"][0], lines[-1][0]]
        text.append(fmt_amount(total, inv))
        records.append(expected(name, "invoice", text_layer, text, invoice_expected(inv)))
    for name, draw, kind, text in OTHERS:
        doc = pymupdf.open()
        draw(doc)
        files[name] = pdf_bytes(doc, name[:-4].replace("_", " ").title())
        records.append(expected(name, kind, [True], text))
    valid = files["invoice_two_page.pdf"]
    # MuPDF repairs the truncated file and reads what is left: a partial document, flagged damaged.
    broken = {"broken_truncated.pdf": (valid[: len(valid) * 6 // 10], "damaged"),
              "broken_empty.pdf": (b"", "empty"),
              "broken_not_a_pdf.pdf": (b"This is a plain text file that only pretends to be a PDF.\n"
                                       b"Invoice No: INV-0000-0000\nTotal: $0.00\n", "not a supported"),
              "broken_encrypted.pdf": (encrypt(files["plain_text.pdf"]), "encrypted")}
    for name, (data, error) in broken.items():
        files[name] = data
        status = "partial" if name == "broken_truncated.pdf" else "failed"
        records.append(expected(name, "broken", None, error=error, status=status))
    make_einvoice_samples.add_samples(sys.modules[__name__], files, records)
    for rec in records:
        text = json.dumps(rec, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        files[rec["file"].rsplit(".", 1)[0] + ".expected.json"] = text.encode()
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (out / name).write_bytes(data)
    import make_schema_samples  # the non-invoice kinds and their schemas: sample_docs/other/

    return [out / name for name in files] + make_schema_samples.build(out / "other")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE, help="output folder (default: this script's folder)")
    for path in build(ap.parse_args().out):
        print(f"{path.stat().st_size:>9,}  {path.name}")


if __name__ == "__main__":
    main()
