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
