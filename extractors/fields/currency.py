"""Currencies printed on invoices: ISO codes and symbols (babel), read in any of the common locales."""

from __future__ import annotations

from functools import cache

from babel.numbers import get_currency_symbol, list_currencies

from .lines import fold

SPACES = " \u00a0\u202f\u2009"
# Locales whose currency symbols are read, in priority order: the first locale that gives a symbol
# to a currency wins ("$" is USD, "¥" is JPY, "£" is GBP).
_SYMBOL_LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "nl_NL", "en_IN", "ja_JP", "zh_CN", "en_CA",
                   "en_AU", "de_CH", "pl_PL", "sv_SE", "da_DK", "nb_NO", "cs_CZ", "hu_HU", "pt_BR", "ru_RU")
# Spellings that no babel locale uses as a symbol but invoices print.
_SYMBOL_ALIASES = {"rs": "INR", "rs.": "INR", "₨": "INR", "inr": "INR", "us$": "USD", "euro": "EUR",
                   "euros": "EUR", "eur": "EUR", "€": "EUR", "sfr": "CHF", "fr.": "CHF"}
# Codes that are also ordinary words or abbreviations on invoices.
_AMBIGUOUS_CODES = frozenset({"ALL", "TOP", "CUP", "MOP", "BOB", "GEL", "PEN", "SOS", "TRY", "CST", "MAD"})


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


def currency_code(token: str) -> str | None:
    """ISO 4217 code for a printed symbol or code ("€" -> EUR, "$" -> USD, "Rs" -> INR, "chf" -> CHF)."""
    t = token.strip(SPACES + ".:()")
    if not t:
        return None
    if len(t) == 3 and t.isalpha() and t.upper() == t and t in _iso_codes():
        return t
    return _symbol_table().get(fold(t)) or _symbol_table().get(fold(t).rstrip("."))


def is_currency_token(token: str) -> bool:
    t = token.strip(SPACES + ":()")
    if t.upper() in _AMBIGUOUS_CODES:
        return False
    return currency_code(t) is not None

