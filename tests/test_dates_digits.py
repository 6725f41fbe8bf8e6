"""All-digit dates are read without dateparser, as dateparser reads them."""

from __future__ import annotations

import random

import dateparser

from docroute.extractors.fields import dates
from docroute.extractors.fields.amounts import DAY_FIRST, MONTH_FIRST, NumberStyle

SETTINGS = {"PREFER_DAY_OF_MONTH": "first", "STRICT_PARSING": True, "REQUIRE_PARTS": ["day", "month", "year"],
            "PREFER_DATES_FROM": "past", "RETURN_AS_TIMEZONE_AWARE": False}


def _cases(n: int) -> list[tuple[str, str]]:
    rng = random.Random(13)
    out = [("29.02.2024", DAY_FIRST), ("02/29/2023", MONTH_FIRST), ("2024-2-3", "YMD"), ("31.04.2024", DAY_FIRST),
           ("1.1.1899", DAY_FIRST), ("12/31/2100", MONTH_FIRST)]
    for _ in range(n):
        y, a, b = rng.randint(1890, 2110), rng.randint(0, 32), rng.randint(0, 13)
        sep, f = rng.choice("./-"), rng.choice((str, lambda v: f"{v:02d}"))
        out.append(rng.choice([(f"{f(a)}{sep}{f(b)}{sep}{y}", DAY_FIRST), (f"{f(b)}{sep}{f(a)}{sep}{y}", MONTH_FIRST),
                               (f"{y}{sep}{f(b)}{sep}{f(a)}", "YMD")]))
    return out


def test_same_date_as_dateparser():
    fast = 0
    for text, order in _cases(250):
        got = dates._all_digits_date(text, order)
        if got is None:
            continue  # not a valid all-digit date: dateparser decides
        fast += 1
        want = dateparser.parse(text, languages=["en", "de", "fr", "nl"], settings={**SETTINGS, "DATE_ORDER": order})
        assert got == want, (text, order)
    assert fast > 150


def test_parse_date_reads_digits_and_names():
    style = NumberStyle(decimal=",", date_order=DAY_FIRST, languages=("de",))
    assert dates.parse_date("15.03.2024", style)[0].isoformat() == "2024-03-15"
    assert dates.parse_date("7. Mai 2014", style)[0].isoformat() == "2014-05-07"
    assert dates.parse_date("31.02.2024", style) is None
