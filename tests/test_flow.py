"""The Prefect flow itself, in process under the session's test harness: one task per document."""

from __future__ import annotations

import shutil

from docroute.pipelines.settings import Settings

from conftest import SAMPLES


def test_flow_runs_one_task_per_document_and_records_the_run(prefect_api, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from docroute.flows.extract import run_extract

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("invoice_ruled.pdf", "invoice_unruled.pdf", "broken_empty.pdf"):
        shutil.copy(SAMPLES / name, folder / name)
    summary = run_extract(str(folder), str(tmp_path / "out"), Settings(workers=2))
    totals = summary.totals
    assert (totals.documents, totals.ok, totals.failed) == (3, 2, 1)
    assert summary.run["counts"]["pages"] == 2

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(limit=50)
        flow_run = max((r for r in runs if r.name and r.state and r.state.is_completed()),
                       key=lambda r: r.start_time or r.created)
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])))
    names = [t.name for t in tasks]
    assert len(names) == 3 and all(n.startswith("process-document") for n in names)
    assert all(t.state.is_completed() for t in tasks), "a bad document is a failed row, not a failed task"
    assert summary.orchestrator.startswith("prefect") and summary.run["config"]["orchestrator"] == summary.orchestrator


def test_without_a_prefect_api_the_same_run_goes_direct_in_batches(tmp_path):
    """No Prefect API: the run body runs on a thread pool, starts no server and writes the same rows;
    documents are committed in batches of commit_every_documents (the journal names each batch), and
    a table with more live files than compact_files is compacted at the end."""
    import json
    import subprocess
    import sys

    from docroute.pipelines.sink import DeltaSink, read_table

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("invoice_ruled.pdf", "invoice_unruled.pdf", "invoice_two_page.pdf", "broken_empty.pdf",
                 "plain_text.pdf"):
        shutil.copy(SAMPLES / name, folder / name)
    out = tmp_path / "out"
    code = ("import json, sys; from docroute.flows.core import run_extract; from docroute.pipelines.settings import "
            "Settings; s = run_extract(sys.argv[1], sys.argv[2], Settings(workers=2, commit_every_documents=2, "
            "compact_files=2)); print(json.dumps([s.orchestrator, s.totals.documents, 'prefect' in sys.modules, "
            "s.maintenance]))")
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("PREFECT_API")}
    proc = subprocess.run([sys.executable, "-c", code, str(folder), str(out)], capture_output=True, text=True,
                          env=env | {"PREFECT_HOME": str(tmp_path / "prefect-home")}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    orchestrator, documents, prefect_loaded, maintenance = json.loads(proc.stdout.strip().splitlines()[-1])
    assert orchestrator.startswith("direct") and documents == 5 and not prefect_loaded
    docs = read_table(DeltaSink(out, "invoice"), "documents").to_pylist()
    assert sorted(d["file_name"] for d in docs) == sorted(p.name for p in folder.iterdir())
    batches = [json.loads(line)["batch"] for p in (out / "_manifests").glob("*.commits.jsonl")
               for line in p.read_text().splitlines()]
    assert sorted(batches) == [1, 1, 2, 2, 3], "five documents in batches of two, the rest at the end"
    # three batches made three files per table, past compact_files=2: the run compacted them
    sink = DeltaSink(out, "invoice")
    assert maintenance["batches"] == 3 and maintenance["compacted_tables"] == 4, maintenance
    assert {n: sink.live_files(n) for n in ("documents", "pages", "elements", "extractions/invoice")} == dict.fromkeys(
        ("documents", "pages", "elements", "extractions/invoice"), 1)
