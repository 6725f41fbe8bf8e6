"""A small event channel from the flow's tasks to whoever shows progress (the CLI).

Tasks run in threads of the flow's process, so a process-wide listener is enough; with no listener
events are dropped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

Listener = Callable[[dict[str, Any]], None]
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


def emit(event: dict[str, Any]) -> None:
    with _lock:
        targets = list(_listeners)
    for listener in targets:
        listener(event)
