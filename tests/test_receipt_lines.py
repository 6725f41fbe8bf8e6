"""Label matching on receipts' OCR lines (extractors/fields/receipt_lines.find): the lexicon's phrases
against what OCR prints, slips and run-together words included."""

from __future__ import annotations

from docroute.extractors.fields.receipt_lines import find, fold


def test_a_phrase_matches_its_words_run_together_as_ocr_prints_a_narrow_gap():
    phrases = ["grand total", "tax invoice"]
    assert find(fold("GRANDTOTAL RM 12.30"), phrases) == "grand total"
    assert find(fold("Johor TAXINVOICE"), phrases) == "tax invoice"
    assert find(fold("TAXINV0ICE"), phrases) == "tax invoice"  # and one OCR slip in it
    assert find(fold("GRAND TOTAL"), phrases) == "grand total"
    assert find(fold("TOTALGRAND"), phrases) is None  # the words in their order only
    assert find(fold("GRANDTOTAL"), phrases, fuzzy=False) == "grand total"
    assert find(fold("x GRANDTOTAL"), phrases, start=True) is None


def _page(*lines: str):
    """A receipt printed line by line (general phrasing, no document's text); ``_`` puts the amount at the
    right edge."""
    from docroute.schemas import BBox, ParsedPage, Word

    words, y = [], 10.0
    for n, line in enumerate(lines):
        x = 10.0
        for token in line.split():
            if token == "_":
                x = 150.0
                continue
            words.append(Word(text=token, bbox=BBox(x0=x, y0=y, x1=x + 6 * len(token), y1=y + 9), confidence=0.95,
                              block=0, line=n, size=9.0, source="ocr"))
            x += 6 * len(token) + 5
        y += 14
    return ParsedPage(page_number=0, width=220, height=y + 10, has_text_layer=False, parser="ocr",
                      text="\n".join(lines), words=tuple(words))


def test_the_price_column_head_is_no_merchant_and_a_card_payment_is_what_was_paid():
    from decimal import Decimal

    from docroute.extractors.fields.receipt import extract_receipt

    # a logo header (no name printed), the price column headed "EUR", paid by credit card, no change
    fields = extract_receipt([_page("EUR", "Butter _ 1,99", "Kaffee _ 3,29", "Brot _ 0,99", "Summe",
                                    "Kreditkarte _ 6,27", "Beispiel Handels GmbH", "01.02.2020 10:15")])
    assert fields["vendor_name"].value == "Beispiel Handels GmbH"  # the legal entity at the foot
    assert fields["total"].value == Decimal("6.27")
