"""``docroute serve``: the extract flow as a Prefect deployment on a schedule, served by this process.

Each tick is an ordinary run of ``extract_folder`` with the parameters fixed at ``serve`` time (input,
output, settings as JSON), so it processes only what is new since the last tick: documents already
committed are skipped by content hash (pipelines/batch.py). A tick that comes while the previous one
is still running is cancelled (deployment concurrency 1, CANCEL_NEW) rather than queued, and the
output folder's lock guards against any other writer. Stopping the server (Ctrl-C, SIGTERM) pauses
the schedule, so missed ticks do not pile up.

Schedules are turned into runs by the Prefect server's scheduler, which the embedded (ephemeral)
server does not run: without ``PREFECT_API_URL`` this starts a local ``prefect server`` process for as
long as it serves, and stops it at the end.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from docroute.pipelines.settings import Settings

SERVER_START_TIMEOUT_S = 180.0


class ServeError(ValueError):
    """The schedule or the server cannot be set up as asked (the message says what to change)."""


def schedule(cron: str | None, interval_s: float | None, timezone: str):
    """A Prefect schedule from ``--cron`` or ``--interval`` (exactly one), checked before anything starts."""
    from prefect.schedules import Cron, Interval

    if (cron is None) == (interval_s is None):
        raise ServeError("give exactly one of --cron 'MIN HOUR DOM MON DOW' or --interval SECONDS")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ServeError(f"unknown time zone {timezone!r}: use an IANA name such as UTC or Europe/Berlin") from exc
    if cron is not None:
        try:
            return Cron(cron, timezone=timezone)
        except ValueError as exc:
            raise ServeError(f"{exc}; a cron string has five fields, e.g. '0 2 * * *' for 02:00 daily") from exc
    if interval_s <= 0:
        raise ServeError("--interval must be a positive number of seconds")
    return Interval(timedelta(seconds=interval_s), timezone=timezone)


def _free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def prefect_server(log_file: Path, echo: Callable[[str], None]) -> Iterator[str]:
    """The Prefect API to serve against: ``PREFECT_API_URL`` when set, else a local server process
    (scheduler on) started here, stopped on exit; its output goes to ``log_file``."""
    import httpx
    from prefect.settings import PREFECT_API_URL, temporary_settings

    configured = PREFECT_API_URL.value()
    if configured:
        yield configured
        return
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    echo(f"starting a local Prefect server (with its scheduler) on http://127.0.0.1:{port}; log: {log_file}")
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port),
             "--scheduler", "--analytics-off"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise ServeError(f"the local Prefect server exited with code {proc.returncode}; see {log_file}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise ServeError(f"the local Prefect server did not answer within {SERVER_START_TIMEOUT_S:.0f} s; "
                                 f"see {log_file}")
            time.sleep(0.5)
        os.environ["PREFECT_API_URL"] = url  # flow-run subprocesses and Dask workers inherit it
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def absolute_input(input_spec: str) -> str:
    """The input as an absolute folder, file or glob: ticks must not depend on a working directory."""
    return input_spec if os.path.isabs(input_spec) else os.path.join(os.getcwd(), input_spec)


def deployment(input_spec: str, out: Path, settings: Settings, the_schedule, *, name: str,
               retry_failed: bool = False):
    """The RunnerDeployment of ``extract_folder`` for this input and output (no API call)."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

    from docroute.flows.extract import extract_folder

    # the flow picks its task runner from the settings at each run (a served run is started afresh,
    # with Prefect's default runner): see extract_folder
    return extract_folder.to_deployment(
        name=name,
        schedules=[the_schedule],
        parameters={"input": absolute_input(input_spec), "out": str(out.resolve()),
                    "settings": settings.model_dump(mode="json", exclude_unset=True),
                    "retry_failed": retry_failed},
        concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
        description=f"docroute: new documents under {absolute_input(input_spec)} into {out.resolve()}",
        tags=["docroute", settings.runner],
    )


def serve(input_spec: str, out: Path, settings: Settings, the_schedule, *, name: str, retry_failed: bool,
          echo: Callable[[str], None]) -> None:
    """Serve the deployment until interrupted (blocks)."""
    from prefect import serve as prefect_serve
    from prefect.settings import PREFECT_API_URL

    from docroute.flows.runners import is_local, prefect_api_for

    if settings.dask_address and not PREFECT_API_URL.value() and not is_local(settings.dask_address):
        raise ServeError(f"the Dask cluster at {settings.dask_address} is on another host and could not reach a "
                         "Prefect server started here on 127.0.0.1: set PREFECT_API_URL to a server it can reach")
    out.mkdir(parents=True, exist_ok=True)
    try:
        with prefect_server(out / "_serve" / "prefect-server.log", echo) as api_url, prefect_api_for(settings):
            echo(f"serving deployment extract_folder/{name} against {api_url}; Ctrl-C or SIGTERM stops it")
            # Prefect's runner turns SIGTERM into a graceful stop (a tick in flight is cancelled) and
            # pauses the schedule on the way out; Ctrl-C arrives here as KeyboardInterrupt
            prefect_serve(deployment(input_spec, out, settings, the_schedule, name=name, retry_failed=retry_failed),
                          pause_on_shutdown=True)
    except KeyboardInterrupt:
        pass
    echo(f"stopped serving extract_folder/{name}: its schedule is paused until it is served again; "
         "committed documents are kept, and a tick cut short resumes on the next one")
