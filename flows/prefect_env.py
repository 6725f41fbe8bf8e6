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


def api_url_configured() -> bool:
    """Whether a Prefect API is configured: PREFECT_API_URL in the environment, in Prefect's settings when
    this process loaded them already, or in the active Prefect profile (read from the profiles file:
    importing Prefect to ask takes seconds)."""
    if os.environ.get("PREFECT_API_URL"):
        return True
    import sys

    if "prefect.settings" in sys.modules:  # already loaded (in-process settings, a test harness): ask it
        from prefect.settings import PREFECT_API_URL

        return bool(PREFECT_API_URL.value())
    import tomllib
    from pathlib import Path

    home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect")
    path = Path(os.environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    active = os.environ.get("PREFECT_PROFILE") or data.get("active", "ephemeral")
    return bool((data.get("profiles", {}).get(active) or {}).get("PREFECT_API_URL"))
