"""A till receipt's subtotal, tax and item lines, kept only when they reconcile with its total payable.

- Subtotal and tax (roles ``subtotal`` and ``tax`` of receipt_total): a printed subtotal and tax that
  add up to the total (give or take the printed rounding); or the tax summary below the totals (per
  rate the net and the tax, and maybe their sum): its sum row, or all its rows, adding up to the total
  (German receipts print "Netto / MwSt / Brutto" so); or a tax printed as *included* in the total
  ("davon MwSt", "GST included"): then the subtotal is the total less that tax (derived), so that
  subtotal + tax = total holds as the schema says.
- Item lines: the lines between the header and the totals block that print an amount with no role
  (description at the left, amount at the right; ``2 x 4.50`` or ``2 @ 4.50`` before it gives the
  quantity and unit price; a line that prints only a quantity and a price is the detail of the item
  above or below; a line with no words takes its description from the text line above it, or below it
  where the receipt prints them so). They are kept only when their amounts add up to the subtotal, or,
  where each line prints a unit price before tax beside the one after it, their amounts before tax do
  (or, when no subtotal is printed, to the total less the rounding); a wrong list is worse than none.
  Item amounts that include the tax (a tax-inclusive receipt) do not add up to the subtotal: no items.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from docroute.schemas import FieldValue, ParsedPage

from .receipt_lines import _AMOUNT, Line, _repair, amounts, field, find, labels
from .receipt_total import CENT, Amount

SLACK = Decimal("0.01")  # printed amounts add up to the cent
MAX_TAX_SHARE = Decimal("0.3")  # a tax is under this share of the total
SKIP_LEADING = 2  # stray amounts printed above the items (a header line) that the sum may leave out
_QTY = re.compile(r"(?:^|\s)(\d{1,3})\s*(?:[a-z]{1,4}\.?\s*)?[x@*]\s*$", re.I)  # "2 x", "2 stk x", "3 @"
_BARE_QTY = re.compile(r"(?:^|\s)(\d{1,3})\s*$")  # "SR 2 6.10 12.20": a count right before the unit price
_LETTERS = re.compile(r"[^\W\d_]{3,}")  # a word: a description, not a tax code ("SR", "A") or a count


@dataclass(frozen=True)
class Item:
    lines: tuple[int, ...]  # indexes of the printed lines it was read from
    description: str | None
    quantity: Decimal | None
    unit_price: Decimal | None
    amount: Decimal
    net_unit: Decimal | None = None  # a unit price before tax printed beside the one after it

    def net(self) -> Item:
        """The item before tax: quantity x the unit price before tax, where the line prints one."""
        if self.net_unit is None or self.quantity is None:
            return self
        return Item(self.lines, self.description, self.quantity, self.net_unit, self.quantity * self.net_unit)


def _close(a: Decimal, b: Decimal) -> bool:
    return abs(a - b) <= SLACK


def _roundings(found: Sequence[Amount]) -> list[Decimal]:
    rs = [abs(a.value) for a in found if a.role == "rounding"]
    return [Decimal(0), *rs, *(-r for r in rs)]


def subtotal_tax(found: Sequence[Amount], total: FieldValue, lines: Sequence[Line],
                 page: ParsedPage) -> dict[str, FieldValue]:
    """``subtotal`` and ``tax_total`` consistent with the chosen total (subtotal + tax (+ rounding) =
    total), with the lines they were printed on; none when nothing printed reconciles."""
    t_value: Decimal = total.value
    rounds = _roundings(found)
    subs = [a for a in found if a.role == "subtotal" and a.value > 0]
    taxes = [a for a in found if a.role == "tax" and 0 <= a.value <= t_value * MAX_TAX_SHARE]
    # printed subtotal + printed tax: outside the tax summary first, then the smallest rounding
    pairs = [(s, t, r) for s in subs for t in taxes for r in rounds if _close(s.value + t.value + r, t_value)]
    if pairs:
        s, t, r = min(pairs, key=lambda p: (p[0].in_summary + p[1].in_summary, abs(p[2]), -p[1].index))
        conf = 0.85 - 0.1 * (s.in_summary + t.in_summary)
        return {"subtotal": field("subtotal", s.value.quantize(CENT), conf, page, [lines[s.index]]),
                "tax_total": field("tax_total", t.value.quantize(CENT), conf, page, [lines[t.index]])}
    # the tax summary: net, tax (and gross) per rate; one row (its sum line) or all rows add up to the total
    rows = _summary_rows(found)
    for chosen in ([[row] for row in reversed(rows)] + [rows]):
        net, tax = sum((r[0] for r in chosen), Decimal(0)), sum((r[1] for r in chosen), Decimal(0))
        if chosen and any(_close(net + tax + r, t_value) for r in rounds):
            used = [lines[r[2]] for r in chosen]
            return {"subtotal": field("subtotal", net.quantize(CENT), 0.7, page, used),
                    "tax_total": field("tax_total", tax.quantize(CENT), 0.7, page, used)}
    # a tax the total includes: the subtotal is the total less it (printed as a net amount, or derived)
    cue = labels()["total"]["tax_included"]
    for t in taxes:
        if t.value > 0 and find(lines[t.index].folded, cue):
            net = t_value - t.value
            printed = next((s for s in subs if _close(s.value, net)), None)
            tax = field("tax_total", t.value.quantize(CENT), 0.75, page, [lines[t.index]])
            if printed is not None:
                return {"subtotal": field("subtotal", printed.value.quantize(CENT), 0.75, page, [lines[printed.index]]),
                        "tax_total": tax}
            sub = field("subtotal", net.quantize(CENT), 0.6, page, [lines[t.index]])
            return {"subtotal": sub.model_copy(update={"source": "derived"}), "tax_total": tax}
    return {}


def _summary_rows(found: Sequence[Amount]) -> list[tuple[Decimal, Decimal, int]]:
    """(net, tax, line) of each row of the tax summary printed below the totals: a line of two amounts
    (net, tax) or three (net, tax and their sum, in any order), with no tendered, change or tax role
    outside the summary."""
    start = _totals_start(found)
    out = []
    for i in sorted({a.index for a in found if start is not None and a.index > start}):
        here = [a for a in found if a.index == i]
        values = sorted(a.value for a in here)
        if not 2 <= len(here) <= 4 or values[0] < 0 or any(a.role not in (None, "payable", "total", "excluded")
                                                             and not a.in_summary for a in here):
            continue
        if len(here) >= 3:
            three = sorted(a.value for a in here[:3])
            if _close(three[0] + three[1], three[2]) and three[0] <= three[1] * MAX_TAX_SHARE:
                out.append((three[1], three[0], i))
        elif values[0] <= values[1] * MAX_TAX_SHARE:
            out.append((values[1], values[0], i))
    return out


def _totals_start(found: Sequence[Amount]) -> int | None:
    """The first line of the totals block: the first amount with a role (a quantity count aside)."""
    return next((a.index for a in found if a.role not in (None, "excluded")), None)


def _description(line: Line) -> str:
    """The text before the line's first amount, its quantity ("2 x") left out."""
    text = _repair(line.text)
    m = _AMOUNT.search(text)
    head = text[:m.start()] if m else text
    return _QTY.sub("", head.rstrip()).strip(" .:-*")


def _text_only(line: Line) -> bool:
    """Words and no amount, not a column header: a description printed on a line of its own."""
    return bool(_LETTERS.search(line.text)) and not find(line.folded, labels()["items"]["headers"])


def item_lines(lines: Sequence[Line], found: Sequence[Amount]) -> list[Item]:
    """The receipt's item lines above the totals block, in print order (not yet checked against a sum).

    A line that prints only a quantity and a unit price ("2 x 1.29") is the detail of the item above or
    below whose amount it makes; an item line with no words takes the description printed alone above
    it, or below it where the receipt prints descriptions under their amounts (a text line after the
    last item line)."""
    end = _totals_start(found)
    if end is None:
        return []
    at: dict[int, list[Amount]] = {}
    for a in found:
        at.setdefault(a.index, []).append(a)
    items: list[Item] = []
    detail: tuple[int, Decimal, Decimal] | None = None  # (line, quantity, unit price) not yet placed
    for i in range(end):
        here = at.get(i, [])
        if not here:
            continue
        if any(a.role is not None or a.in_summary for a in here):
            continue  # a quantity count or saving printed among the items: not an item
        printed = amounts(lines[i].text)
        if not printed:
            continue
        qty_m = _QTY.search(printed[-2].label if len(printed) >= 2 else printed[0].label)
        qty = Decimal(qty_m.group(1)) if qty_m else None
        if len(printed) == 1 and qty is not None and not _LETTERS.search(_description(lines[i])):
            if items and items[-1].quantity is None and _close(qty * printed[0].value, items[-1].amount):
                prev = items[-1]
                items[-1] = Item((*prev.lines, i), prev.description, qty, printed[0].value, prev.amount)
            else:
                detail = (i, qty, printed[0].value)
            continue
        amount = printed[-1].value
        unit = printed[-2].value if len(printed) >= 2 else None
        net_unit = None
        if len(printed) >= 3 and printed[-3].value <= printed[-2].value:  # qty, price before and after tax
            net_unit, qty_label = printed[-3].value, printed[-3].label
            qty_m = _QTY.search(qty_label)
            qty = Decimal(qty_m.group(1)) if qty_m else None
        else:
            qty_label = printed[-2].label if unit is not None else ""
        name = _description(lines[i])
        if qty is None and unit is not None and (bare := _BARE_QTY.search(qty_label)):
            qty = Decimal(bare.group(1))
            name = _BARE_QTY.sub("", name)
        if qty is not None and unit is not None and not _close(qty * unit, amount):
            qty, unit = None, None
        if qty is None and unit is not None:
            unit = None
        if qty is None:
            net_unit = None
        used: tuple[int, ...] = (i,)
        if detail is not None and qty is None and detail[0] == i - 1 and _close(detail[1] * detail[2], amount):
            used, qty, unit = (detail[0], i), detail[1], detail[2]
        detail = None
        items.append(Item(used, name or None, qty, unit, amount, net_unit))
    below = bool(items) and items[-1].lines[-1] + 1 < end and _text_only(lines[items[-1].lines[-1] + 1])
    out = []
    for it in items:
        if it.description and _LETTERS.search(it.description):
            out.append(it)
            continue
        k = it.lines[-1] + 1 if below else it.lines[0] - 1
        if 0 <= k < end and k not in at and _text_only(lines[k]):
            it = Item(tuple(sorted((*it.lines, k))), lines[k].text.strip(), it.quantity, it.unit_price, it.amount,
                      it.net_unit)
        out.append(it)
    return out


def line_sums(items: Sequence[Item]) -> list[Decimal]:
    """What the item lines (:func:`item_lines`) add up to, all of them and leaving out up to SKIP_LEADING
    stray ones above (receipt_total's line-sum evidence)."""
    return [sum((it.amount for it in items[k:]), Decimal(0)) for k in range(min(len(items), SKIP_LEADING + 1))]


def extract_items(items: Sequence[Item], lines: Sequence[Line], found: Sequence[Amount], page: ParsedPage,
                  total: FieldValue, sums: dict[str, FieldValue]) -> FieldValue | None:
    """``line_items`` as the invoice path returns them (rows of description, quantity, unit price,
    amount) from the item lines (:func:`item_lines`), only when their amounts add up to the subtotal
    (or, none printed, to the total less the rounding); else none."""
    if "subtotal" in sums:
        targets = [sums["subtotal"].value]
        if sums["subtotal"].source == "derived":
            return None  # the tax is included in the item amounts: they add up to the total, not the net
    else:
        targets = [total.value - r for r in _roundings(found)]
    # the amounts as printed; or, where lines print a unit price before tax too, the amounts before tax
    for chosen in (items[k:] if net is False else [it.net() for it in items[k:]]
                   for net in (False, True) for k in range(min(len(items), SKIP_LEADING + 1))):
        got = sum((it.amount for it in chosen), Decimal(0))
        if chosen and any(_close(got, t) for t in targets):
            break
    else:
        return None
    rows = [{"description": it.description, "quantity": it.quantity, "unit_price": it.unit_price,
             "amount": it.amount.quantize(CENT)} for it in chosen]
    used = [lines[i] for it in chosen for i in it.lines]
    conf = sum(ln.confidence for ln in used) / len(used) * (0.95 if "subtotal" in sums else 0.85)
    fv = field("line_items", rows, conf, page, used)
    return fv.model_copy(update={"raw_text": "\n".join(ln.text for ln in used)})  # one item line a row, as invoices
