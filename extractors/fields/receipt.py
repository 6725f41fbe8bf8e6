"""Receipt fields: merchant, its address, the date and the total payable, read off a till receipt.

A till receipt is one long column: the merchant (its legal entity: a line with a company form such as
SDN BHD, GmbH or Ltd wins over a bare brand, when printed in the header before the phone, tax-id or
date lines; never a customer block below those), the address lines below it until a phone, tax-id or
date line, then items, then the totals block (receipt_total.py: the total chosen by reconciling the
amounts printed). Dates are read in the common printed forms, day first, with the usual OCR confusions
repaired (O/0, l/1, S/5; "D a t e 0 6 / 1 1 / 2 0 1 7"; a year run into the time) and an implausible
year (2078 for 2018) repaired or refused. Labels live in ``receipt_labels.toml``.

Used for documents classified ``receipt`` (extractors/doctype.py): its fields take the place of the
invoice extractor's vendor, address, date and total where it finds them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date

from rapidfuzz.distance import Levenshtein

from docroute.extractors.doctype import fold
from docroute.schemas import FieldValue, ParsedPage

from .receipt_items import extract_items, item_lines, line_sums, subtotal_tax
from .receipt_lines import Line, amounts, field, find, labels, page_lines
from .receipt_total import amounts_of, extract_total

HEAD_LINES = 12  # the merchant is among the first lines
FOOT_LINES = 8  # ... or, when the header prints only a logo, its legal entity among the last
MIN_NAME_CONFIDENCE = 0.5  # OCR's mean word confidence under which a header line is noise (a logo)
ADDRESS_LINES = 5
SKIP_BEFORE_ADDRESS = 3  # registration or tax-id lines printed between the name and the address
_DIGITISH = str.maketrans({"O": "0", "o": "0", "D": "0", "l": "1", "I": "1", "|": "1", "S": "5", "B": "8", "Z": "2"})
_LETTERISH = str.maketrans({"5": "s", "8": "b", "0": "o", "1": "l"})
_MONTHS = {m: i for i, ms in enumerate((
    ("jan", "januar", "janvier", "janv", "janvaris"), ("feb", "februar", "fev", "fevr", "februaris"),
    ("mar", "marz", "mrz", "mars", "marts"), ("apr", "april", "avr", "aprilis"), ("may", "mai", "maijs"),
    ("jun", "juni", "juin", "junijs"), ("jul", "juli", "juil", "julijs"), ("aug", "august", "aout", "augusts"),
    ("sep", "sept", "september", "septembris"), ("oct", "okt", "oktober", "oktobris"),
    ("nov", "november", "novembris"), ("dec", "dez", "dezember", "decembris")), start=1) for m in ms}
_SEP = r"\s?[/.\-~]\s?"
_NUMERIC_DATE = re.compile(rf"(?<![\dA-Za-z])([0-9OolIS]{{1,4}}){_SEP}([0-9OolIS]{{1,2}}){_SEP}([0-9OolIS]{{4}}(?=\d{{1,2}}:\d\d)|[0-9OolIS]{{2,4}}(?![\d]))")
_NAMED_DATE = re.compile(r"(?<![\d])(\d{1,2})[\s.\-]*([A-Za-z]{3,9})[\s.,\-]*(\d{2,4})(?![\d])")
# a registration number in brackets, e.g. (867388-U), (Co. No. 113825-W), {S19537-X): not part of a name
_REG_NUMBER = re.compile(r"\s*[({]\s*(?:co\.?\s*(?:no|reg)\.?\s*:?\s*)?[^)}]*\d{4,}[^)}]*[)}]?\s*$", re.I)
_BARE_REG = re.compile(r"\s+[A-Z]{0,2}\d{4,}-[A-Z]\s*$")  # a company number without brackets: 519537-X
_LEADING_REG = re.compile(r"^\s*[({][^)}]*\d{4,}[^)}]*[)}]\s*")
_TIME = re.compile(r"\d{1,2}:\d{2}(?::\d{2})?")
_POSTCODE_TOWN = re.compile(r"^(?:[A-Z]{1,2}[- ]?)?\d{4,5}\s?[A-Za-zÀ-ÿ]{3,}")  # 33100 Paderborn, D-80331 München
_STREET_NUMBER = re.compile(r"[A-Za-zÀ-ÿ]{3,}\.?\s+\d{1,4}\s?[a-zA-Z]?$")  # Pohlweg 110, Husener Str. 121
_PHONE = re.compile(r"^\+?[\d()][\d\s()./-]{6,}$")  # +607-357 1177
_WEB = re.compile(r"\S+@\S+\.\w|www\.|\.com\b|https?:", re.I)
_SPACED = re.compile(r"(?<!\S)(?:\S[ \u3000]){3,}\S(?!\S)")  # "0 6 / 1 1 / 2 0 1 7"


def _letters(text: str) -> int:
    return sum(c.isalpha() for c in text)


def _namelike(ln: Line) -> bool:
    """Read as words, not as noise (a logo) or a number: most of its letters in words of three letters or
    more (or a company form), letters in most of it, no amount, no case chaos such as "AlLrdD"."""
    text = _REG_NUMBER.sub("", ln.text)
    words = text.split()
    if not words or ln.confidence < MIN_NAME_CONFIDENCE or amounts(text):
        return False
    forms = set(labels()["vendor"]["company_forms"])
    long = sum(len(w) for w in words if _letters(w) >= 3 or fold(w).strip() in forms)
    chaos = any(sum(a.islower() and b.isupper() for a, b in zip(w, w[1:], strict=False)) >= 2 for w in words)
    compact = text.replace(" ", "")
    return long >= 0.6 * len(compact) and _letters(compact) >= 0.5 * len(compact) and not chaos


def _form(folded: str) -> str | None:
    """The company form a line ends in or holds; short forms (GmbH is long, AG short) only at its end."""
    words = folded.split()
    for form in labels()["vendor"]["company_forms"]:
        n = len(form.split())
        if len(form.replace(" ", "")) > 3 and find(folded, [form]):
            return form
        if words[-n:] == form.split():
            return form
    return None


def _repair_form(text: str) -> str:
    """A company form at the end of a name misread with digits ("5/8" for S/B) spelled as printed."""
    tail = re.search(r"(\S+)\s*$", text)
    if not tail or not any(c.isdigit() for c in tail.group(1)) or _letters(tail.group(1)) > 1:
        return text
    fixed = tail.group(1).lower().translate(_LETTERISH)
    if fold(fixed).strip() in labels()["vendor"]["company_forms"] and len(fold(fixed).strip()) > 2:
        return text[:tail.start(1)] + fixed.upper()
    return text


# "SDN BHD" with its first word misread ("SON BHD", "SC! : BHD", "5DN BHD"): a short token of letters,
# digits or marks right before BHD, within two edits of SDN, is SDN
_GARBLED_SDN = re.compile(r"(?<=\s)([A-Z0-9!|:;.,']{1,4})(\s*[:;.,]?\s*)(?=(BHD)\b)", re.I)


def _repair_sdn(text: str) -> str:
    def fix(m: re.Match) -> str:
        token = re.sub(r"[^A-Z0-9]", "", m.group(1).upper())
        sdn = "SDN " if m.group(3).isupper() else "Sdn "
        return sdn if token and token != "SDN" and Levenshtein.distance(token, "SDN") <= 2 else m.group(0)

    return _GARBLED_SDN.sub(fix, text)


def _clean_name(text: str) -> str:
    return _repair_sdn(_repair_form(_BARE_REG.sub("", _REG_NUMBER.sub("", _LEADING_REG.sub("", text))).strip(" .,:;")))


def _header_end(lines: Sequence[Line]) -> int:
    """The index of the first line past the merchant's header: a phone, tax-id, date or amount line."""
    for i, ln in enumerate(lines[:HEAD_LINES]):
        f = ln.folded
        if i > 0 and not find(f, labels()["vendor"]["titles"], start=True) and _ends_address(ln):
            return i
    return min(len(lines), HEAD_LINES)


def _ends_address(ln: Line) -> bool:
    """A phone, tax-id, registration, date, e-mail or web line: the address is above it."""
    lab, f = labels()["address"], ln.folded
    return bool(find(f, lab["stops"], start=True, fuzzy=False) or find(f, lab["anywhere"], fuzzy=False)
                or _date_from(ln.text) or _PHONE.match(ln.text.strip()) or _WEB.search(ln.text))


def _addresslike(ln: Line) -> bool:
    """A street and house number ("Pohlweg 110", "Jalan Pelabur 23/1") or a postcode and town."""
    text = _REG_NUMBER.sub("", ln.text).strip(" ,.")
    return bool(_POSTCODE_TOWN.search(text) or _STREET_NUMBER.search(text)
                or (any(c.isdigit() for c in text) and find(ln.folded, labels()["address"]["street_words"])))


def _area(ln: Line) -> bool:
    """A line of place words ("KAWASAN PERINDUSTRIAN BALAKONG", "Industrial Estate"): half its words or
    more, at least two, are street or area words, and it names no company form: a place, not a name."""
    words = ln.folded.split()
    hits = sum(bool(find(w, labels()["address"]["street_words"], fuzzy=False)) for w in words)
    return hits >= 2 and 2 * hits >= len(words) and not _form(fold(_clean_name(ln.text)))


def _vendor(lines: Sequence[Line], page: ParsedPage) -> tuple[FieldValue | None, int]:
    """The merchant line and the index the address follows.

    A legal entity printed in the header wins; else the name printed right above the street; else the
    header's first name; else, where the header printed only a logo, a legal entity at the foot."""
    lab = labels()["vendor"]
    end = _header_end(lines)
    scan = min(len(lines), HEAD_LINES + 4)
    names = [i for i in range(scan) if _namelike(lines[i]) and not _addresslike(lines[i]) and not _area(lines[i])
             and not find(lines[i].folded, lab["titles"], start=True)
             and not find(lines[i].folded, lab["not_names"], start=True)
             and lines[i].folded.strip() not in lab["column_heads"]]
    legal = [i for i in names if i < end and _form(fold(_clean_name(lines[i].text)))]
    street = next((k for k in range(scan) if _addresslike(lines[k])), None)
    above = [i for i in names if street is not None and i < street]
    start = -1
    if legal:
        i, conf = legal[0], 0.75
    elif above:
        i, conf = above[-1], 0.6 if len(above) == 1 else 0.5
    elif early := [i for i in names if i < end and (street is None or i < street)]:
        i, conf = early[0], 0.45
    else:
        foot = [k for k in range(max(end, len(lines) - FOOT_LINES), len(lines))
                if _namelike(lines[k]) and _form(fold(_clean_name(lines[k].text)))]
        if not foot:
            return None, -1
        i, conf, start = foot[0], 0.45, (street - 1 if street is not None else -1)  # a logo, then the address
    used = [lines[i]]
    if i in legal and i - 1 in names and not _letters(_without_forms(fold(_clean_name(lines[i].text)))):
        used.insert(0, lines[i - 1])  # "POPULAR BOOK" above "CO. (M) SDN BHD": one name on two lines
    name = _clean_name(" ".join(ln.text for ln in used))
    return field("vendor_name", name, conf, page, used), (i if start == -1 and i < scan else start)


def _without_forms(folded: str) -> str:
    for form in sorted(labels()["vendor"]["company_forms"], key=len, reverse=True):
        folded = folded.replace(f" {form} ", " ")
    return re.sub(r"\b[a-z]\b", " ", folded)  # (M), single letters


def _address(lines: Sequence[Line], start: int, page: ParsedPage) -> FieldValue | None:
    lab = labels()["address"]
    block: list[Line] = []
    skipped, closed = 0, False
    for k, ln in enumerate(lines[start + 1:], start + 1):
        f = ln.folded
        text = _REG_NUMBER.sub("", _LEADING_REG.sub("", ln.text)).strip()
        compact = text.replace(" ", "")
        ends = _ends_address(ln)
        noise = not compact or (re.fullmatch(r"[\dA-Z][\dA-Z\-]{3,}\.?", compact) and _letters(compact) <= 2) \
            or find(f, lab["prelude"], start=True) or find(f, labels()["vendor"]["titles"], start=True)
        if block and ends and (any(_addresslike(b) for b in block)
                               or not any(_addresslike(b) for b in lines[k + 1:k + SKIP_BEFORE_ADDRESS])):
            closed = True
            break  # a branch name before the tax-id line is not the address when the street follows
        if ends or noise:
            skipped += 1 + len(block)
            block = []
            if skipped > SKIP_BEFORE_ADDRESS:
                break
            continue
        block.append(ln)
        if (country := find(f, lab["countries"])) and f.rstrip().endswith(country):
            closed = True
            break  # the country closes an address
        if len(block) == ADDRESS_LINES:
            break
    if not block:
        return None
    text = " ".join(_REG_NUMBER.sub("", _LEADING_REG.sub("", ln.text)) for ln in block)
    sure = closed and any(_addresslike(b) for b in block)  # a street or postcode, and a clear end
    return field("vendor_address", text.strip(), (0.55 if sure else 0.35) - (0.05 if skipped > 1 else 0.0),
                 page, block)


def _digits(text: str) -> str:
    return text.translate(_DIGITISH)


def _plausible_year(year: int) -> tuple[int, bool] | None:
    """The year, or a repair of one OCR confusion (2078 -> 2018), and whether it was repaired."""
    this = date.today().year
    if 2000 <= year <= this + 1:
        return year, False
    text = str(year)
    for wrong, right in (("7", "1"), ("8", "0"), ("9", "0"), ("3", "1"), ("6", "0")):
        for k in range(len(text)):
            if text[k] == wrong:
                fixed = int(text[:k] + right + text[k + 1:])
                if 2000 <= fixed <= this + 1:
                    return fixed, True
    return None


def _date_from(text: str) -> tuple[date, bool] | None:
    text = _SPACED.sub(lambda m: m.group(0).replace(" ", "").replace("\u3000", ""), text)
    for m in _NUMERIC_DATE.finditer(text):
        a, b, c = (_digits(g) for g in m.groups())
        if not (a + b + c).isdigit() or 3 in (len(a), len(c)) or len(a) == len(c) == 4:
            continue
        if len(a) == 4:
            y, mo, d = int(a), int(b), int(c)
        else:
            d, mo, y = int(a), int(b), int(c)
            if mo > 12 >= d:
                d, mo = mo, d  # month first, as printed in the US
        y = y + 2000 if y < 100 else y
        fixed = _plausible_year(y)
        if fixed and 1 <= mo <= 12 and 1 <= d <= 31:
            try:
                return date(fixed[0], mo, d), fixed[1]
            except ValueError:
                continue
    for m in _NAMED_DATE.finditer(text):
        month = _MONTHS.get(fold(m.group(2)).strip()[:5]) or _MONTHS.get(fold(m.group(2)).strip()[:3])
        if month is None:
            continue
        y = int(m.group(3))
        fixed = _plausible_year(y + 2000 if y < 100 else y)
        if fixed:
            try:
                return date(fixed[0], month, int(m.group(1))), fixed[1]
            except ValueError:
                continue
    return None


def _date(lines: Sequence[Line], page: ParsedPage) -> FieldValue | None:
    found = [(i, hit) for i, ln in enumerate(lines) if (hit := _date_from(ln.text))]
    if not found:
        return None
    lab = labels()["date"]["labels"]

    def cue(i: int) -> int:
        return 2 * bool(find(lines[i].folded, lab)) + bool(_TIME.search(lines[i].text))  # a till prints the time

    i, (value, repaired) = min(found, key=lambda item: (-cue(item[0]) + item[1][1], item[0]))
    others = {v for _, (v, _) in found if v != value}
    conf = (0.85 if cue(i) else 0.6) - (0.3 if repaired else 0.0) - (0.15 if others else 0.0)
    return field("invoice_date", value, conf, page, [lines[i]])


def extract_receipt(pages: Sequence[ParsedPage]) -> dict[str, FieldValue]:
    """The merchant, its address, the date and the total payable of a receipt (its first page); the
    subtotal, tax and item lines where they reconcile with that total (receipt_items.py)."""
    if not pages or not pages[0].words:
        return {}
    page = pages[0]
    lines = page_lines(page)
    found: dict[str, FieldValue] = {}
    vendor, at = _vendor(lines, page)
    if vendor:
        found["vendor_name"] = vendor
        if address := _address(lines, at, page):
            found["vendor_address"] = address
    if date_fv := _date(lines, page):
        found["invoice_date"] = date_fv
    printed = amounts_of(lines)
    items = item_lines(lines, printed)
    if total := extract_total(lines, page, printed, line_sums(items)):
        found["total"] = total
        found |= subtotal_tax(printed, total, lines, page)
        if rows := extract_items(items, lines, printed, page, total, found):
            found["line_items"] = rows
    return found
