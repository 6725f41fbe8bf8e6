"""A small event channel from the flow to whoever shows progress (the CLI).

The flow emits as its tasks complete, wherever they ran (threads here, Dask workers elsewhere), so a
process-wide listener in the flow's process is enough; with no listener (a served deployment) events
are dropped and the run row, manifest and HTML report tell what happened.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

from docroute.pipelines.batch import DocumentSummary


@dataclass(frozen=True)
class Planned:
    """The run's plan: documents to do, already done, and inputs whose bytes another input has."""

    todo: int
    skipped: int
    duplicates: int
    run_id: str


Event = Planned | DocumentSummary  # a document's summary is emitted as it is committed
Listener = Callable[[Event], None]
_lock = threading.Lock()
_listeners: list[Listener] = []


@contextmanager
def listening(listener: Listener):
    with _lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(listener)


def emit(event: Event) -> None:
    with _lock:
        targets = list(_listeners)
    for listener in targets:
        listener(event)


def listened() -> bool:
    """Whether anyone in this process shows progress (the CLI does; a served deployment run does not)."""
    with _lock:
        return bool(_listeners)
