"""The total payable of a till receipt, chosen among the amounts it prints by reconciling them.

Each amount is read with the label printed before it on its line (or on the line above, when the
amount stands alone): payable (TOTAL, GRAND TOTAL, SUMME, KOPĀ ...), subtotal, tax, rounding, tendered
(CASH, card, BAR ...), change, or something else (quantities, savings, points). Every amount that could
be the total is scored by the evidence for it:

- a payable label (an explicit one such as "amount payable" or "zu zahlen" weighs more than a bare
  "total"; one inside the tax summary printed after the totals weighs little);
- tendered - change equals it; or, with no change printed, it is what was tendered (a card payment);
- subtotal + tax (+ rounding) or another payable amount + rounding equals it, or it is that amount
  rounded to 0.05 where a rounding line is printed (the amount payable is after rounding);
- the item lines add up to it, or to it less the tax printed (receipt_items.line_sums);
- it is printed again below.

The best-scored amount wins; its confidence grows with the evidence and drops when the runner-up
is close.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from docroute.schemas import FieldValue, ParsedPage

from .receipt_lines import Line, Printed, amounts, field, find, labels

ROLES = ("excluded", "change", "subtotal", "tax", "rounding", "tendered", "payable", "total")
MAX_ROUNDING = Decimal("0.10")  # a rounding line adjusts by cents; a larger amount there is a total
CENT = Decimal("0.01")
CHANGE_REACH = 3  # the change is printed within this many lines of what was tendered


@dataclass(frozen=True)
class Amount:
    index: int  # the line
    value: Decimal
    role: str | None
    alternatives: tuple[Decimal, ...]
    in_summary: bool  # printed in the tax summary after the totals


def role(label: str) -> str | None:
    """The role of an amount's label: the role whose phrase matches it longest (ties by ROLES order)."""
    lex = labels()["total"]
    best: tuple[int, int, str] | None = None
    for order, name in enumerate(ROLES):
        if (phrase := find(label, lex[name])) is not None:
            key = (-len(phrase.split()), order, name)
            best = key if best is None or key < best else best
    return best[2] if best else None


def amounts_of(lines: Sequence[Line]) -> list[Amount]:
    """Every amount printed on the lines, with its role and whether it is in the tax summary."""
    lex = labels()["total"]
    out: list[Amount] = []
    summary = False
    pending: str | None = None  # the label of a line that printed no amount (its amount is below)
    for i, ln in enumerate(lines):
        folded = ln.folded
        if out and find(folded, lex["summary"]):
            summary = True
        printed: list[Printed] = amounts(ln.text, dashed=role(folded) is not None)
        for k, p in enumerate(printed):
            r = role(p.label)
            if r is None and k == 0 and not p.label.strip() and pending:
                r = role(pending)
            if r == "rounding" and abs(p.value) > MAX_ROUNDING:
                r = "total"  # "Rounding RM 45.35": the rounded total under a short label
            out.append(Amount(i, p.value, r, p.alternatives, summary))
        pending = folded if not printed and role(folded) else None
    return out


def _round5(value: Decimal) -> Decimal:
    return (value / Decimal("0.05")).quantize(Decimal(1), rounding=ROUND_HALF_UP) * Decimal("0.05")


def _scores(found: list[Amount], line_sums: Sequence[Decimal] = ()) -> dict[Decimal, float]:
    by_role: dict[str | None, list[Amount]] = {}
    for a in found:
        by_role.setdefault(a.role, []).append(a)
    payable = by_role.get("payable", []) + by_role.get("total", [])
    tendered, change = by_role.get("tendered", []), by_role.get("change", [])
    roundings = [abs(a.value) for a in by_role.get("rounding", [])]
    subtotals, taxes = by_role.get("subtotal", []), by_role.get("tax", [])
    scores: dict[Decimal, float] = {}

    def add(value: Decimal, weight: float) -> None:
        if value > 0:
            scores[value] = scores.get(value, 0.0) + weight

    labelled: dict[Decimal, float] = {}  # the strongest label each amount is printed under
    for a in payable:
        weight = (3.0 if a.role == "payable" else 2.0) * (0.3 if a.in_summary else 1.0)
        for value, w in ((a.value, weight), *((alt, weight * 0.5) for alt in a.alternatives)):
            labelled[value] = max(labelled.get(value, 0.0), w)
    for value, w in labelled.items():
        add(value, w)
    for t in tendered:
        near = [c for c in change if abs(c.index - t.index) <= CHANGE_REACH]
        if near:
            c = min(near, key=lambda c: (abs(c.index - t.index), c.index < t.index))
            add(abs(t.value) - abs(c.value), 3.0)
        elif not change:
            add(abs(t.value), 1.0)
    values = {a.value for a in payable}
    for s in subtotals:
        for t in taxes:
            for r in [Decimal(0), *roundings, *(-r for r in roundings)]:
                if s.value + t.value + r in values:
                    add(s.value + t.value + r, 1.5)
    for p in payable:
        for r in roundings:
            for v in (p.value + r, p.value - r):
                if v != p.value and (v in values or _round5(p.value) == v):
                    add(v, 2.0)
        if roundings and _round5(p.value) != p.value and _round5(p.value) in values:
            add(_round5(p.value), 1.0)
    rounded = [Decimal(0), *roundings, *(-r for r in roundings)]
    for s in (s for s in set(line_sums) if s > 0):  # the items, plus the tax where it is added
        taxed = {s + t.value + r for t in taxes for r in rounded} & values
        for v in taxed or ({s + r for r in rounded} & values):
            add(v, 1.5)
    counts: dict[Decimal, int] = {}
    for a in found:
        counts[a.value] = counts.get(a.value, 0) + 1
    for v in list(scores):
        scores[v] += 0.5 * min(2, counts.get(v, 0) - 1) if counts.get(v, 0) > 1 else 0.0
    return scores


def extract_total(lines: Sequence[Line], page: ParsedPage, found: Sequence[Amount] | None = None,
                  line_sums: Sequence[Decimal] = ()) -> FieldValue | None:
    """The total payable; ``found`` (the amounts printed, :func:`amounts_of`) and ``line_sums`` (what the
    item lines add up to) when the caller has read them already."""
    found = list(amounts_of(lines) if found is None else found)
    scores = _scores(found, line_sums)
    if not scores:
        return None
    ranked = sorted(scores.items(), key=lambda kv: (-kv[1], -kv[0]))
    value, score = ranked[0]
    runner = ranked[1][1] if len(ranked) > 1 else 0.0
    where = [lines[a.index] for a in found if a.value == value][-1:] or [lines[-1]]
    conf = min(0.9, 0.35 + 0.12 * score) - (0.25 if runner >= score - 1.0 else 0.0)
    return field("total", value.quantize(CENT), conf, page, where)
