"""Name -> target schema. Accepts the built-in names and a user's own ``module:Class``."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from docroute.schemas.targets import ChartData, HandwrittenText, Invoice, Table, TargetSchema

BUILTIN: dict[str, type[TargetSchema]] = {
    cls.schema_name: cls for cls in (Invoice, Table, ChartData, HandwrittenText)
}


class UnknownSchemaError(ValueError):
    pass


def _import(module_name: str):
    """Import ``module_name``; one not found is looked for in the working directory too (the console
    script's ``sys.path`` does not hold it, as ``python -m`` would): ``--schema mymodule:Model`` run next
    to ``mymodule.py`` works."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        cwd = str(Path.cwd())
        if cwd in sys.path or not exc.name or module_name.split(".")[0] != exc.name.split(".")[0]:
            raise
        sys.path.append(cwd)
        return importlib.import_module(module_name)


def get_schema(name: str) -> type[TargetSchema]:
    if name in BUILTIN:
        return BUILTIN[name]
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            cls = getattr(_import(module_name), attr)
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
