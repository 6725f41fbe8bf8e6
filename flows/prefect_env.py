"""Prefect defaults for docroute, applied before Prefect is imported.

By default a run uses Prefect's embedded local server (nothing to start); PREFECT_API_URL set means a
real server. Analytics are off. The embedded server's start-up timeout is raised, since a cold start
took over 13 s on a 2-core machine. Every default yields to a value the user already set.
"""

from __future__ import annotations

import os

DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
    "HF_HUB_OFFLINE": "1",
    "OMP_THREAD_LIMIT": "1",
}


def apply() -> None:
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
