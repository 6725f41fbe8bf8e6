"""Dates from printed text (dateparser), read with a document's ``NumberStyle`` (day or month first)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache

import dateparser
from babel.core import Locale
from babel.dates import get_month_names

from docroute.schemas.values import Word

from .amounts import DATE_SEPARATORS, DAY_FIRST, MONTH_FIRST, NumberStyle, digit_groups
from .lines import fold


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
    if core and core[0].isdigit() and all(c.isdigit() or c in DATE_SEPARATORS for c in core):
        groups = digit_groups(core)
        if len(groups) in (1, 3) and len(core) <= 10:
            return "number"
        # "15-Mar-2024" and friends
    if any(c.isdigit() for c in core) and any(p.strip(".") in months for p in core.replace("/", "-").split("-")):
        return "number"
    return None


def numeric_date_parts(text: str) -> tuple[int, int, int] | None:
    groups = digit_groups(text)
    if len(groups) != 3 or any(c.isalpha() for c in text):
        return None
    if sum(1 for c in text if c in DATE_SEPARATORS) != 2:
        return None
    return int(groups[0]), int(groups[1]), int(groups[2])


def _order_for(text: str, style: NumberStyle) -> tuple[str | None, float]:
    """The DATE_ORDER to parse ``text`` with and how sure that order is (1.0 = certain)."""
    parts = numeric_date_parts(text)
    if parts is None:
        return None, 1.0
    a, b, c = parts
    if len(digit_groups(text)[0]) == 4:
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


# "15.03.2024", "3/15/2024", "2024-03-15": day, month and a four-digit year in digits, one separator.
_DMY_DIGITS = re.compile(r"([0-9]{1,2})([./-])([0-9]{1,2})\2([0-9]{4})")
_YMD_DIGITS = re.compile(r"([0-9]{4})([./-])([0-9]{1,2})\2([0-9]{1,2})")


def _all_digits_date(text: str, order: str | None) -> datetime | None:
    """The date an all-digits ``text`` names in ``order``, as dateparser reads it, without dateparser
    (about 5 ms a call); None where it is not such a date (dateparser then decides)."""
    if order in (DAY_FIRST, MONTH_FIRST) and (m := _DMY_DIGITS.fullmatch(text)):
        a, b, year = int(m.group(1)), int(m.group(3)), int(m.group(4))
        day, month = (a, b) if order == DAY_FIRST else (b, a)
    elif order == "YMD" and (m := _YMD_DIGITS.fullmatch(text)):
        year, month, day = int(m.group(1)), int(m.group(3)), int(m.group(4))
    else:
        return None
    try:
        return datetime(year, month, day)
    except ValueError:
        return None


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
        parsed = _all_digits_date(text, order)
        if parsed is None:
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

