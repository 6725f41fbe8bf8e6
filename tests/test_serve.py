"""``docroute serve``: the extract flow as a served Prefect deployment on a schedule.

One test runs the default set-up end to end: no PREFECT_API_URL, so serve starts a local Prefect
server with its scheduler; the schedule ticks every few seconds; each tick processes only the files
that are new, each document is committed exactly once over all ticks, and SIGTERM stops serving,
pauses the schedule and stops the server it started. The other serves a cron schedule against the
session's server on the Dask runner, checks the deployment the server holds, and runs it as the
scheduler would. The
last deploys ``deploy/prefect.yaml`` to a process work pool and has a Prefect worker run it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from docroute.pipelines.sink import read_tables

from conftest import SAMPLES, journal

pytestmark = [pytest.mark.prefect, pytest.mark.slow]
DOCROUTE = str(Path(sys.executable).with_name("docroute"))


def _idle_ticks(out: Path) -> int:
    """Finished runs that found every file already done."""
    n = 0
    for path in (out / "_manifests").glob("*.json"):
        data = json.loads(path.read_text())
        n += data.get("state") == "finished" and data["discovered"] == 3 and data["skipped"] == 3
    return n


def _stop(proc: subprocess.Popen, sig: int) -> str:
    """Stop serve as a person (SIGINT) or a service manager (SIGTERM) would; it must exit cleanly."""
    proc.send_signal(sig)
    output, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, output
    return output


def _cmdline(p: psutil.Process) -> list[str]:
    """A child's command line; [] for one that is exiting (the first batch commits as the pool closes)."""
    try:
        return p.cmdline()
    except psutil.Error:
        return []


def _wait(predicate, timeout: float, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"serve exited ({proc.returncode}) before {what}: {proc.stdout.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no {what} within {timeout:.0f} s: {proc.stdout.read()}")
        time.sleep(1)


def test_interval_ticks_process_only_new_files_on_a_server_serve_starts(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("invoice_ruled.pdf", "broken_empty.pdf"):
        shutil.copy(SAMPLES / name, folder / name)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {
        "PREFECT_HOME": str(tmp_path / "ph"), "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2", "PREFECT_RUNNER_POLL_FREQUENCY": "2",
    }
    proc = subprocess.Popen([DOCROUTE, "serve", str(folder), "--out", str(out), "--interval", "8", "--workers", "1"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait(lambda: len(journal(out)) >= 2, 240, proc, "first tick")
        server = [p for p in psutil.Process(proc.pid).children(recursive=True)
                  if {"server", "start"} <= set(_cmdline(p))]
        assert len(server) == 1, "serve started one local Prefect server"
        shutil.copy(SAMPLES / "invoice_unruled.pdf", folder / "invoice_unruled.pdf")
        _wait(lambda: len(journal(out)) >= 3, 120, proc, "tick with the new file")
        _wait(lambda: _idle_ticks(out) >= 1, 120, proc, "a tick with nothing new")
        output = _stop(proc, signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "its schedule is paused" in output
    # each tick leaves one summary line in the serving process's log, failures named
    assert "1 document(s) processed (1 ok, 0 partial, 0 failed), 2 already done" in output, output
    assert "broken_empty.pdf: the file is empty" in output
    assert not server[0].is_running() or server[0].status() == psutil.STATUS_ZOMBIE, "the server was stopped"

    commits = journal(out)
    assert sorted(r["doc_id"] for r in commits) == sorted({r["doc_id"] for r in commits}), "each document once"
    docs = read_tables(out)["documents"].set_index("file_name")
    assert docs.loc["invoice_ruled.pdf", "status"] == "ok" and docs.loc["broken_empty.pdf", "status"] == "failed"
    assert docs.loc["invoice_unruled.pdf", "run_id"] != docs.loc["invoice_ruled.pdf", "run_id"]
    runs = read_tables(out)["runs"].set_index("run_id")
    counts = {rid: dict(c) for rid, c in runs["counts"].items()}  # a Parquet map: (key, value) pairs
    later = counts[docs.loc["invoice_unruled.pdf", "run_id"]]
    assert later["documents"] == 1 and later["skipped"] == 2, later
    assert any(c["documents"] == 0 and c["skipped"] == 3 for c in counts.values())


def test_cron_deployment_on_dask_is_registered_and_runs_as_the_scheduler_would(prefect_api, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(SAMPLES / "invoice_ruled.pdf", folder / "invoice_ruled.pdf")
    out = tmp_path / "out"
    env = os.environ | {"PREFECT_API_URL": prefect_api, "PREFECT_RUNNER_POLL_FREQUENCY": "2",
                        "DOCROUTE_WORKERS": "1"}
    proc = subprocess.Popen([DOCROUTE, "serve", str(folder), "--out", str(out), "--cron", "0 2 * * *",
                             "--timezone", "Europe/Berlin", "--name", "nightly", "--schema", "invoice",
                             "--runner", "dask"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def registered():
            with get_client(sync_client=True) as client:
                try:
                    return client.read_deployment_by_name("extract_folder/nightly")
                except Exception:
                    return None

        _wait(lambda: registered() is not None, 120, proc, "deployment")
        dep = registered()
        (sched,) = dep.schedules
        assert sched.schedule.cron == "0 2 * * *" and sched.schedule.timezone == "Europe/Berlin" and sched.active
        assert dep.parameters["input"] == str(folder) and dep.parameters["out"] == str(out.resolve())
        assert dep.parameters["settings"] == {"schema_name": "invoice", "workers": 1, "runner": "dask"}
        assert dep.global_concurrency_limit.limit == 1  # a tick never overlaps the previous one
        assert dep.concurrency_options.collision_strategy == "CANCEL_NEW"

        flow_run = run_deployment("extract_folder/nightly", timeout=300)
        assert flow_run.state.is_completed(), flow_run.state
        assert read_tables(out)["documents"]["status"].tolist() == ["ok"]
        # the served run did its document on a Dask worker, not in the flow's own process
        (manifest,) = [json.loads(p.read_text()) for p in (out / "_manifests").glob("*.json")]
        (commit,) = journal(out)
        assert manifest["runner"] == "dask" and not commit["worker"].endswith(f":{manifest['pid']}")
        _stop(proc, signal.SIGINT)
    finally:
        if proc.poll() is None:
            proc.kill()
    with get_client(sync_client=True) as client:
        assert client.read_deployment_by_name("extract_folder/nightly").paused, "paused on stop"


def test_prefect_yaml_deploys_to_a_process_work_pool_that_a_worker_runs(prefect_api, tmp_path):
    from prefect.client.orchestration import get_client

    from conftest import REPO

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(SAMPLES / "invoice_ruled.pdf", folder / "invoice_ruled.pdf")
    out = tmp_path / "out"
    prefect = str(Path(sys.executable).with_name("prefect"))
    env = os.environ | {"PREFECT_API_URL": prefect_api, "DEPLOY_DOCROUTE_HOME": str(REPO), "DEPLOY_INBOX": str(folder),
                        "DEPLOY_OUT": str(out), "DOCROUTE_WORKERS": "1"}

    def prefect_cli(*args: str, timeout: float = 180, cwd: Path = REPO) -> str:
        proc = subprocess.run([prefect, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout + proc.stderr

    prefect_cli("work-pool", "create", "docs", "--type", "process")
    prefect_cli("--no-prompt", "deploy", "--prefect-file", "deploy/prefect.yaml", "--all")
    with get_client(sync_client=True) as client:
        dep = client.read_deployment_by_name("extract_folder/nightly")
    assert dep.work_pool_name == "docs" and dep.schedules[0].schedule.cron == "0 2 * * *"
    assert dep.parameters == {"input": str(folder), "out": str(out), "settings": {}}
    assert dep.global_concurrency_limit.limit == 1

    with get_client(sync_client=True) as client:
        flow_run = client.create_flow_run_from_deployment(dep.id)
    log = prefect_cli("worker", "start", "--pool", "docs", "--run-once", timeout=300, cwd=tmp_path)
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(flow_run.id).state
    assert state.is_completed(), f"{state}: {log}"
    assert read_tables(out)["documents"]["status"].tolist() == ["ok"]
