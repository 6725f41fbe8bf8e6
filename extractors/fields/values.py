"""Typed values from printed text: money (price-parser, babel), dates (dateparser), currencies (babel).

Number and date *conventions* are decided once per document (``NumberStyle``) from all of its
numbers, then applied to each value: "1.234" is one thousand in a document whose amounts look like
"56,02" and one-point-two in one whose amounts look like "4.11".
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import cache

import dateparser
from babel.core import Locale
from babel.dates import get_month_names
from babel.numbers import NumberFormatError, get_currency_symbol, list_currencies, parse_decimal
from price_parser import Price

from docroute.schemas.values import Word

from .lines import fold

DAY_FIRST, MONTH_FIRST = "DMY", "MDY"
_SEPARATORS = ".,'\u2019"
_SPACES = " \u00a0\u202f\u2009"
_MINUS = "-\u2212\u2013"
_DATE_SEPARATORS = "/.-"
# Locales whose currency symbols are read, in priority order: the first locale that gives a symbol
# to a currency wins ("$" is USD, "¥" is JPY, "£" is GBP).
_SYMBOL_LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "nl_NL", "en_IN", "ja_JP", "zh_CN", "en_CA",
                   "en_AU", "de_CH", "pl_PL", "sv_SE", "da_DK", "nb_NO", "cs_CZ", "hu_HU", "pt_BR", "ru_RU")
# Spellings that no babel locale uses as a symbol but invoices print.
_SYMBOL_ALIASES = {"rs": "INR", "rs.": "INR", "₨": "INR", "inr": "INR", "us$": "USD", "euro": "EUR",
                   "euros": "EUR", "eur": "EUR", "€": "EUR", "sfr": "CHF", "fr.": "CHF"}
# ISO codes common enough to trust when printed on their own, away from an amount.
_COMMON_CODES = frozenset({"USD", "EUR", "GBP", "INR", "CHF", "JPY", "CNY", "CAD", "AUD", "NZD", "PLN", "SEK",
                           "NOK", "DKK", "CZK", "HUF", "SGD", "HKD", "ZAR", "BRL", "MXN", "AED"})
# Codes that are also ordinary words or abbreviations on invoices.
_AMBIGUOUS_CODES = frozenset({"ALL", "TOP", "CUP", "MOP", "BOB", "GEL", "PEN", "SOS", "TRY", "CST", "MAD"})
# A "$" is read as one of these when the code is printed elsewhere in the document.
_DOLLARS = ("USD", "CAD", "AUD", "NZD", "SGD", "HKD", "MXN")


@cache
def _symbol_table() -> dict[str, str]:
    table: dict[str, str] = {}
    codes = list_currencies()
    for loc in _SYMBOL_LOCALES:
        for code in sorted(codes):
            sym = get_currency_symbol(code, locale=loc)
            if sym and sym != code:
                table.setdefault(fold(sym), code)
    table.update(_SYMBOL_ALIASES)
    return table


@cache
def _iso_codes() -> frozenset[str]:
    return frozenset(list_currencies())


@cache
def _month_tokens(languages: tuple[str, ...]) -> frozenset[str]:
    out: set[str] = set()
    for lang in languages:
        try:
            Locale.parse(lang)
        except Exception:  # an unknown language code contributes nothing
            continue
        for width in ("wide", "abbreviated"):
            for ctx in ("format", "stand-alone"):
                out.update(fold(m).strip(".") for m in get_month_names(width, ctx, locale=lang).values())
    out.update({"sept", "sep"})
    return frozenset(out)


def currency_code(token: str) -> str | None:
    """ISO 4217 code for a printed symbol or code ("€" -> EUR, "$" -> USD, "Rs" -> INR, "chf" -> CHF)."""
    t = token.strip(_SPACES + ".:()")
    if not t:
        return None
    if len(t) == 3 and t.isalpha() and t.upper() == t and t in _iso_codes():
        return t
    return _symbol_table().get(fold(t)) or _symbol_table().get(fold(t).rstrip("."))


def is_currency_token(token: str) -> bool:
    t = token.strip(_SPACES + ":()")
    if t.upper() in _AMBIGUOUS_CODES:
        return False
    return currency_code(t) is not None


# --------------------------------------------------------------------------- numbers
def _digit_groups(text: str) -> list[str]:
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


def numeric_core(text: str) -> str | None:
    """The number inside an amount token with its currency and sign stripped, or None if not numeric."""
    t = text.strip(_SPACES)
    for c in "()":
        t = t.replace(c, "")
    keep = []
    for i, c in enumerate(t):
        if c in "'\u2019":  # a thousands apostrophe sits between digits (1'234.50); else it is an inch mark
            keep.append(0 < i < len(t) - 1 and t[i - 1].isdigit() and t[i + 1].isdigit())
        else:
            keep.append(c.isdigit() or c in _SEPARATORS or c in _SPACES or c in _MINUS or c == "+")
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


def _decimal_for(core: str, default: str) -> str | None:
    """The decimal separator of one number, or None when it has none ("1,234" in a "." document)."""
    seps = [c for c in core if c in ".,"]
    if not seps:
        return None
    last = seps[-1]
    if len(set(seps)) == 2:
        return last
    tail = core[core.rfind(last) + 1:]
    digits_after = len(_digit_groups(tail)[0]) if _digit_groups(tail) else 0
    if seps.count(last) > 1:
        return None  # "1.234.567": thousands only
    if digits_after == 3:
        return default if default == last else None
    return last if digits_after else None


def parse_amount(text: str, style: NumberStyle) -> tuple[Decimal, str | None] | None:
    """Amount and currency code of one printed amount ("1.234,50 €", "$ 112.90", "(12.00)", "€ 12,-")."""
    core = numeric_core(text)
    if core is None:
        return None
    stripped = core.strip(_SPACES)
    negative = (stripped[:1] in _MINUS) or (text.strip().startswith("(") and text.strip().endswith(")"))
    dash_cents = stripped.endswith(tuple(_MINUS)) and stripped[:1] not in _MINUS  # "12,-"
    groups = _digit_groups(stripped)
    if len(groups) > 1 and all(c.isdigit() or c in _SPACES for c in stripped.strip(_MINUS + "+")):
        if any(len(g) != 3 for g in groups[1:]):
            return None  # "12 5": two numbers, not one
    sep = _decimal_for(stripped, style.decimal)
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
        if parsed is None or _looks_like_date_or_id(text):
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
    core = core.strip(_SPACES + _MINUS)
    sep = _decimal_for(core, style.decimal)
    return sep is not None and len(core) - core.rfind(sep) - 1 == 2


def _is_thousands_tail(prev: Word, nxt: Word) -> bool:
    gap = nxt.bbox.x0 - prev.bbox.x1
    groups = _digit_groups(nxt.text)
    prev_groups = _digit_groups(prev.text)
    return (
        gap < 0.5 * max(prev.bbox.height, 1.0)
        and prev.text.strip().isdigit() and len(prev_groups[0]) <= 3
        and bool(groups) and len(groups[0]) == 3 and nxt.text[:1].isdigit()
        and numeric_core(nxt.text) is not None
    )


def _looks_like_date_or_id(text: str) -> bool:
    """"15.03.2024", "03/20/2023", "INV-2024" and "3/64" are not amounts."""
    t = text.strip()
    if any(c.isalpha() for c in t) and numeric_core(t) is None:
        return True
    groups = _digit_groups(t)
    seps = {c for c in t if c in _DATE_SEPARATORS}
    if "/" in seps:
        return True
    if len(groups) >= 3 and len(seps) == 1 and t.count(next(iter(seps))) >= 2 and "," not in t:
        return any(len(g) != 3 for g in groups[1:])
    if "-" in seps and len(groups) >= 2 and not t.startswith("-") and not t.endswith("-"):
        return True
    return False


# --------------------------------------------------------------------------- dates
def _date_token_kind(token: str, months: frozenset[str]) -> str | None:
    t = fold(token)
    if t in {",", "."}:
        return "sep"
    t = t.strip(",")
    if not t:
        return None
    if t.strip(".") in months:
        return "month"
    core = t.rstrip(".")
    for suffix in ("st", "nd", "rd", "th", "er", "e"):
        if core.endswith(suffix) and core[: -len(suffix)].isdigit():
            core = core[: -len(suffix)]
            break
    if core and core[0].isdigit() and all(c.isdigit() or c in _DATE_SEPARATORS for c in core):
        groups = _digit_groups(core)
        if len(groups) in (1, 3) and len(core) <= 10:
            return "number"
        # "15-Mar-2024" and friends
    if any(c.isdigit() for c in core) and any(p.strip(".") in months for p in core.replace("/", "-").split("-")):
        return "number"
    return None


def numeric_date_parts(text: str) -> tuple[int, int, int] | None:
    groups = _digit_groups(text)
    if len(groups) != 3 or any(c.isalpha() for c in text):
        return None
    if sum(1 for c in text if c in _DATE_SEPARATORS) != 2:
        return None
    return int(groups[0]), int(groups[1]), int(groups[2])


def _order_for(text: str, style: NumberStyle) -> tuple[str | None, float]:
    """The DATE_ORDER to parse ``text`` with and how sure that order is (1.0 = certain)."""
    parts = numeric_date_parts(text)
    if parts is None:
        return None, 1.0
    a, b, c = parts
    if len(_digit_groups(text)[0]) == 4:
        return "YMD", 1.0
    if a > 12 and b <= 12:
        return DAY_FIRST, 1.0
    if b > 12 and a <= 12:
        return MONTH_FIRST, 1.0
    if a == b:
        return DAY_FIRST, 1.0
    if style.date_order:
        return style.date_order, 0.9
    return DAY_FIRST if "." in text else MONTH_FIRST, 0.6


def parse_date(text: str, style: NumberStyle) -> tuple[date, float] | None:
    """A date and how sure its day/month order is, or None. Uses dateparser in strict mode."""
    order, sure = _order_for(text, style)
    key = (text, order)
    if key not in style._dates:
        settings = {"PREFER_DAY_OF_MONTH": "first", "STRICT_PARSING": True,
                    "REQUIRE_PARTS": ["day", "month", "year"], "PREFER_DATES_FROM": "past",
                    "RETURN_AS_TIMEZONE_AWARE": False}
        if order:
            settings["DATE_ORDER"] = order
        try:
            parsed = dateparser.parse(text, languages=list(style.languages), settings=settings)
        except Exception:  # dateparser raises assorted errors on odd input
            parsed = None
        style._dates[key] = parsed.date() if parsed and 1900 <= parsed.year <= 2100 else None
    found = style._dates[key]
    return (found, sure) if found else None


@dataclass(frozen=True)
class DateHit:
    value: date
    words: tuple[Word, ...]
    clean: float


def find_dates(words: Sequence[Word], style: NumberStyle) -> list[DateHit]:
    """Dates printed in a run of words ("03/20/2023", "7. Mai 2014", "August 3 , 2014"), left to right."""
    months = _month_tokens(style.languages)
    kinds = [_date_token_kind(w.text, months) for w in words]
    out: list[DateHit] = []
    i = 0
    while i < len(words):
        if kinds[i] is None or kinds[i] == "sep":
            i += 1
            continue
        j = i
        while j < len(words) and kinds[j] is not None and j - i < 6:
            j += 1
        hit = _best_date(words, kinds, i, j, style)
        if hit is None:
            i += 1
            continue
        out.append(hit)
        i = words.index(hit.words[-1], i) + 1
    return out


def _best_date(words, kinds, i, j, style) -> DateHit | None:
    """The longest window starting at ``i`` inside ``[i, j)`` that parses as a date."""
    for end in range(j, i, -1):
        window = kinds[i:end]
        if "number" not in window or window[-1] == "sep":
            continue
        if "month" not in window and (len(window) > 1 or (
                numeric_date_parts(words[i].text) is None and not any(c.isalpha() for c in words[i].text))):
            continue  # numbers without a month name are a date only as one token ("03/20/2023")
        text = " ".join(w.text for w in words[i:end])
        parsed = parse_date(text, style)
        if parsed:
            value, sure = parsed
            return DateHit(value, tuple(words[i:end]), sure)
    return None


# --------------------------------------------------------------------------- document conventions
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
            if len(_digit_groups(t)[0]) != 4:
                if a > 12 >= b:
                    order_votes[DAY_FIRST] += 2
                elif b > 12 >= a:
                    order_votes[MONTH_FIRST] += 2
                elif "." in t:
                    order_votes[DAY_FIRST] += 1
            continue
        core = numeric_core(t)
        if core is None or _looks_like_date_or_id(t):
            continue
        sep = _decimal_for(core.strip(_SPACES), "?")
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
        t = w.text.strip(_SPACES + ":()[]*,")
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
