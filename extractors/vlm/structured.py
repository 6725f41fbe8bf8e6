"""Backend-independent parts of structured extraction: the generation schema, the prompt, parsing and
validation and its inverse (:func:`answer_text`, the JSON the grammar admits, which the fine-tuning
export writes), and per-field confidence from token log-probabilities. Images: :mod:`.images`.

No torch here: the server backend and the tests use these too.

The generation schema is the target schema's JSON schema, tightened for constrained decoding:

- every property is required (null where the value is absent), no additional properties, so the
  output always has every field and each field has tokens to be confident about;
- plain strings get a bounded ``pattern`` with no quote, backslash or control character. xgrammar
  compiles ``maxLength`` to a character class that admits raw control characters, which pydantic's
  JSON parser then rejects; a pattern compiles to a proper JSON-string regex;
- lists get ``maxItems`` (``max_list_items``), so a model repeating list items stops;
- numbers get ``minimum``/``maximum``, which xgrammar turns into a bounded number of digits (at most
  six decimals), so a model cannot loop in ``0.00000...``; pydantic's Decimal alternative (a string with
  a look-ahead pattern that xgrammar cannot compile) is dropped: amounts are JSON numbers, parsed as
  ``Decimal`` so no float rounding enters.
"""

from __future__ import annotations

import copy
import datetime
import enum
import json
import math
import re
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ValidationError

NUMBER_BOUND = 1e12
INTEGER_BOUND = 10**9


CHAR = '[^"\\\\\\x00-\\x1f]'  # any character but a quote, a backslash or a control character
MAX_REPEAT = 128  # xgrammar 0.2 fails to compile a regex repetition over 128 ({0,200} raises)


def string_pattern(max_chars: int) -> str:
    """A JSON-string regex of at most ``max_chars`` plain characters (no escapes, no control characters)."""
    if max_chars <= MAX_REPEAT:
        return f"^{CHAR}{{0,{max_chars}}}$"
    chunks = -(-max_chars // MAX_REPEAT)
    return f"^({CHAR}{{0,{-(-max_chars // chunks)}}}){{0,{chunks}}}$"


def _tighten(node: Any, max_chars: int, max_items: int = 0) -> Any:
    if isinstance(node, list):
        return [_tighten(n, max_chars, max_items) for n in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    alts = node.get("anyOf")
    if isinstance(alts, list) and any(isinstance(a, dict) and a.get("type") in ("number", "integer") for a in alts):
        # pydantic's Decimal is number | string (with or without a numeric pattern): decode a number
        node["anyOf"] = [a for a in alts if not (isinstance(a, dict) and a.get("type") == "string"
                                                 and not ({"format", "enum", "const"} & a.keys()))]
    out: dict[str, Any] = {}
    for k, v in node.items():
        if k in ("title", "default", "examples"):  # annotations, not constraints
            continue
        if k in ("properties", "$defs", "definitions") and isinstance(v, dict):  # names -> schemas
            out[k] = {name: _tighten(sub, max_chars, max_items) for name, sub in v.items()}
        else:
            out[k] = _tighten(v, max_chars, max_items)
    kind = out.get("type")
    if kind == "object" and "properties" in out:
        out["required"] = list(out["properties"])
        out["additionalProperties"] = False
    elif kind == "string" and not ({"pattern", "format", "enum", "const"} & out.keys()):
        limit = min(int(out.pop("maxLength", max_chars)), max_chars)
        out.pop("minLength", None)
        out["pattern"] = string_pattern(limit)
    elif kind == "array" and max_items:
        out["maxItems"] = min(int(out.get("maxItems", max_items)), max_items)
    elif kind == "number":
        out.setdefault("minimum", -NUMBER_BOUND)
        out.setdefault("maximum", NUMBER_BOUND)
    elif kind == "integer":
        out.setdefault("minimum", -INTEGER_BOUND)
        out.setdefault("maximum", INTEGER_BOUND)
    return out


def generation_schema(schema: type[BaseModel] | dict, max_string_chars: int = 300, max_list_items: int = 0) -> dict:
    """The JSON schema the decoder is constrained to (see the module docstring); 0 items: no bound."""
    raw = schema if isinstance(schema, dict) else schema.model_json_schema()
    return _tighten(copy.deepcopy(raw), max_string_chars, max_list_items)


def schema_key(gen_schema: dict) -> str:
    return json.dumps(gen_schema, sort_keys=True, separators=(",", ":"))


def _describe(props: dict, defs: dict, indent: str = "- ") -> list[str]:
    lines = []
    for name, spec in props.items():
        alts = spec.get("anyOf", [spec])
        kinds = []
        nested = None
        for a in alts:
            if "$ref" in a:
                a = defs.get(a["$ref"].rsplit("/", 1)[-1], {})
            t = a.get("type")
            if t == "array":
                item = a.get("items", {})
                if "$ref" in item:
                    item = defs.get(item["$ref"].rsplit("/", 1)[-1], {})
                kinds.append(f"list of {item.get('type', 'value')}s")
                nested = item.get("properties")
            elif a.get("format") == "date":
                kinds.append("date YYYY-MM-DD")
            elif "enum" in a:
                kinds.append("one of " + ", ".join(map(str, a["enum"])))
            elif t:
                kinds.append(t)
        desc = spec.get("description", "")
        lines.append(f"{indent}{name} ({' or '.join(kinds) or 'value'}){': ' + desc if desc else ''}")
        if nested:
            lines += _describe(nested, defs, indent="    - ")
    return lines


def build_prompt(schema: type[BaseModel], hint: str = "", n_images: int = 1) -> str:
    """The instruction sent with the images: the fields to read, and how to write them."""
    js = schema.model_json_schema()
    name = getattr(schema, "schema_name", schema.__name__)
    what = "this image" if n_images == 1 else f"these {n_images} page images (one document, in order)"
    lines = [f"Extract the {name} from {what}." + (f" {hint}" if hint else ""),
             "Answer with one JSON object with exactly these fields:"]
    lines += _describe(js.get("properties", {}), js.get("$defs", {}))
    lines.append("Use null where a value is not shown. Dates as YYYY-MM-DD; amounts as plain numbers "
                 "without currency symbols or thousands separators; copy text as printed.")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- answer

def answer_text(schema: type[BaseModel], data: dict[str, Any], max_string_chars: int = 300,
                max_list_items: int = 0) -> str:
    """The JSON text of ``data`` as the constrained decoder writes it (the inverse of
    :func:`parse_and_validate`); the fine-tuning export writes its targets with it.

    Every field of ``schema`` in its order, null where absent, ``", "`` and ``": "`` separators (the
    grammar admits no other whitespace); amounts and other numbers as plain JSON numbers (fixed point);
    dates as ISO strings; text unescaped, non-ASCII as is. A run of control characters (a line break)
    in a text becomes one space, the only way the grammar lets a model write it. A value the grammar
    cannot produce at all raises ValueError: a quote or backslash in a text, a text over
    ``max_string_chars``, a list over ``max_list_items`` (0: no bound), a number out of bounds or with
    more than six decimals.
    """
    return _answer(schema.model_validate(data).model_dump(), max_string_chars, max_list_items, "")


def _answer(value: Any, max_chars: int, max_items: int, where: str) -> str:
    if isinstance(value, enum.Enum):
        value = value.value
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        if abs(value) > INTEGER_BOUND:
            raise ValueError(f"{where}: {value} is out of the grammar's integer bounds")
        return str(value)
    if isinstance(value, float | Decimal):
        d = Decimal(repr(value)) if isinstance(value, float) else value
        if not d.is_finite() or abs(d) > Decimal(NUMBER_BOUND):
            raise ValueError(f"{where}: {value} is out of the grammar's number bounds")
        if d.as_tuple().exponent < -6:  # 1.2000000 is 1.2; 1.2345678 cannot be written
            d = d.normalize()
            if d.as_tuple().exponent < -6:
                raise ValueError(f"{where}: {value} has more than the six decimals the grammar admits")
        return format(d, "f")
    if isinstance(value, datetime.date | datetime.time):
        value = value.isoformat()
    if isinstance(value, str):
        text = re.sub(r"\s*[\x00-\x1f]+\s*", " ", value)
        if '"' in text or "\\" in text or len(text) > max_chars:
            raise ValueError(f"{where}: {value[:40]!r}... has a quote or backslash, or is over {max_chars} characters")
        return json.dumps(text, ensure_ascii=False)
    if isinstance(value, list | tuple):
        if max_items and len(value) > max_items:
            raise ValueError(f"{where}: {len(value)} items, over the grammar's {max_items}")
        return "[" + ", ".join(_answer(v, max_chars, max_items, f"{where}[{i}]") for i, v in enumerate(value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)}: {_answer(v, max_chars, max_items, f'{where}.{k}'.lstrip('.'))}"
                               for k, v in value.items()) + "}"
    raise ValueError(f"{where}: no JSON form for {type(value).__name__}")


# ---------------------------------------------------------------------------------------------- parsing

def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _scan_string(text: str, i: int) -> int:
    """``text[i]`` is a quote; return the index after the closing quote (or len(text) if unclosed)."""
    i += 1
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            return i + 1
        i += 1
    return len(text)


def _scan_value(text: str, i: int) -> int:
    """Index just after the JSON value starting at ``i`` (len(text) when it is cut off)."""
    if i >= len(text):
        return i
    if text[i] == '"':
        return _scan_string(text, i)
    if text[i] in "[{":
        depth = 0
        while i < len(text):
            c = text[i]
            if c == '"':
                i = _scan_string(text, i)
                continue
            if c in "[{":
                depth += 1
            elif c in "]}":
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
        return len(text)
    while i < len(text) and text[i] not in ",}] \t\r\n":
        i += 1
    return i


def top_level_spans(text: str) -> dict[str, tuple[int, int]]:
    """Character span of each complete top-level value of a JSON object (tolerates a cut-off text)."""
    spans: dict[str, tuple[int, int]] = {}
    i = _skip_ws(text, 0)
    if i >= len(text) or text[i] != "{":
        return spans
    i += 1
    while True:
        i = _skip_ws(text, i)
        if i >= len(text) or text[i] != '"':
            return spans
        end = _scan_string(text, i)
        try:
            key = json.loads(text[i:end])
        except ValueError:
            return spans
        i = _skip_ws(text, end)
        if i >= len(text) or text[i] != ":":
            return spans
        i = _skip_ws(text, i + 1)
        end = _scan_value(text, i)
        if end >= len(text):  # cut off: the value is incomplete
            return spans
        spans[key] = (i, end)
        i = _skip_ws(text, end)
        if i >= len(text) or text[i] != ",":
            return spans
        i += 1


def validate_lenient(schema: type[BaseModel], obj: Any) -> tuple[dict[str, Any] | None, list[str]]:
    """Validate; a field that fails is dropped (null) and reported. Returns (data, errors)."""
    if not isinstance(obj, dict):
        return None, [f"expected a JSON object, got {type(obj).__name__}"]
    errors: list[str] = []
    current = dict(obj)
    for _ in range(len(current) + 1):
        try:
            return schema.model_validate(current).model_dump(), errors
        except ValidationError as exc:
            bad = {str(err["loc"][0]) for err in exc.errors() if err["loc"]}
            errors += [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
            if not bad:
                break
            current = {k: v for k, v in current.items() if k not in bad}
    try:
        return schema.model_validate({}).model_dump(), errors
    except ValidationError:
        return None, errors


def parse_and_validate(text: str, schema: type[BaseModel]) -> tuple[dict[str, Any] | None, list[str]]:
    """Parse leniently (control characters allowed, numbers as Decimal), then validate."""
    try:
        obj = json.loads(text, strict=False, parse_float=Decimal)
    except ValueError as exc:
        return None, [f"not JSON: {exc}"]
    return validate_lenient(schema, obj)


# ------------------------------------------------------------------------------------------ confidence

def field_confidence(
    text: str, token_bytes: list[bytes], logprobs: list[float]
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Per top-level field: the geometric mean of the model's own probabilities of the tokens that
    overlap the field's value (the log-probabilities read before any grammar mask).

    ``token_bytes`` are the generated tokens' bytes (stop token excluded), whose concatenation is the
    output (``text`` is its decoded form, unused). Spans are found on the bytes themselves (read as
    latin-1, one character per byte; JSON's structure is ASCII), so a token that splits a UTF-8
    character cannot shift them. Returns (confidence, stats): stats gives min_prob and n_tokens.
    """
    starts, pos = [], 0
    for b in token_bytes:
        starts.append(pos)
        pos += len(b)
    conf: dict[str, float] = {}
    stats: dict[str, dict[str, float]] = {}
    for key, (b0, b1) in top_level_spans(b"".join(token_bytes).decode("latin-1")).items():
        name = key.encode("latin-1", errors="replace").decode("utf-8", errors="replace")
        lps = [lp for s, b, lp in zip(starts, token_bytes, logprobs, strict=False)
               if s < b1 and s + max(len(b), 1) > b0]
        if not lps:
            continue
        mean = sum(lps) / len(lps)
        conf[name] = min(1.0, max(0.0, math.exp(mean)))
        stats[name] = {"min_prob": min(1.0, max(0.0, math.exp(min(lps)))), "n_tokens": float(len(lps))}
    return conf, stats
