"""Arithmetic checks that a target schema declares, evaluated on the validated model.

A schema declares them in its model config::

    model_config = ConfigDict(json_schema_extra={"checks": [
        "sum(lines[].amount) == total",                             # a column sum against a field
        "lines[].quantity * lines[].unit_price == lines[].amount",  # row by row
        "opening_balance + sum(transactions[].amount) == closing_balance",
    ]})

Grammar: numbers, field names, ``list[].field`` (a column of a ``list[Model]`` field), ``sum(...)``,
``+ - * /``, parentheses and one comparison (``== != < <= > >=``). ``==`` allows rounding slack (a
cent per term, or 0.1%). A column outside ``sum()`` makes the check row by row. A check whose values
are missing is not applicable (no reason); a failed one is the review reason ``check_failed:<rule>``
(``check_failed:<rule>:<row>`` row by row, rows counted from 1); a rule that does not parse is
``invalid_check:<rule>``. A ``model_validator`` on the schema is the other way: its errors become
``check_failed:<message>`` reasons (see validate.py).
"""

from __future__ import annotations

import ast
import operator
import re
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

CENT = Decimal("0.01")
_COLUMN = re.compile(r"\b([A-Za-z_]\w*)\[\]\.([A-Za-z_]\w*)")
_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_CMP = {ast.Eq: None, ast.NotEq: None, ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
        ast.GtE: operator.ge}


class _NotApplicable(Exception):
    pass


def declared_checks(schema: type[BaseModel]) -> list[str]:
    extra = schema.model_config.get("json_schema_extra")
    return [str(c) for c in extra.get("checks", ())] if isinstance(extra, dict) else []


def _close(a: Decimal, b: Decimal, terms: int) -> bool:
    slack = max(CENT * terms, max(abs(a), abs(b)) * Decimal("0.001"))
    return abs(a - b) <= slack


def _num(value: Any) -> Decimal:
    if value is None or isinstance(value, bool):
        raise _NotApplicable
    return value if isinstance(value, Decimal) else Decimal(str(value))


class _Eval:
    def __init__(self, obj: BaseModel, columns: dict[str, tuple[str, str]], row: int | None):
        self.obj, self.columns, self.row, self.terms = obj, columns, row, 1

    def column(self, name: str) -> list[Any]:
        lst, attr = self.columns[name]
        return [getattr(item, attr, None) for item in getattr(self.obj, lst)]

    def __call__(self, node: ast.AST) -> Decimal:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return Decimal(str(node.value))
        if isinstance(node, ast.Name):
            if node.id in self.columns:
                if self.row is None:
                    raise ValueError(f"column {node.id} outside sum() in a whole-document check")
                return _num(self.column(node.id)[self.row])
            if node.id not in type(self.obj).model_fields:
                raise ValueError(f"unknown field {node.id}")
            return _num(getattr(self.obj, node.id))
        if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
            self.terms += 1
            return _BIN[type(node.op)](self(node.left), self(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -self(node.operand)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "sum"
                and len(node.args) == 1 and isinstance(node.args[0], ast.Name) and node.args[0].id in self.columns):
            values = [_num(v) for v in self.column(node.args[0].id)]
            if not values:
                raise _NotApplicable
            self.terms += len(values)
            return sum(values, Decimal(0))
        raise ValueError(f"unsupported expression: {ast.unparse(node)}")


def _compare(tree: ast.Compare, ev: _Eval) -> bool:
    left, right = ev(tree.left), ev(tree.comparators[0])
    op = type(tree.ops[0])
    if op is ast.Eq:
        return _close(left, right, ev.terms)
    if op is ast.NotEq:
        return not _close(left, right, ev.terms)
    return _CMP[op](left, right)


def run_checks(obj: BaseModel, checks: list[str] | None = None) -> list[str]:
    """Review reasons of the failed checks (declared by ``obj``'s schema unless given)."""
    reasons = []
    for rule in declared_checks(type(obj)) if checks is None else checks:
        columns = {f"__col_{a}__{b}": (a, b) for a, b in _COLUMN.findall(rule)}
        try:
            tree = ast.parse(_COLUMN.sub(r"__col_\1__\2", rule), mode="eval").body
            if not (isinstance(tree, ast.Compare) and len(tree.ops) == 1 and type(tree.ops[0]) in _CMP):
                raise ValueError("a check is one comparison")
            in_sum = {a.id for n in ast.walk(tree) if isinstance(n, ast.Call) for a in n.args if isinstance(a, ast.Name)}
            bare = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id in columns} - in_sum
            if bare:
                lists = {columns[c][0] for c in bare}
                n_rows = min(len(getattr(obj, lst)) for lst in lists)
                for i in range(n_rows):
                    try:
                        if not _compare(tree, _Eval(obj, columns, i)):
                            reasons.append(f"check_failed:{rule}:{i + 1}")
                    except _NotApplicable:
                        continue
            else:
                try:
                    if not _compare(tree, _Eval(obj, columns, None)):
                        reasons.append(f"check_failed:{rule}")
                except _NotApplicable:
                    pass
        except (SyntaxError, ValueError, AttributeError, TypeError, ArithmeticError):
            reasons.append(f"invalid_check:{rule}")
    return reasons
