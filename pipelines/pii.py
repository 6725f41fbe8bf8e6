"""PII detectors: find e-mail addresses, phone numbers, IBANs, payment card and US social security numbers.

Each detector finds candidates with a loose pattern and keeps only those a validator accepts, so an
invoice's amounts, dates and reference numbers are not taken for PII:

- phone: Google's libphonenumber (``phonenumbers``): ``PhoneNumberMatcher`` with STRICT_GROUPING
  leniency (a valid number for the region, digits grouped as the region groups them), run for each
  configured region (international ``+NN``/``00NN`` numbers whatever the region). A bare run of digits
  with no separator counts only after a phone cue (tel, phone, fax, mobile...): on invoices such runs
  are usually reference numbers.
- iban: ``stdnum.iban`` (country format and length, ISO 7064 mod 97-10 check digits).
- card: 13-19 digits that pass the Luhn check (``stdnum.luhn``) and start with a card network prefix.
- ssn: ``stdnum.us.ssn`` on the dashed ``AAA-GG-SSSS`` form (area, group and serial ranges).
- email: the addr-spec pattern with a dotted domain and an alphabetic top-level label.

Everything is offline and deterministic. Presidio was not used: its analyzer needs a spaCy model that
cannot be downloaded here, and its recognizers for these kinds are the same pattern + checksum idea.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

KINDS = ("email", "phone", "iban", "card", "ssn")
TOKENS = {kind: f"[{kind.upper()}]" for kind in KINDS}
# when two detections overlap, the more specific kind wins
PRIORITY = {"iban": 0, "card": 1, "ssn": 2, "email": 3, "phone": 4}

_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?![\w-])"
)
_IBAN_START = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}(?=[ ]?[A-Z0-9])")
_IBAN_BODY = re.compile(r"(?:[ ]?[A-Z0-9]){1,32}")
_CARD = re.compile(r"(?<![\d.,-])\d(?:[ -]?\d){12,18}(?![\d-]|[.,]\d)")
_SSN = re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])")
_ZIP4 = re.compile(r"\d{5}-\d{4}")
_PHONE_CUE = re.compile(r"(?i)(?:tel|phone|fon|fax|mobil|mobile|cell|handy|t[ée]l[ée]phone|portable|ph)\b\.?\s*[:.]?\s*$")
# card networks: IIN prefix and the lengths its numbers have (a Luhn-valid number of another length,
# such as a 14-digit French SIRET, is not a card)
_CARD_NETWORKS = [
    (re.compile(r"4"), {13, 16, 19}),  # Visa
    (re.compile(r"5[1-5]|2(?:2[2-9]|[3-6]\d|7[01]|720)"), {16}),  # Mastercard
    (re.compile(r"3[47]"), {15}),  # American Express
    (re.compile(r"6011|64[4-9]|65|62|35"), {16, 17, 18, 19}),  # Discover, UnionPay, JCB
    (re.compile(r"3(?:0[0-5]|[689])"), {14, 15, 16, 17, 18, 19}),  # Diners Club
    (re.compile(r"5018|5020|5038|6304|6759|676[1-3]"), set(range(13, 20))),  # Maestro
]
_NOT_CARD_CUE = re.compile(r"(?i)(?:siret|siren|tva|vat|ust|steuer|tax|ein|gtin|ean|isbn)\W{0,6}$")


@dataclass(frozen=True, order=True)
class Span:
    start: int
    end: int
    kind: str


def _emails(text: str) -> Iterable[Span]:
    for m in _EMAIL.finditer(text):
        local = m.group().split("@", 1)[0]
        if len(local) <= 64 and len(m.group()) <= 254:
            yield Span(m.start(), m.end(), "email")


def _ibans(text: str) -> Iterable[Span]:
    from stdnum import iban

    for m in _IBAN_START.finditer(text):
        body = _IBAN_BODY.match(text, m.end())
        if body is None:
            continue
        tail = body.group()
        # the IBAN may be followed by more capitals (BIC, a name): try the longest valid prefix
        cuts = [i + 1 for i, c in enumerate(tail) if c != " "]
        for cut in reversed(cuts):
            candidate = m.group() + tail[:cut]
            compact = candidate.replace(" ", "")
            if len(compact) < 15:
                break
            if iban.is_valid(compact):
                yield Span(m.start(), m.start() + len(candidate), "iban")
                break


def _cards(text: str) -> Iterable[Span]:
    from stdnum import luhn

    for m in _CARD.finditer(text):
        digits = re.sub(r"[ -]", "", m.group())
        network = any(prefix.match(digits) and len(digits) in lengths for prefix, lengths in _CARD_NETWORKS)
        if network and luhn.is_valid(digits) and not _NOT_CARD_CUE.search(text[max(0, m.start() - 16):m.start()]):
            yield Span(m.start(), m.end(), "card")


def _ssns(text: str) -> Iterable[Span]:
    from stdnum.us import ssn

    for m in _SSN.finditer(text):
        if ssn.is_valid(m.group()):
            yield Span(m.start(), m.end(), "ssn")


def _phones(text: str, regions: Sequence[str]) -> Iterable[Span]:
    import phonenumbers

    seen: set[tuple[int, int]] = set()
    for region in regions or ("ZZ",):
        for m in phonenumbers.PhoneNumberMatcher(text, region.upper(), leniency=phonenumbers.Leniency.STRICT_GROUPING):
            key = (m.start, m.end)
            if key in seen:
                continue
            seen.add(key)
            raw = m.raw_string
            before, after = text[max(0, m.start - 1):m.start], text[m.end:m.end + 2]
            if re.fullmatch(r"[\d,.]", before) or re.fullmatch(r"[.,]\d", after) or _ZIP4.fullmatch(raw):
                continue  # part of a larger number (a table cell, an amount) or a US ZIP+4 code
            international = raw.startswith(("+", "00"))
            grouped = re.search(r"\d[\s().\-/]+\d", raw) is not None
            if international or grouped or _PHONE_CUE.search(text[max(0, m.start - 24):m.start]):
                yield Span(m.start, m.end, "phone")


def find(text: str, kinds: Sequence[str], phone_regions: Sequence[str] = ("US",)) -> list[Span]:
    """Non-overlapping PII spans of ``text`` for the given kinds, in text order."""
    if not text or not kinds:
        return []
    spans: list[Span] = []
    if "email" in kinds and "@" in text:
        spans += _emails(text)
    if "iban" in kinds:
        spans += _ibans(text)
    if "card" in kinds:
        spans += _cards(text)
    if "ssn" in kinds:
        spans += _ssns(text)
    if "phone" in kinds and sum(c.isdigit() for c in text) >= 6:
        spans += _phones(text, phone_regions)
    chosen: list[Span] = []
    for span in sorted(spans, key=lambda s: (PRIORITY[s.kind], -(s.end - s.start), s.start)):
        if all(span.end <= c.start or span.start >= c.end for c in chosen):
            chosen.append(span)
    return sorted(chosen)


def replace(text: str, spans: Sequence[Span]) -> str:
    """``text`` with each span replaced by its kind's token, such as ``[EMAIL]``."""
    out, pos = [], 0
    for span in spans:
        out += [text[pos:span.start], TOKENS[span.kind]]
        pos = span.end
    out.append(text[pos:])
    return "".join(out)
