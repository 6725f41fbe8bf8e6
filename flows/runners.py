"""Where a run's document tasks execute: ``threads`` (the default: a thread per document slot, each
handing its document to a local worker process) or ``dask`` (prefect-dask: a LocalCluster of
``workers`` processes, or the cluster at ``dask_address``).

Tasks on Dask workers report their state to a Prefect API. The embedded server that a plain run
starts lives in the flow's process and is not visible to other processes, so without a configured
``PREFECT_API_URL`` a Dask run starts Prefect's local server process first and points the flow, its
context (which prefect-dask ships with each task) and the LocalCluster's workers at it. A remote
cluster on other hosts cannot reach that loopback server: it needs ``PREFECT_API_URL`` set to a
Prefect server the workers reach, and the run says so instead of hanging.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from docroute.pipelines.settings import Settings

DAEMON_ENV = "DASK_DISTRIBUTED__WORKER__DAEMON"


class RunnerError(RuntimeError):
    """The chosen runner cannot run here as configured (the message says what to change)."""


def task_runner(settings: Settings):
    """The Prefect task runner for ``settings.runner``."""
    if settings.runner == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=settings.workers)
    try:
        import dask
        from prefect_dask import DaskTaskRunner
    except ImportError as exc:  # pragma: no cover - prefect-dask is a dependency
        raise RunnerError(f"--runner dask needs prefect-dask ({exc}); reinstall docroute") from exc
    if settings.dask_address:
        return DaskTaskRunner(address=settings.dask_address)
    # Worker processes must not be daemonic, or they cannot start the per-document processes that
    # bound a document's time and memory (flows/isolation.py). Set here and in the environment, so a
    # flow run started in a subprocess (a served deployment) builds its cluster the same way.
    dask.config.set({"distributed.worker.daemon": False})
    os.environ[DAEMON_ENV] = "False"
    return DaskTaskRunner(cluster_kwargs={
        "n_workers": settings.workers, "threads_per_worker": 1, "processes": True,
        "dashboard_address": None, "silence_logs": 40,
    })


def is_local(address: str) -> bool:
    host = urlsplit(address if "://" in address else f"tcp://{address}").hostname or ""
    if host in ("localhost", socket.gethostname(), socket.getfqdn()):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        try:
            ip = ipaddress.ip_address(socket.gethostbyname(host))
        except (OSError, ValueError):
            return False
    if ip.is_loopback:
        return True
    try:
        return host in {a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None)}
    except OSError:
        return False


@contextmanager
def prefect_api_for(settings: Settings) -> Iterator[str | None]:
    """Make sure the run's tasks can reach a Prefect API; yields its URL (None: the embedded server).

    Threads share the flow's process, so the embedded server serves them. Dask workers are other
    processes: without ``PREFECT_API_URL`` this starts Prefect's local server process (the one the
    embedded mode uses) and points this process, the task context and new worker processes at it.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    configured = PREFECT_API_URL.value()
    if settings.runner != "dask" or configured:
        yield configured
        return
    if settings.dask_address and not is_local(settings.dask_address):
        raise RunnerError(
            f"the Dask cluster at {settings.dask_address} is on another host, and its workers cannot reach "
            "this process's embedded Prefect server: set PREFECT_API_URL to a Prefect server they can reach "
            "(prefect server start --host 0.0.0.0, or Prefect Cloud) and run again"
        )
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the same singleton the embedded mode would start
    server.start()
    previous = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = server.api_url  # inherited by LocalCluster worker processes
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield server.api_url
    finally:
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = previous
