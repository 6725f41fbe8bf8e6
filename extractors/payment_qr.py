"""Payment QR codes on invoice pages: Swiss QR-bill (``SPC``) and EPC / GiroCode (``BCD``) payloads.

:func:`decode` finds QR codes in a page image with zxing-cpp (offline, C++); :func:`parse` reads a
payload into a :class:`PaymentCode`: creditor, IBAN, amount, currency, reference. A payload of another
kind (a URL, a vCard) is not a payment code and is ignored.

Swiss QR-bill: Swiss Implementation Guidelines QR-bill 2.x, one element per line (IBAN line 4, amount
19, currency 20, reference 29). EPC: European Payments Council guideline EPC069-12 (IBAN line 7,
``EUR12.34`` amount line 8, structured reference line 10, text line 11).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from PIL import Image


@dataclass(frozen=True)
class PaymentCode:
    kind: Literal["swiss_qr", "epc"]
    iban: str
    creditor: str | None
    amount: Decimal | None  # None: the payer fills in the amount
    currency: str | None
    reference: str | None
    page_number: int | None = None
    position: tuple[float, float, float, float] | None = None  # bbox in image pixels


def decode(image: Image.Image) -> list[tuple[str, tuple[float, float, float, float]]]:
    """The text and pixel box of every QR code zxing-cpp finds in ``image``."""
    import zxingcpp

    found = []
    for hit in zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode):
        if not hit.valid:
            continue
        p = hit.position
        xs = [p.top_left.x, p.top_right.x, p.bottom_left.x, p.bottom_right.x]
        ys = [p.top_left.y, p.top_right.y, p.bottom_left.y, p.bottom_right.y]
        found.append((hit.text, (min(xs), min(ys), max(xs), max(ys))))
    return found


def _iban(text: str) -> str | None:
    from stdnum import iban

    compact = re.sub(r"\s+", "", text or "").upper()
    return compact if compact and iban.is_valid(compact) else None


def _decimal(text: str) -> Decimal | None:
    try:
        value = Decimal(text.strip())
    except (InvalidOperation, AttributeError):
        return None
    return value if value.is_finite() and value >= 0 else None


def _line(lines: list[str], n: int) -> str:
    """Line ``n`` (1-based) stripped, or ''."""
    return lines[n - 1].strip() if len(lines) >= n else ""


def parse_swiss(lines: list[str]) -> PaymentCode | None:
    if _line(lines, 1) != "SPC" or not _line(lines, 2).startswith("02"):
        return None
    iban = _iban(_line(lines, 4))
    if iban is None:
        return None
    currency = _line(lines, 20) or None
    amount = _decimal(_line(lines, 19)) if _line(lines, 19) else None
    ref_type, ref = _line(lines, 28), _line(lines, 29)
    return PaymentCode(kind="swiss_qr", iban=iban, creditor=_line(lines, 6) or None, amount=amount,
                       currency=currency if currency in ("CHF", "EUR") else None,
                       reference=ref if ref_type in ("QRR", "SCOR") and ref else None)


def parse_epc(lines: list[str]) -> PaymentCode | None:
    if _line(lines, 1) != "BCD" or _line(lines, 4) != "SCT":
        return None
    iban = _iban(_line(lines, 7))
    if iban is None:
        return None
    amount = currency = None
    if m := re.fullmatch(r"([A-Z]{3})(\d+(?:\.\d{1,2})?)", _line(lines, 8)):
        currency, amount = m.group(1), _decimal(m.group(2))
    return PaymentCode(kind="epc", iban=iban, creditor=_line(lines, 6) or None, amount=amount,
                       currency=currency, reference=_line(lines, 10) or _line(lines, 11) or None)


def parse(text: str) -> PaymentCode | None:
    """A Swiss QR-bill or EPC payload as a :class:`PaymentCode`; None for anything else."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return parse_swiss(lines) or parse_epc(lines)
