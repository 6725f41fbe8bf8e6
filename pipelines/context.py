"""Runtime state of a run that travels with each document: not settings, never in ``runs.config``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunContext:
    run_id: str | None = None
    budget_file: Path | None = None  # the run's VLM page ledger when the run is capped (pipelines/budget.py)
