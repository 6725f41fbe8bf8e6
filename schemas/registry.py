"""Name -> target schema. Accepts the built-in names and a user's own ``module:Class``."""

from __future__ import annotations

import importlib

from docroute.schemas.targets import ChartData, HandwrittenText, Invoice, Table, TargetSchema

BUILTIN: dict[str, type[TargetSchema]] = {
    cls.schema_name: cls for cls in (Invoice, Table, ChartData, HandwrittenText)
}


class UnknownSchemaError(ValueError):
    pass


def get_schema(name: str) -> type[TargetSchema]:
    if name in BUILTIN:
        return BUILTIN[name]
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise UnknownSchemaError(f"cannot import schema {name!r}: {exc}") from exc
        if not (isinstance(cls, type) and issubclass(cls, TargetSchema)):
            raise UnknownSchemaError(
                f"{name!r} is not a docroute.schemas.targets.TargetSchema subclass "
                "(it needs schema_name and schema_version class variables)"
            )
        return cls
    raise UnknownSchemaError(
        f"unknown schema {name!r}; built-in: {', '.join(sorted(BUILTIN))}, or give module:Class"
    )
