"""A document's conventions, decided once from all of its words: decimal separator, date order, currency."""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence

from docroute.schemas.values import Word

from .amounts import (
    DAY_FIRST,
    MONTH_FIRST,
    NumberStyle,
    decimal_for,
    digit_groups,
    find_amounts,
    looks_like_date_or_id,
    numeric_core,
)
from .currency import SPACES, currency_code
from .dates import numeric_date_parts

# ISO codes common enough to trust when printed on their own, away from an amount.
_COMMON_CODES = frozenset({"USD", "EUR", "GBP", "INR", "CHF", "JPY", "CNY", "CAD", "AUD", "NZD", "PLN", "SEK",
                           "NOK", "DKK", "CZK", "HUF", "SGD", "HKD", "ZAR", "BRL", "MXN", "AED"})
# A "$" is read as one of these when the code is printed elsewhere in the document.
_DOLLARS = ("USD", "CAD", "AUD", "NZD", "SGD", "HKD", "MXN")


def infer_style(words: Iterable[Word], languages: tuple[str, ...], foreign_labels: int = 0) -> NumberStyle:
    """Decimal separator, date order and currency of a document from all of its words."""
    words = list(words)
    dec_votes: Counter[str] = Counter()
    order_votes: Counter[str] = Counter()
    for w in words:
        t = w.text.strip()
        parts = numeric_date_parts(t)
        if parts:
            a, b, _ = parts
            if len(digit_groups(t)[0]) != 4:
                if a > 12 >= b:
                    order_votes[DAY_FIRST] += 2
                elif b > 12 >= a:
                    order_votes[MONTH_FIRST] += 2
                elif "." in t:
                    order_votes[DAY_FIRST] += 1
            continue
        core = numeric_core(t)
        if core is None or looks_like_date_or_id(t):
            continue
        sep = decimal_for(core.strip(SPACES), "?")
        if sep in (".", ","):
            dec_votes[sep] += 1
    decimal = "," if dec_votes[","] > dec_votes["."] else "."
    currency = infer_currency(words, decimal)
    if not order_votes:
        if currency == "USD" or (currency is None and decimal == "." and not foreign_labels):
            order_votes[MONTH_FIRST] += 1
        elif currency or decimal == "," or foreign_labels:
            order_votes[DAY_FIRST] += 1
    date_order = None
    if order_votes and order_votes[DAY_FIRST] != order_votes[MONTH_FIRST]:
        date_order = max(order_votes, key=order_votes.__getitem__)
    return NumberStyle(decimal=decimal, date_order=date_order, currency=currency, languages=languages)


def currency_votes(words: Sequence[Word], decimal: str = ".") -> Counter[str]:
    """Votes for each currency: symbols and codes printed beside amounts count most."""
    votes: Counter[str] = Counter()
    style = NumberStyle(decimal=decimal)
    for a in find_amounts(words, style):
        if a.currency:
            votes[a.currency] += 3
    for w in words:
        t = w.text.strip(SPACES + ":()[]*,")
        if not t:
            continue
        if len(t) == 3 and t.isalpha() and t.isupper() and t in _COMMON_CODES:
            votes[t] += 1
            continue
        for c in t:  # symbols glued to words ("40€", "Price(₹)")
            if unicodedata.category(c) == "Sc":
                code = currency_code(c)
                if code:
                    votes[code] += 1
                break
    return votes


def infer_currency(words: Sequence[Word], decimal: str = ".") -> str | None:
    votes = currency_votes(words, decimal)
    if not votes:
        return None
    best = max(votes, key=lambda c: (votes[c], c == "EUR"))
    if best == "USD":
        # "$" alone is USD unless the document names another dollar
        others = [c for c in _DOLLARS[1:] if any(w.text.strip(":()") == c for w in words)]
        if others:
            return others[0]
    return best
