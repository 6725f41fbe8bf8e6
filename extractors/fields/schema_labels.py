"""What the schema-driven extractor looks for: each model field's kind and printed labels.

A field's labels come from the model itself, strongest first:

* ``json_schema_extra={"labels": [...]}`` on the field (weight 1.0), and its ``alias`` and ``title``;
* the field name in words (``po_number`` -> "po number", ``orderDate`` -> "order date"; weight 1.0);
* the description when it is short (four words or fewer, e.g. "Purchase order number."; weight 0.9) —
  a longer description is an instruction for the VLM, not a label;
* each of those with words swapped for their synonyms from ``synonyms.toml`` (weight 0.9): "number" ->
  "no", "nr", "#", "nummer"...; "purchase order" -> "po", "bestellung"...

The kind comes from the annotation: date, decimal (``Decimal``, money), int, bool (a check box), a
choice (``Literal`` or ``Enum``), str, or a table (``list[SomeModel]``, whose item fields name its
columns). Other annotations (nested models, lists of scalars) are not read on the layout path.
"""

from __future__ import annotations

import enum
import re
import tomllib
import types
import typing
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from .labels import norm_token

DATE, DECIMAL, INT, BOOL, CHOICE, TEXT, TABLE = "date", "decimal", "int", "bool", "choice", "text", "table"
SYNONYMS_FILE = Path(__file__).with_name("synonyms.toml")
OWN, SYNONYM, DESCRIPTION, HEAD = 1.0, 0.9, 0.9, 0.6
# A bare "Date:" or "No.:" names the first field of the schema whose name ends so (``order_date`` before
# ``delivery_date``): a weak label (its values are low-confidence), beaten by any explicit one.
_HEADS = ("date", "number", "no", "id")
_MAX_VARIANTS = 160
_MAX_DESCRIPTION_WORDS = 4


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: str
    labels: tuple[tuple[str, float], ...]  # (label text, weight), normalised
    choices: tuple[tuple[str, object], ...] = ()  # CHOICE: (printed form, value)
    item: type[BaseModel] | None = None  # TABLE: the row model
    columns: tuple[FieldSpec, ...] = ()  # TABLE: the row model's fields

    @property
    def is_identifier(self) -> bool:
        words = set(self.name.lower().split("_"))
        return bool(words & {"number", "no", "nr", "id", "ref", "reference", "code", "iban", "sku"})


def _norm(text: str) -> str:
    return " ".join(t for t in (norm_token(w) for w in text.split()) if t)


@cache
def synonym_groups() -> tuple[tuple[str, ...], ...]:
    """The groups of ``synonyms.toml``, each member normalised."""
    data = tomllib.loads(SYNONYMS_FILE.read_text(encoding="utf-8"))
    return tuple(tuple(dict.fromkeys(_norm(m) for m in members if _norm(m))) for members in data["groups"].values())


def variants(label: str) -> list[str]:
    """``label`` and the labels made by swapping whole-word synonyms into it (breadth first, capped).

    Words a swap brought in are not swapped again on their own (a member of two groups, such as "ref",
    must not lead from one meaning to another); a phrase that only partly consists of them may be
    ("po number" -> "order number" -> "bestellnummer")."""
    start = _norm(label)
    seen = {start: None}
    queue: list[tuple[list[str], list[bool]]] = [(start.split(), [False] * len(start.split()))]
    while queue and len(seen) < _MAX_VARIANTS:
        tokens, brought = queue.pop(0)
        for group in synonym_groups():
            for member in group:
                m = member.split()
                for i in range(len(tokens) - len(m) + 1):
                    if tokens[i:i + len(m)] != m or all(brought[i:i + len(m)]):
                        continue
                    for other in group:
                        if other == member:
                            continue
                        o = other.split()
                        new = tokens[:i] + o + tokens[i + len(m):]
                        text = " ".join(new)
                        if text not in seen and len(seen) < _MAX_VARIANTS:
                            seen[text] = None
                            queue.append((new, brought[:i] + [True] * len(o) + brought[i + len(m):]))
    return list(seen)


def words_of(name: str) -> str:
    """``po_number`` / ``poNumber`` / ``PO-Number`` -> "po number"."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name)
    return " ".join(spaced.replace("_", " ").replace("-", " ").split()).lower()


def _labels(name: str, info: FieldInfo) -> tuple[tuple[str, float], ...]:
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    own = [str(x) for x in extra.get("labels", ()) or ()]
    own += [x for x in (info.alias, info.title) if isinstance(x, str)]
    own.append(words_of(name))
    described = []
    if info.description:
        text = info.description.strip().rstrip(".")
        if len(text.split()) <= _MAX_DESCRIPTION_WORDS:
            described.append(text)
    out: dict[str, float] = {}
    for base, weight in [(x, OWN) for x in own] + [(x, DESCRIPTION) for x in described]:
        for i, v in enumerate(variants(base)):
            w = weight if i == 0 else min(weight, SYNONYM)
            if v and out.get(v, 0.0) < w:
                out[v] = w
    return tuple(out.items())


def _strip_optional(annotation):
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _strip_optional(args[0])
    if origin is typing.Annotated:
        return _strip_optional(typing.get_args(annotation)[0])
    return annotation


def _kind(annotation) -> tuple[str | None, tuple, type[BaseModel] | None]:
    ann = _strip_optional(annotation)
    origin = typing.get_origin(ann)
    if origin is typing.Literal:
        return CHOICE, tuple((str(v), v) for v in typing.get_args(ann)), None
    if origin in (list, tuple, typing.Sequence):
        args = typing.get_args(ann)
        if args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
            return TABLE, (), args[0]
        return None, (), None
    if not isinstance(ann, type):
        return None, (), None
    if issubclass(ann, enum.Enum):
        return CHOICE, tuple((str(m.value), m) for m in ann) + tuple((m.name, m) for m in ann), None
    for kind, types_ in ((BOOL, (bool,)), (DATE, (date, datetime)), (DECIMAL, (Decimal, float)), (INT, (int,)),
                         (TEXT, (str,))):
        if issubclass(ann, types_):
            return kind, (), None
    return None, (), None


def field_specs(model: type[BaseModel]) -> tuple[FieldSpec, ...]:
    """One spec per field of ``model`` that the layout path can read."""
    return _specs(model)


@cache
def _specs(model: type[BaseModel]) -> tuple[FieldSpec, ...]:
    out = []
    heads: set[str] = set()
    for name, info in model.model_fields.items():
        kind, choices, item = _kind(info.annotation)
        if kind is None:
            continue
        columns = tuple(s for s in _specs(item) if s.kind != TABLE) if item is not None else ()
        labels = _labels(name, info)
        words = words_of(name).split()
        if len(words) > 1 and words[-1] in _HEADS and words[-1] not in heads:
            heads.add(words[-1])
            have = {label for label, _ in labels}
            labels += tuple((v, HEAD) for v in variants(words[-1]) if v not in have)
        out.append(FieldSpec(name, kind, labels, choices, item, columns))
    return tuple(out)


def lexicon_entries(specs: typing.Iterable[FieldSpec]) -> dict[str, list[tuple[str, float]]]:
    """field -> [(label, weight)] for :class:`labels.Lexicon`."""
    return {s.name: list(s.labels) for s in specs}


__all__ = ["FieldSpec", "field_specs", "lexicon_entries", "variants", "words_of"]
