"""The warehouse contract only grows compatibly within a CONTRACT_VERSION.

tests/contract_snapshot.json records every output table's columns (Arrow type and nullability) as of
the contract version it names. Within one version a column may be added, nullable; nothing may be
removed, retyped or made non-nullable (warehouse external tables and dbt models read these names).
Record a deliberate change with

    python tests/test_contract.py --write

which refuses a breaking change unless CONTRACT_VERSION was bumped (schemas/contract.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow as pa

from docroute.schemas.contract import CONTRACT_VERSION, TABLES, extraction_schema
from docroute.schemas.registry import BUILTIN

SNAPSHOT = Path(__file__).with_name("contract_snapshot.json")
WRITE = "python tests/test_contract.py --write"


def current() -> dict[str, dict[str, dict]]:
    tables = dict(TABLES)
    tables.update({f"extractions/{name}": extraction_schema(cls) for name, cls in BUILTIN.items()})
    return {
        name: {f.name: {"type": str(f.type), "nullable": f.nullable} for f in schema}
        for name, schema in sorted(tables.items())
    }


def breaking_changes(old: dict, new: dict) -> list[str]:
    """What a reader of ``old`` would trip over in ``new``."""
    out = []
    for table, columns in old.items():
        if table not in new:
            out.append(f"table {table} is gone")
            continue
        for col, spec in columns.items():
            now = new[table].get(col)
            if now is None:
                out.append(f"{table}.{col} is gone")
            elif now["type"] != spec["type"]:
                out.append(f"{table}.{col} changed type {spec['type']} -> {now['type']}")
            elif spec["nullable"] and not now["nullable"]:
                out.append(f"{table}.{col} became non-nullable")
    for table, columns in new.items():
        for col, spec in columns.items():
            if col not in old.get(table, {}) and table in old and not spec["nullable"]:
                out.append(f"{table}.{col} is new and non-nullable (a new column must be nullable)")
    return out


def additions(old: dict, new: dict) -> list[str]:
    return [
        f"{table}.{col}" if table in old else f"table {table}"
        for table, columns in new.items()
        for col in columns
        if col not in old.get(table, {})
    ]


def _snapshot() -> dict:
    return json.loads(SNAPSHOT.read_text(encoding="utf-8"))


def test_contract_is_unchanged_or_grew_compatibly():
    snap = _snapshot()
    now = current()
    if snap["contract_version"] != CONTRACT_VERSION:
        raise AssertionError(
            f"CONTRACT_VERSION is {CONTRACT_VERSION} but the snapshot records {snap['contract_version']}: "
            f"run `{WRITE}` and say in the README what changed"
        )
    broken = breaking_changes(snap["tables"], now)
    assert not broken, (
        f"breaking change to contract {CONTRACT_VERSION}: {broken}; bump CONTRACT_VERSION in "
        f"schemas/contract.py, then run `{WRITE}`"
    )
    new = additions(snap["tables"], now)
    assert not new, f"columns not in the contract snapshot: {new}; record them with `{WRITE}`"


def test_the_gate_catches_what_would_break_a_reader():
    snap = _snapshot()["tables"]
    docs = snap["documents"]
    assert {"doc_id", "status", "error", "run_id"} <= docs.keys()
    assert breaking_changes(snap, snap) == []
    renamed = {**snap, "documents": {("sha" if c == "doc_id" else c): s for c, s in docs.items()}}
    assert "documents.doc_id is gone" in breaking_changes(snap, renamed)
    retyped = {**snap, "pages": {**snap["pages"], "page_number": {"type": "string", "nullable": True}}}
    assert any("pages.page_number changed type" in b for b in breaking_changes(snap, retyped))
    added_required = {**snap, "runs": {**snap["runs"], "tenant": {"type": "string", "nullable": False}}}
    assert breaking_changes(snap, added_required) == [
        "runs.tenant is new and non-nullable (a new column must be nullable)"
    ]
    added = {**snap, "runs": {**snap["runs"], "tenant": {"type": "string", "nullable": True}}}
    assert breaking_changes(snap, added) == [] and additions(snap, added) == ["runs.tenant"]


def test_snapshot_holds_the_documented_invoice_fields():
    invoice = _snapshot()["tables"]["extractions/invoice"]
    design = ("invoice_number invoice_date due_date vendor_name vendor_address customer_name customer_address "
              "currency subtotal tax_total total line_items field_confidence needs_review").split()
    assert set(design) <= invoice.keys()
    assert invoice["invoice_date"]["type"] == "date32[day]" and invoice["total"]["type"] == "decimal128(18, 4)"
    assert pa.types.is_list(extraction_schema(BUILTIN["invoice"]).field("line_items").type)


def write() -> int:
    now = current()
    if SNAPSHOT.exists():
        snap = _snapshot()
        broken = breaking_changes(snap["tables"], now)
        if broken and snap["contract_version"] == CONTRACT_VERSION:
            print(f"refused: breaking change within contract {CONTRACT_VERSION}: {broken}", file=sys.stderr)
            print("bump CONTRACT_VERSION in schemas/contract.py first", file=sys.stderr)
            return 2
    lines = ['{', f' "contract_version": {json.dumps(CONTRACT_VERSION)},', ' "tables": {']
    for i, (table, columns) in enumerate(now.items()):
        lines.append(f'  {json.dumps(table)}: {{')
        cols = [f'   {json.dumps(c)}: {json.dumps(spec, sort_keys=True)}' for c, spec in columns.items()]
        lines.append(",\n".join(cols))
        lines.append("  }" + ("," if i < len(now) - 1 else ""))
    lines += [" }", "}"]
    SNAPSHOT.write_text("\n".join(lines) + "\n", encoding="utf-8")  # one column per line: diffs read well
    print(f"wrote {SNAPSHOT} (contract {CONTRACT_VERSION}, {sum(len(c) for c in now.values())} columns)")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(__doc__)
    sys.exit(write())
