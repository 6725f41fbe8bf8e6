"""``--runner dask``: documents run as Prefect tasks on the worker processes of a real Dask cluster.

A LocalCluster of two worker processes (what ``--runner dask`` starts without ``--address``) and a
cluster the test starts and names with ``--address``. Worker processes are other processes, so they
must report to the session's Prefect server (not start embedded ones of their own): the test reads
their task runs back from it. Each Dask worker parses documents in a worker process of its own pool,
so the document timeout holds on the cluster too.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from docroute.pipelines.settings import Settings
from docroute.pipelines.sink import read_tables

from conftest import SAMPLES, cli, journal

pytestmark = [pytest.mark.prefect, pytest.mark.slow]

FILES = ("invoice_ruled.pdf", "invoice_photo.png", "chart.pdf", "complex_table.pdf", "invoice_two_page.pdf",
         "broken_empty.pdf")


def _task_runs(run_id: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        flow_runs = [r for r in client.read_flow_runs(limit=200) if (r.parameters or {}).get("run_id") == run_id]
        assert len(flow_runs) == 1, f"the flow run of {run_id} is recorded once in the shared API"
        return client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_runs[0].id])))


def test_local_cluster_of_two_workers_gives_the_thread_runners_results(prefect_api, sample_run, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in FILES:
        shutil.copy(SAMPLES / name, folder / name)
    out = tmp_path / "out"
    proc = cli(["run", str(folder), "--out", str(out), "--runner", "dask", "--workers", "2"], api_url=prefect_api,
               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    assert "documents processed" in output and "broken_empty.pdf: the file is empty" in output

    # the same rows as the thread runner's run over sample_docs (the session's sample_run)
    dask_docs = read_tables(out)["documents"].set_index("file_name")
    thread_docs = read_tables(sample_run[0])["documents"].set_index("file_name").loc[list(FILES)]
    assert dask_docs.loc[list(FILES), "status"].to_dict() == thread_docs["status"].to_dict()
    cols = ["invoice_number", "total", "currency", "needs_review"]
    dask_inv = read_tables(out)["extractions/invoice"].set_index("file_name")[cols].sort_index()
    thread_inv = read_tables(sample_run[0])["extractions/invoice"].set_index("file_name")[cols]
    assert dask_inv.equals(thread_inv.loc[dask_inv.index])

    # two Dask worker processes did the work, not the CLI's process, and the journal says which
    commits = journal(out)
    workers = {rec["worker"] for rec in commits}
    assert len(commits) == len(FILES) and len({r["doc_id"] for r in commits}) == len(FILES)
    assert len(workers) == 2 and not any(w.endswith(f":{proc.pid}") for w in workers), workers
    run_id = read_tables(out)["runs"]["run_id"].iloc[0]
    manifest = json.loads((out / "_manifests" / f"{run_id}.json").read_text())
    assert manifest["runner"] == "dask" and manifest["state"] == "finished"

    # every task reported to the session's Prefect server (a worker with an embedded server of its own
    # would have recorded its task runs elsewhere)
    tasks = _task_runs(run_id)
    assert len(tasks) == len(FILES) and all(t.state.is_completed() for t in tasks)


def test_address_of_a_running_cluster_and_the_document_timeout_on_its_workers(prefect_api, tmp_path):
    import dask
    from distributed import Client, LocalCluster

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("invoice_scanned.pdf", "invoice_photo.png"):  # OCR: well over half a second each
        shutil.copy(SAMPLES / name, folder / name)
    out = tmp_path / "out"
    with dask.config.set({"distributed.worker.daemon": False}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        pids = set(client.run(lambda: __import__("os").getpid()).values())
        args = ["run", str(folder), "--out", str(out), "--runner", "dask", "--address", cluster.scheduler_address]

        proc = cli(args, api_url=prefect_api, extra_env={"DOCROUTE_DOCUMENT_TIMEOUT_S": "0.5"})
        assert proc.returncode == 0, proc.stdout + proc.stderr
        docs = read_tables(out)["documents"]
        assert (docs["status"] == "failed").all()
        assert docs["error"].str.contains("timed out after 0.5 s").all(), docs["error"].tolist()
        # the tasks ran on the addressed cluster's workers, and those workers survived the timeouts
        assert {int(r["worker"].rsplit(":", 1)[1]) for r in journal(out)} <= pids
        assert set(client.run(lambda: __import__("os").getpid()).values()) == pids

        proc = cli([*args, "--retry-failed"], api_url=prefect_api)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        docs = read_tables(out)["documents"]
        assert set(docs["status"]) <= {"ok", "partial"} and len(docs) == 2, docs[["file_name", "status", "error"]]


def test_a_cluster_on_another_host_needs_a_prefect_server_it_can_reach(monkeypatch):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from docroute.flows.runners import RunnerError, is_local, prefect_api_for

    assert is_local("tcp://127.0.0.1:8786") and is_local("tcp://localhost:8786")
    assert not is_local("tcp://192.0.2.10:8786")  # TEST-NET-1: never this machine
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    settings = Settings(runner="dask", dask_address="tcp://192.0.2.10:8786")
    with temporary_settings(restore_defaults={PREFECT_API_URL}), pytest.raises(RunnerError, match="PREFECT_API_URL"):
        with prefect_api_for(settings):
            pass


def test_address_without_the_dask_runner_is_refused(prefect_api, tmp_path):
    proc = cli(["run", str(SAMPLES), "--out", str(tmp_path / "out"), "--address", "tcp://127.0.0.1:8786"],
               api_url=prefect_api, timeout=120)
    assert proc.returncode == 2 and "use runner 'dask'" in proc.stderr


def test_without_a_configured_api_the_run_starts_one_its_workers_share(tmp_path):
    """The default set-up (no PREFECT_API_URL): the run starts Prefect's local server process and the
    LocalCluster's workers report to it."""
    import os
    import sys
    from pathlib import Path

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("invoice_ruled.pdf", "invoice_unruled.pdf"):
        shutil.copy(SAMPLES / name, folder / name)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {"PREFECT_HOME": str(tmp_path / "ph")}
    proc = subprocess.run([str(Path(sys.executable).with_name("docroute")), "run", str(folder), "--out", str(out),
                           "--runner", "dask", "--workers", "2"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert set(read_tables(out)["documents"]["status"]) == {"ok"}
    db = tmp_path / "ph" / "prefect.db"
    assert db.exists(), "the run's Prefect server kept its records in this PREFECT_HOME"


def test_a_flow_run_on_threads_whose_settings_ask_for_dask_does_its_work_on_dask(prefect_api, tmp_path):
    """A deployment run (served, or from a prefect.yaml) starts on Prefect's default thread runner: with
    settings ``{"runner": "dask"}`` its documents must still go to Dask workers."""
    import os

    from docroute.flows.extract import extract_folder

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("invoice_ruled.pdf", "invoice_unruled.pdf"):
        shutil.copy(SAMPLES / name, folder / name)
    out = tmp_path / "out"
    result = extract_folder(str(folder), str(out), {"runner": "dask", "workers": 2})
    assert result.totals.ok == 2
    workers = {r["worker"] for r in journal(out)}
    assert workers and not any(w.endswith(f":{os.getpid()}") for w in workers), workers
    manifest = json.loads((out / "_manifests" / f"{result.run_id}.json").read_text())
    assert manifest["runner"] == "dask"
