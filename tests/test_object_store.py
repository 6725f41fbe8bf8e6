"""An object-store output: ``docroute run IN --out s3://bucket/prefix`` against a real S3 API, offline.

The S3 server is moto's (``moto[server]``, a dev dependency) on localhost, spoken to over HTTP by
delta-rs exactly as it speaks to AWS (``AWS_ENDPOINT_URL``, ``AWS_ALLOW_HTTP``: deltalake's own
environment). The tables go to the bucket; the run state (lock, manifests, journals, report) goes to a
local folder under the user cache dir keyed by the URI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from hashlib import sha256
from pathlib import Path

import pytest

from docroute.pipelines.process import process_document
from docroute.pipelines.runlog import output_lock, state_folder
from docroute.pipelines.settings import Settings
from docroute.pipelines.sink import DeltaSink, read_table

from conftest import SAMPLES, committed, expected

moto_server = pytest.importorskip("moto.server", reason="moto[server] (the dev extra) runs the local S3 API")
BUCKET = "docroute-test"
DOCS = ("invoice_ruled.pdf", "invoice_two_page.pdf")


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A local S3 API with one bucket; yields the environment that points deltalake (and docroute) at it."""
    import logging

    import boto3

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ALLOW_HTTP": "true",
           "XDG_CACHE_HOME": str(tmp_path_factory.mktemp("cache"))}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the in-process readers below find the bucket the way the CLI does
    boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"]).create_bucket(Bucket=BUCKET)
    try:
        yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


def docroute(args: list[str], env: dict[str, str | None], cwd: Path) -> subprocess.CompletedProcess:
    """The console script without a Prefect API (the direct orchestrator), against the local S3 API
    (``env``: variables to set; None: to unset)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "DOCROUTE_"))}
    environ = {k: v for k, v in (environ | env).items() if v is not None} | {"COLUMNS": "250"}
    return subprocess.run([str(Path(sys.executable).with_name("docroute")), *args], env=environ, cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def folder_of(tmp_path: Path, names=DOCS) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in names:
        shutil.copy(SAMPLES / name, folder / name)
    return folder


def test_a_run_into_s3_twice_leaves_each_document_once_and_sql_reads_it(s3, tmp_path):
    uri = f"s3://{BUCKET}/runs/a"
    folder = folder_of(tmp_path)
    ids = {sha256((folder / n).read_bytes()).hexdigest() for n in DOCS}
    first = docroute(["run", str(folder), "--out", uri, "--workers", "2"], s3, tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    state = state_folder(uri)
    assert state.is_relative_to(Path(s3["XDG_CACHE_HOME"]) / "docroute" / "state")
    assert f"run state (lock, manifests, journals, reports): {state}" in first.stdout
    assert not (tmp_path / "s3:").exists(), "the URI was taken for a local path"

    # the same URI (a trailing slash), the endpoint and a credential given only as docroute storage options
    secret = "s3cr3t-never-recorded"
    options = {"AWS_ENDPOINT_URL": s3["AWS_ENDPOINT_URL"], "AWS_ALLOW_HTTP": "true", "AWS_SECRET_ACCESS_KEY": secret}
    env = {k: v for k, v in s3.items() if k not in ("AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP")}
    env |= {"DOCROUTE_STORAGE_OPTIONS": json.dumps(options), "AWS_ENDPOINT_URL": None, "AWS_ALLOW_HTTP": None}
    again = docroute(["run", str(folder), "--out", f"{uri}/", "--workers", "2"], env, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    runs = read_table(DeltaSink(uri, "invoice"), "runs").to_pylist()
    assert len(runs) == 2
    counts = [dict(r["counts"]) for r in sorted(runs, key=lambda r: r["started_at"])]
    assert (counts[0]["documents"], counts[1]["documents"], counts[1]["skipped"]) == (2, 0, 2)
    assert {r["output"] for r in runs} == {uri}
    configs = [json.loads(r["config"]) for r in sorted(runs, key=lambda r: r["started_at"])]
    assert configs[1]["storage_options"] == dict.fromkeys(options, "***"), "credentials are not recorded"

    forced = docroute(["run", str(folder), "--out", uri, "--workers", "2", "--force"], s3, tmp_path)
    assert forced.returncode == 0, forced.stderr[-3000:]
    written, duplicated = committed(uri)
    assert (written, duplicated) == (ids, 0), "each document once in documents, pages and elements"
    sink = DeltaSink(uri, "invoice")
    pages = read_table(sink, "pages", ["doc_id", "run_id"]).to_pylist()
    assert len(pages) == 1 + 2 and len({r["run_id"] for r in pages}) == 1, "the forced run replaced them"
    assert sorted(read_table(sink, "extractions/invoice", ["doc_id"])["doc_id"].to_pylist()) == sorted(ids)

    # the run state is local: three manifests, all finished, each run's report beside them
    manifests = [json.loads(p.read_text()) for p in (state / "_manifests").glob("*.json")]
    assert len(manifests) == 3 and {m["state"] for m in manifests} == {"finished"}
    assert {m["output"] for m in manifests} == {uri}
    assert len(list((state / "reports").glob("*.html"))) == 3
    assert not any(secret in p.read_text() for p in state.rglob("*") if p.is_file()), "a credential recorded"

    sql = docroute(["sql", uri, "SELECT file_name, invoice_number FROM invoice ORDER BY file_name",
                    "--format", "json"], s3, tmp_path)
    assert sql.returncode == 0, sql.stderr[-3000:]
    got = {r["file_name"]: r["invoice_number"] for r in json.loads(sql.stdout)}
    assert got == {n: expected(n)["invoice"]["invoice_number"] for n in DOCS}

    import docroute as api

    tables = api.read(uri, {"AWS_ENDPOINT_URL": s3["AWS_ENDPOINT_URL"], "AWS_ALLOW_HTTP": "true"})
    assert sorted(tables["documents"]["file_name"]) == sorted(DOCS) and len(tables["pages"]) == 3

    compact = docroute(["compact", uri], s3, tmp_path)  # takes the same local lock, merges the files
    assert compact.returncode == 0, compact.stderr[-3000:]
    assert "runs: 3 -> 1 live file(s)" in compact.stdout, compact.stdout  # one row per run, merged
    assert committed(uri) == (ids, 0)


def test_a_second_run_on_the_same_uri_from_this_machine_is_refused(s3, tmp_path):
    uri = f"s3://{BUCKET}/runs/locked"
    folder = folder_of(tmp_path, DOCS[:1])
    with output_lock(state_folder(uri), "holder-run", "elsewhere", output=uri):
        refused = docroute(["run", str(folder), "--out", uri], s3, tmp_path)
    assert refused.returncode == 75, refused.stderr[-2000:]
    assert f"output {uri} is in use" in refused.stderr and "holder-run" in refused.stderr
    assert committed(uri) == (set(), 0), "nothing was written"
    # its own --state-dir is another lock; a state folder serving another output is refused
    other = docroute(["run", str(folder), "--out", f"s3://{BUCKET}/runs/other", "--state-dir",
                      str(state_folder(uri))], s3, tmp_path)
    assert other.returncode == 2 and "belongs to output" in other.stderr, other.stderr[-2000:]


@pytest.fixture(scope="module")
def results():
    return [process_document(SAMPLES / name, Settings(workers=1)) for name in DOCS]


def test_a_killed_batch_rerun_on_s3_leaves_each_document_once(s3, results):
    """The crash points of the sink (tests/test_exactly_once.py) against S3: before and after each table
    commit of a two-document run (one batch each), then the next run's plan and commit."""
    from test_exactly_once import _expected, _write_all, check_consistent

    want = _expected(results)
    steps = _write_all(f"s3://{BUCKET}/kill/count", results, "r1")
    assert steps == ["elements", "extractions/invoice", "pages", "documents"] * 2
    points = 0
    for k in range(len(steps)):
        for phase in ("before", "after"):
            uri = f"s3://{BUCKET}/kill/{k}-{phase}"
            _write_all(uri, results, "killed", crash_at=k, phase=phase)
            check_consistent(uri, want)
            sink = DeltaSink(uri, "invoice")
            done = set(sink.committed())
            todo = [r for r in results if r.document.doc_id not in done]
            sink.commit([sink.stage(r, "rerun") for r in todo], "rerun", 1)
            assert check_consistent(uri, want) == set(want)
            assert committed(uri) == (set(want), 0)
            points += 1
    assert points == 16


def test_a_replayed_batch_changes_nothing_on_s3(s3, results):
    uri = f"s3://{BUCKET}/replay"
    sink = DeltaSink(uri, "invoice")
    batch = [sink.stage(r, "run-1") for r in results]
    assert sink.commit(batch, "run-1", 1)
    versions = {n: sink.table(n).version() for n in ("documents", "pages", "elements")}
    again = DeltaSink(uri, "invoice")  # a retry from a fresh process: only the Delta log remembers
    assert again.commit(batch, "run-1", 1) == []
    assert {n: again.table(n).version() for n in versions} == versions
    assert committed(uri) == ({r.document.doc_id for r in results}, 0)


def test_a_writer_that_lost_the_race_commits_the_next_version_on_s3(s3):
    """What the README's concurrency note rests on: on this S3 API delta-rs commits with put-if-absent
    (no locking provider, no unsafe rename), so a writer holding a stale version retries, never overwrites."""
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    uri = f"s3://{BUCKET}/race"
    write_deltalake(uri, pa.table({"x": [0]}))
    first, stale = DeltaTable(uri), DeltaTable(uri)
    write_deltalake(first, pa.table({"x": [1]}), mode="append")
    write_deltalake(stale, pa.table({"x": [2]}), mode="append")  # its version 1 is taken: it commits 2
    dt = DeltaTable(uri)
    assert dt.version() == 2 and sorted(dt.to_pyarrow_dataset().to_table()["x"].to_pylist()) == [0, 1, 2]


def test_a_run_into_s3_killed_mid_way_then_rerun_leaves_each_document_once(s3, tmp_path):
    """SIGKILL of the whole CLI once some batches are in the bucket; the rerun names the interrupted run
    (from the local state folder) and finishes: every document once, nothing lost."""
    import signal
    import time

    uri = f"s3://{BUCKET}/killed"
    names = ("invoice_ruled.pdf", "invoice_unruled.pdf", "invoice_two_page.pdf", "plain_text.pdf", "complex_table.pdf")
    folder = folder_of(tmp_path, names)
    ids = {sha256((folder / n).read_bytes()).hexdigest() for n in names}
    env = s3 | {"DOCROUTE_COMMIT_EVERY_DOCUMENTS": "1"}  # a batch per document: boundaries to kill between
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "DOCROUTE_"))} | env
    proc = subprocess.Popen([str(Path(sys.executable).with_name("docroute")), "run", str(folder), "--out", uri,
                             "--workers", "1"], env=environ, cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and len(committed(uri)[0]) < 2:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before, duplicated = committed(uri)
    assert 2 <= len(before) < len(ids) and duplicated == 0, (len(before), duplicated)
    rerun = docroute(["run", str(folder), "--out", uri, "--workers", "1"], env, tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resumed interrupted run" in rerun.stdout, rerun.stdout[-3000:]
    assert committed(uri) == (ids, 0)
    from test_exactly_once import check_consistent

    assert check_consistent(uri) == ids  # each one whole: its pages, elements and extraction from one run
