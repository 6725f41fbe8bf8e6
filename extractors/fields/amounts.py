"""Amounts from printed text (price-parser, babel), read with a document's ``NumberStyle``.

Number conventions are decided once per document (see ``conventions``), then applied to each value:
"1.234" is one thousand in a document whose amounts look like "56,02" and one-point-two in one whose
amounts look like "4.11".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from babel.numbers import NumberFormatError, parse_decimal
from price_parser import Price

from docroute.schemas.values import Word

from .currency import SPACES, currency_code, is_currency_token

DAY_FIRST, MONTH_FIRST = "DMY", "MDY"
_SEPARATORS = ".,'\u2019"
_MINUS = "-\u2212\u2013"
DATE_SEPARATORS = "/.-"


def digit_groups(text: str) -> list[str]:
    """"03/15/2024" -> ["03", "15", "2024"]; separators are anything that is not a digit."""
    groups, cur = [], ""
    for c in text:
        if c.isdigit():
            cur += c
        elif cur:
            groups.append(cur)
            cur = ""
    if cur:
        groups.append(cur)
    return groups


# Removes the characters numeric_core keeps whatever their neighbours are, except the digits.
_NUMERIC_MARKS = str.maketrans("", "", ".," + SPACES + _MINUS + "+")


def numeric_core(text: str) -> str | None:
    """The number inside an amount token with its currency and sign stripped, or None if not numeric."""
    t = text.strip(SPACES)
    for c in "()":
        t = t.replace(c, "")
    if t.isalpha():  # letters only: no digit (the common word), so not numeric
        return None
    marks_removed = t.translate(_NUMERIC_MARKS)
    if marks_removed.isdigit():  # digits, separators, spaces and signs only: all of it is the number
        return t
    if not any(map(str.isdigit, marks_removed)):  # no digit anywhere ("Total:", "--"): not numeric
        return None
    keep = []
    for i, c in enumerate(t):
        if c in "'\u2019":  # a thousands apostrophe sits between digits (1'234.50); else it is an inch mark
            keep.append(0 < i < len(t) - 1 and t[i - 1].isdigit() and t[i + 1].isdigit())
        else:
            keep.append(c.isdigit() or c in _SEPARATORS or c in SPACES or c in _MINUS or c == "+")
    core = "".join(c for c, k in zip(t, keep, strict=True) if k)
    rest = "".join(c for c, k in zip(t, keep, strict=True) if not k)
    if not any(c.isdigit() for c in core):
        return None
    if rest and not is_currency_token(rest):
        return None
    return core


@dataclass(frozen=True)
class NumberStyle:
    """A document's conventions: decimal separator, date order, currency, language hint."""

    decimal: str = "."
    date_order: str | None = None  # DAY_FIRST, MONTH_FIRST or None when nothing tells
    currency: str | None = None
    languages: tuple[str, ...] = ("en", "de", "fr", "nl")
    _dates: dict = field(default_factory=dict, compare=False, repr=False)  # per-document parse cache
    _amounts: dict = field(default_factory=dict, compare=False, repr=False)  # parse_amount's, per document


def decimal_for(core: str, default: str) -> str | None:
    """The decimal separator of one number, or None when it has none ("1,234" in a "." document)."""
    seps = [c for c in core if c in ".,"]
    if not seps:
        return None
    last = seps[-1]
    if len(set(seps)) == 2:
        return last
    tail = core[core.rfind(last) + 1:]
    digits_after = len(digit_groups(tail)[0]) if digit_groups(tail) else 0
    if seps.count(last) > 1:
        return None  # "1.234.567": thousands only
    if digits_after == 3:
        return default if default == last else None
    return last if digits_after else None


def parse_amount(text: str, style: NumberStyle) -> tuple[Decimal, str | None] | None:
    """Amount and currency code of one printed amount ("1.234,50 €", "$ 112.90", "(12.00)", "€ 12,-")."""
    key = (text, style.decimal)  # a document reads the same tokens again and again (rows, tables, totals)
    if key not in style._amounts:
        style._amounts[key] = _parse_amount(text, style)
    return style._amounts[key]


def _parse_amount(text: str, style: NumberStyle) -> tuple[Decimal, str | None] | None:
    core = numeric_core(text)
    if core is None:
        return None
    stripped = core.strip(SPACES)
    negative = (stripped[:1] in _MINUS) or (text.strip().startswith("(") and text.strip().endswith(")"))
    dash_cents = stripped.endswith(tuple(_MINUS)) and stripped[:1] not in _MINUS  # "12,-"
    groups = digit_groups(stripped)
    if len(groups) > 1 and all(c.isdigit() or c in SPACES for c in stripped.strip(_MINUS + "+")):
        if any(len(g) != 3 for g in groups[1:]):
            return None  # "12 5": two numbers, not one
    sep = decimal_for(stripped, style.decimal)
    # no decimal part: name the separator that is absent, so the one present reads as thousands
    price = Price.fromstring(text, decimal_separator=sep or ("," if "." in stripped else "."))
    amount = price.amount
    if amount is None:
        try:
            amount = parse_decimal(stripped.strip(_MINUS + "+"), locale="de" if sep == "," else "en")
        except (NumberFormatError, InvalidOperation):
            return None
    if dash_cents:
        amount = amount.quantize(Decimal("0.01"))
    if negative:
        amount = -amount
    code = currency_code(price.currency) if price.currency else None
    return amount, code


def is_percent(words: Sequence[Word], i: int) -> bool:
    t = words[i].text
    return t.rstrip(")").endswith("%") or (i + 1 < len(words) and words[i + 1].text.startswith("%"))


@dataclass(frozen=True)
class Amount:
    value: Decimal
    currency: str | None
    words: tuple[Word, ...]
    clean: float  # 1.0 for a plain amount with cents; less for bare integers and odd shapes


def find_amounts(words: Sequence[Word], style: NumberStyle) -> list[Amount]:
    """Amounts printed in a run of words, left to right, with a currency symbol or code beside them."""
    out: list[Amount] = []
    i = 0
    while i < len(words):
        w = words[i]
        if is_percent(words, i) or numeric_core(w.text) is None:
            i += 1
            continue
        start, end = i, i + 1
        # thousands written with spaces: "1 234,50"
        while end < len(words) and _is_thousands_tail(words[end - 1], words[end]):
            end += 1
        if end < len(words) and words[end].text in tuple(_MINUS):  # "12, -"
            end += 1
        cur_before = start > 0 and is_currency_token(words[start - 1].text)
        cur_after = end < len(words) and is_currency_token(words[end].text) and not is_percent(words, end)
        text = " ".join(x.text for x in words[start:end])
        parsed = parse_amount(text, style)
        if parsed is None or looks_like_date_or_id(text):
            i = end
            continue
        amount, code = parsed
        span = list(words[start:end])
        if code is None and cur_before:
            code = currency_code(words[start - 1].text)
            span.insert(0, words[start - 1])
        elif code is None and cur_after:
            code = currency_code(words[end].text)
            span.append(words[end])
            end += 1
        clean = 1.0 if _has_cents(numeric_core(text) or "", style) or code else 0.8
        out.append(Amount(amount, code, tuple(span), clean))
        i = end
    return out


def _has_cents(core: str, style: NumberStyle) -> bool:
    core = core.strip(SPACES + _MINUS)
    sep = decimal_for(core, style.decimal)
    return sep is not None and len(core) - core.rfind(sep) - 1 == 2


def _is_thousands_tail(prev: Word, nxt: Word) -> bool:
    gap = nxt.bbox.x0 - prev.bbox.x1
    groups = digit_groups(nxt.text)
    prev_groups = digit_groups(prev.text)
    return (
        gap < 0.5 * max(prev.bbox.height, 1.0)
        and prev.text.strip().isdigit() and len(prev_groups[0]) <= 3
        and bool(groups) and len(groups[0]) == 3 and nxt.text[:1].isdigit()
        and numeric_core(nxt.text) is not None
    )


def looks_like_date_or_id(text: str) -> bool:
    """"15.03.2024", "03/20/2023", "INV-2024" and "3/64" are not amounts."""
    t = text.strip()
    if any(c.isalpha() for c in t) and numeric_core(t) is None:
        return True
    groups = digit_groups(t)
    seps = {c for c in t if c in DATE_SEPARATORS}
    if "/" in seps:
        return True
    if len(groups) >= 3 and len(seps) == 1 and t.count(next(iter(seps))) >= 2 and "," not in t:
        return any(len(g) != 3 for g in groups[1:])
    if "-" in seps and len(groups) >= 2 and not t.startswith("-") and not t.endswith("-"):
        return True
    return False

