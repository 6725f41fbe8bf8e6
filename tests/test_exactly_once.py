"""Exactly once: a run killed at any moment and rerun leaves each document exactly once in every table,
with nothing lost; two runs on one output are refused; old files stay readable beside new ones; a new
schema version reprocesses only when asked.

Two kinds of kill:
- every write step of the sink, in turn (``test_crash_at_every_sink_step...``): each table's Delta
  commit of each batch (and the un-commit that starts a rewrite), killed before it, mid-way (its data
  file written, the log entry not: what a SIGKILL inside delta-rs leaves) and after it. The sink has no cleanup code (no finally, no
  rollback), so what is on disk is exactly what a SIGKILL at that step leaves;
- SIGKILL of the whole CLI process group at seeded random moments of real runs (startup, planning,
  parsing, writing), each followed by a rerun (``test_sigkill_at_random_moments...``).
What the kill tests measure (inputs, kills, rows lost and duplicated, counted from the output) is
recorded for README "Fault tests" (tests/fault_table.py renders it; the last test here compares).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake

from docroute import PIPELINE_VERSION
from docroute.pipelines import sink as sink_mod
from docroute.pipelines.batch import plan
from docroute.pipelines.process import process_document
from docroute.pipelines.runlog import OutputLocked, RunManifest, output_lock
from docroute.pipelines.settings import Settings
from docroute.pipelines.sink import Committed, DeltaSink, read_table
from docroute.schemas.contract import DOCUMENTS

from conftest import SAMPLES, cli, committed

PART_TABLES = ("pages", "elements", "extractions/invoice")
SINK_STEP_DOCS = ("invoice_two_page.pdf", "broken_empty.pdf")  # two pages with elements; a failed row
SINK_CRASH_POINTS = 52  # 3 phases x 8 table commits of a first write; a --force rewrite adds 2 x 2 un-commits
SIGKILL_TRIALS = 5
SIGKILL_DOCS = 25  # enough that five kills at random moments all land in a live run, however fast it goes


class Killed(BaseException):
    """Stands for SIGKILL: nothing in docroute catches a BaseException that is not an Exception."""


def read(out: Path, table: str) -> list[dict]:
    return read_table(DeltaSink(out, "invoice"), table).to_pylist()


def check_consistent(out: Path, expected: dict[str, tuple[int, int]] | None = None) -> set[str]:
    """What a reader sees between runs: every committed document is complete and appears once.

    Committed = has a documents row. Its part rows all come from the run that committed it, with no
    (doc_id, page) or (doc_id, element) twice; an ok document has n_pages pages and one extraction
    row. ``expected`` (doc_id -> (pages, elements)) checks the counts exactly. Returns the committed ids.
    """
    docs = {d["doc_id"]: d for d in read(out, "documents")}
    assert len(docs) == len(read(out, "documents")), "a document committed twice"
    keys = {"pages": "page_number", "elements": "element_id", "extractions/invoice": None}
    for table, key in keys.items():
        by_doc: dict[str, list[dict]] = {}
        for r in read(out, table):
            by_doc.setdefault(r["doc_id"], []).append(r)
        for doc_id, d in docs.items():
            got = by_doc.get(doc_id, [])
            assert {r["run_id"] for r in got} <= {d["run_id"]}, (table, "a committed row beside parts of another run")
            if key:
                assert len({r[key] for r in got}) == len(got), (table, doc_id, "a row twice")
            if table == "pages" and d["status"] == "ok":
                assert len(got) == d["n_pages"], (doc_id, len(got), d["n_pages"])
            if table == "extractions/invoice":
                assert len(got) == (0 if d["status"] == "failed" else 1), (doc_id, len(got))
            if expected is not None and table != "extractions/invoice":
                want = expected[doc_id][0 if table == "pages" else 1]
                assert len(got) == want, (table, doc_id, len(got), want)
    return set(docs)


def check_exactly_once(out: Path, expected: dict[str, tuple[int, int]] | None, inputs: set[str]) -> None:
    committed = check_consistent(out, expected)
    assert committed == inputs, ("lost", inputs - committed, "extra", committed - inputs)
    for table in PART_TABLES:
        assert {r["doc_id"] for r in read(out, table)} <= committed, (table, "orphan parts")
    assert not list(out.rglob("*.tmp")), "temporary files left"


# --------------------------------------------------------------------------- every sink step
@pytest.fixture(scope="module")
def results():
    return [process_document(SAMPLES / name, Settings(workers=1)) for name in SINK_STEP_DOCS]


def _expected(results) -> dict[str, tuple[int, int]]:
    return {r.document.doc_id: (len(r.pages), sum(len(p.parsed.elements) for p in r.pages)) for r in results}


def _write_all(out: Path, results, run_id: str, crash_at: int | None = None, phase: str = "") -> list[str]:
    """Commit the results like a run does (one batch per document), aborting at table commit ``crash_at``.

    Phases: ``before`` the commit, ``orphan`` (its data file is written, the log entry is not: a kill
    inside delta-rs), ``after`` it. Returns the tables committed, in order.
    """
    steps: list[str] = []
    real, real_uncommit = DeltaSink._commit, DeltaSink._uncommit

    def uncommit(self, predicate):
        n = len(steps)
        steps.append("uncommit")
        if n == crash_at and phase in ("before", "orphan"):
            raise Killed
        real_uncommit(self, predicate)
        if n == crash_at and phase == "after":
            raise Killed

    def commit(self, name, data, predicate, run_id, number):
        n = len(steps)
        steps.append(name)
        if n == crash_at and phase == "before":
            raise Killed
        if n == crash_at and phase == "orphan":
            Path(self.uri(name)).mkdir(parents=True, exist_ok=True)
            pq.write_table(data, Path(self.uri(name)) / "part-00000-killed-c000.snappy.parquet")
            raise Killed
        done = real(self, name, data, predicate, run_id, number)
        if n == crash_at and phase == "after":
            raise Killed
        return done

    DeltaSink._commit, DeltaSink._uncommit = commit, uncommit
    try:
        s = DeltaSink(out, "invoice")
        for number, r in enumerate(results, 1):
            s.commit([s.stage(r, run_id)], run_id, number)
    except Killed:
        pass
    finally:
        DeltaSink._commit, DeltaSink._uncommit = real, real_uncommit
    return steps


def _rerun(out: Path, results, run_id: str) -> None:
    """What the next run does: plan from what is committed, then commit what is not done in one batch."""
    s = DeltaSink(out, "invoice")
    todo = {item.doc_id for name in SINK_STEP_DOCS
            for item in plan(str(SAMPLES / name), s.committed(), pipeline_version=PIPELINE_VERSION,
                             schema_name=s.schema.schema_name, schema_version=s.schema.schema_version).todo}
    s.commit([s.stage(r, run_id) for r in results if r.document.doc_id in todo], run_id, 1)


def test_crash_at_every_sink_step_then_rerun_gives_each_document_once(results, tmp_path, monkeypatch, fault_record):
    import shutil

    expected = _expected(results)
    inputs = set(expected)
    assert len(inputs) == 2
    crash_points = lost = duplicated = 0
    first = _write_all(tmp_path / "count", results, "r1")
    tables = ["elements", "extractions/invoice", "pages", "documents"]
    assert first == tables * 2  # per batch (one document each here): every table, documents last
    base = tmp_path / "committed"
    _write_all(base, results, "r1")
    shutil.copytree(base, tmp_path / "count-force2")
    forced = _write_all(tmp_path / "count-force2", results, "r2")
    assert forced == (["uncommit"] + tables) * 2  # a rewrite un-commits first, then replaces the rows
    for scenario, steps in (("first", first), ("force", forced)):
        for k, kind in enumerate(steps):
            for phase in ("before", "orphan", "after") if kind != "uncommit" else ("before", "after"):
                out = tmp_path / f"{scenario}-{k}-{phase}"
                if scenario == "force":
                    shutil.copytree(base, out)
                _write_all(out, results, "killed", crash_at=k, phase=phase)
                check_consistent(out, expected if scenario == "first" else None)
                _rerun(out, results, "rerun")
                written, twice = committed(out)
                lost, duplicated = lost + len(inputs - written), duplicated + twice
                check_exactly_once(out, expected, inputs)
                crash_points += 1
    fault_record(inputs=len(inputs), kills=crash_points, lost=lost, duplicated=duplicated)
    assert (lost, duplicated) == (0, 0)
    assert crash_points == SINK_CRASH_POINTS


# --------------------------------------------------------------------------- SIGKILL of real runs
def _sigkill_corpus(folder: Path) -> dict[str, int]:
    """SIGKILL_DOCS files with distinct bytes; doc_id -> pages."""
    folder.mkdir()
    sources = ["invoice_ruled.pdf", "invoice_unruled.pdf", "invoice_two_page.pdf", "plain_text.pdf",
               "invoice_photo.png", "broken_empty.pdf"]
    ids = {}
    for i in range(SIGKILL_DOCS):
        name = sources[i % len(sources)]
        data = (SAMPLES / name).read_bytes()
        if data:
            data += f"\n% copy {i}\n".encode()
        elif i >= len(sources):
            continue  # one empty file only (every empty file is the same document)
        (folder / f"{i:02d}_{name}").write_bytes(data)
        ids[hashlib.sha256(data).hexdigest()] = 0
    return ids


def _committed(out: Path) -> int:
    try:
        return DeltaTable(out / "documents").to_pyarrow_dataset().count_rows()
    except Exception:  # not created yet
        return 0


@pytest.mark.slow
def _lock_holder_pid(lock: Path) -> int | None:
    try:
        return json.loads(lock.read_text() or "{}").get("pid")
    except (OSError, ValueError):
        return None


def test_sigkill_at_random_moments_then_rerun(prefect_api, tmp_path, fault_record):
    corpus = tmp_path / "corpus"
    doc_ids = set(_sigkill_corpus(corpus))
    out = tmp_path / "out"
    args = ["run", str(corpus), "--out", str(out), "--workers", "2", "--redact", "all"]
    small_batches = {"DOCROUTE_COMMIT_EVERY_DOCUMENTS": "2"}  # batch boundaries to kill between
    rng = random.Random(20240315)
    kills, mid_run, refused, log = 0, 0, False, []
    for trial in range(SIGKILL_TRIALS):
        before = _committed(out)
        proc = cli(args, api_url=prefect_api, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   start_new_session=True, extra_env=small_batches)
        if trial == 0:
            time.sleep(rng.uniform(0.2, 2.5))  # start-up: imports, lock, Prefect, planning
        else:
            if trial == 1:  # while it runs, a second run on the same output is refused
                lock = out / ".docroute.lock"
                deadline = time.monotonic() + 60
                # the lock file outlives a killed holder: wait until it names this run's pid
                while _lock_holder_pid(lock) != proc.pid and time.monotonic() < deadline:
                    time.sleep(0.02)
                second = cli(args, api_url=prefect_api, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                _, err = second.communicate(timeout=120)
                assert second.returncode == 75, err
                assert "in use by another docroute run" in err and f"pid {proc.pid}" in err, err
                refused = True
            target = before + rng.randint(1, 2)  # some documents in, then a random extra moment
            deadline = time.monotonic() + 120
            while _committed(out) < target and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.4))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        after = _committed(out)
        log.append((trial, before, after, proc.returncode))
        mid_run += 0 < after < len(doc_ids)
        check_consistent(out)
    print("sigkill trials (trial, committed before, after, returncode):", log)
    assert kills == SIGKILL_TRIALS and mid_run >= 2 and refused, log  # every kill hit a live run
    left_running = [p for p in (out / "_manifests").glob("*.json") if json.loads(p.read_text())["state"] == "running"]
    final = cli(args, api_url=prefect_api, timeout=300, extra_env=small_batches)
    assert final.returncode == 0, final.stdout[-2000:] + final.stderr[-2000:]
    written, duplicated = committed(out)
    fault_record(inputs=len(doc_ids), kills=kills, lost=len(doc_ids - written), duplicated=duplicated)
    check_exactly_once(out, None, doc_ids)  # nothing lost, nothing twice
    # the audit trail: killed runs that had written a manifest are marked interrupted, named by the rerun
    states = [RunManifest(out, "x").folder.joinpath(p.name) for p in (out / "_manifests").glob("*.json")]

    manifests = sorted((json.loads(p.read_text()) for p in states), key=lambda m: m["started_at"])
    # the rerun finished; a killed run is interrupted, or finished when the kill came after its last
    # step (while the process was exiting): never left "running"
    assert manifests[-1]["state"] == "finished"
    assert all(m["state"] in ("interrupted", "finished") for m in manifests)
    if left_running:  # a run killed mid-way is named by the run that resumes it
        assert "resumed interrupted run" in final.stdout
    # --redact all ran in every run: the sample invoice's e-mail address never reached the tables
    text = " ".join(r["text"] or "" for r in read(out, "pages"))
    assert "billing@bluefield-example.com" not in text and "[EMAIL]" in text
    assert all(d["redactions"] is not None for d in read(out, "documents") if d["status"] != "failed")


# --------------------------------------------------------------------------- time-based commits
def test_a_finished_document_is_committed_after_commit_every_s_while_the_next_is_still_parsing(tmp_path, monkeypatch):
    """commit_every_s fires on the clock, not only when a document finishes: a real invoice is readable in
    the Delta tables while the run's other document is still being parsed (held here until we looked)."""
    import shutil
    import threading

    from docroute.flows import core

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(SAMPLES / "invoice_ruled.pdf", folder / "a_fast.pdf")
    shutil.copy(SAMPLES / "plain_text.pdf", folder / "b_slow.pdf")
    release, real = threading.Event(), core.process
    fast = process_document(folder / "a_fast.pdf", Settings(workers=1))  # parsed for real, ahead of the run

    def process(item, settings, out, context):
        if item.path.name == "a_fast.pdf":  # done at once: well before commit_every_s
            return core.stage(item.path, fast, context.run_id, settings.schema_name)
        release.wait(300)  # a document that takes long to parse
        return real(item, settings, out, context)

    monkeypatch.setattr(core, "process", process)
    out = tmp_path / "out"
    settings = Settings(workers=2, commit_every_s=3, orchestrator="direct")
    done: dict = {}
    run = threading.Thread(target=lambda: done.update(summary=core.run_extract(str(folder), str(out), settings)))
    run.start()
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while not seen and time.monotonic() < deadline and run.is_alive():
        seen = [d["file_name"] for d in read(out, "documents")] if (out / "documents").exists() else []
        time.sleep(0.2)
    still_parsing = run.is_alive() and not release.is_set()
    release.set()
    run.join(300)
    assert still_parsing and seen == ["a_fast.pdf"], seen
    summary = done["summary"]
    assert summary.totals.documents == 2 and summary.maintenance["batches"] == 2
    assert sorted(d["file_name"] for d in read(out, "documents")) == ["a_fast.pdf", "b_slow.pdf"]
    assert committed(out) == ({d["doc_id"] for d in read(out, "documents")}, 0)


# --------------------------------------------------------------------------- the lock
def test_a_second_run_on_the_same_output_is_refused_with_the_holder(tmp_path):
    with output_lock(tmp_path, "run-A", "/data/in"):
        with pytest.raises(OutputLocked) as err:
            with output_lock(tmp_path, "run-B", "/data/in"):
                pass
        msg = str(err.value)
        assert "run run-A" in msg and f"pid {os.getpid()}" in msg and "started" in msg and "/data/in" in msg
    with output_lock(tmp_path, "run-C") as holder:  # released on exit: free again
        assert holder["previous"] is None


def test_a_lock_left_by_a_killed_run_is_stale_and_taken_over(tmp_path):
    (tmp_path / ".docroute.lock").write_text('{"run_id": "dead-run", "pid": 999999, "host": "h"}')
    with output_lock(tmp_path, "run-D") as holder:
        assert holder["previous"]["run_id"] == "dead-run"


# --------------------------------------------------------------------------- schema evolution
def test_rows_written_before_a_new_column_read_beside_new_ones(results, tmp_path):
    import docroute

    s = DeltaSink(tmp_path, "invoice")
    old = results[1]
    row = sink_mod.document_row(old, "old-run", s.schema)
    old_schema = pa.schema([f for f in DOCUMENTS if f.name != "redactions"])  # the table before it existed
    write_deltalake(tmp_path / "documents", pa.Table.from_pylist(
        [{k: v for k, v in row.items() if k != "redactions"}], schema=old_schema))
    s.write(results[0], "new-run")  # adds the column to the table's schema
    # an extraction table gaining a field: rows written before lack it
    ex = read_table(s, "extractions/invoice")
    newer = ex.append_column("po_number", pa.array(["PO-7"], pa.string())).set_column(
        0, "doc_id", pa.array(["f" * 64], pa.string()))
    write_deltalake(tmp_path / "extractions" / "invoice", newer, mode="append", schema_mode="merge")

    tables = docroute.read(tmp_path)
    assert len(tables["documents"]) == 2 and "redactions" in tables["documents"]
    by_run = tables["documents"].set_index("run_id")["redactions"]
    assert by_run["old-run"] is None  # the row written before the column: null there
    assert tables["extractions/invoice"]["po_number"].isna().sum() == 1
    assert set(s.committed()) == {results[0].document.doc_id, old.document.doc_id}
    s.write(results[0], "again")  # a rewrite still works against the grown schema, replacing the row
    assert sorted(docroute.read(tmp_path)["documents"]["run_id"]) == ["again", "old-run"]


def test_a_new_schema_version_reprocesses_only_when_asked(tmp_path):
    f = tmp_path / "in" / "a.pdf"
    f.parent.mkdir()
    f.write_bytes((SAMPLES / "plain_text.pdf").read_bytes())
    doc_id = hashlib.sha256(f.read_bytes()).hexdigest()
    keys = dict(pipeline_version=PIPELINE_VERSION, schema_name="invoice", schema_version="2")
    older = {doc_id: Committed("ok", PIPELINE_VERSION, "invoice", "1")}
    p = plan(str(f.parent), older, **keys)
    assert (len(p.todo), len(p.skipped), len(p.stale_schema)) == (0, 0, 1)
    p = plan(str(f.parent), older, **keys, reprocess_schema=True)
    assert (len(p.todo), len(p.stale_schema)) == (1, 0)
    other_pipeline = {doc_id: Committed("ok", "0.0.1", "invoice", "2")}
    assert len(plan(str(f.parent), other_pipeline, **keys).todo) == 1
    other_schema = {doc_id: Committed("ok", PIPELINE_VERSION, "table", "1")}
    assert len(plan(str(f.parent), other_schema, **keys).todo) == 1
    same = {doc_id: Committed("ok", PIPELINE_VERSION, "invoice", "2")}
    assert len(plan(str(f.parent), same, **keys).skipped) == 1


def test_stale_schema_documents_are_kept_and_counted_by_the_flow(prefect_api, tmp_path):
    from docroute.flows.extract import run_extract

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.pdf").write_bytes((SAMPLES / "plain_text.pdf").read_bytes())
    out = tmp_path / "out"
    run_extract(str(folder), str(out), Settings(workers=1))
    DeltaTable(out / "documents").update(updates={"schema_version": "'0'"})

    def versions():
        return read(out, "documents")[0]["schema_version"], len(read(out, "documents"))

    summary = run_extract(str(folder), str(out), Settings(workers=1))
    assert summary.totals.stale_schema == 1 and summary.totals.documents == 0
    assert summary.run["counts"]["stale_schema"] == 1
    assert versions() == ("0", 1), "kept as it was"
    summary = run_extract(str(folder), str(out), Settings(workers=1), reprocess_schema=True)
    assert summary.totals.documents == 1
    assert versions()[0] != "0" and versions()[1] == 1


@pytest.mark.after_fault_tests
def test_readme_fault_table_is_what_the_fault_tests_measured(fault_measurements):
    """README "Fault tests" rows are what this session's fault tests measured (they run before this)."""
    import fault_table

    if not fault_measurements:
        pytest.skip("no fault test ran in this session")
    readme = fault_table.README.read_text(encoding="utf-8")
    want = fault_table.with_rows(readme, fault_measurements)
    stale = sorted(set(want.splitlines()) - set(readme.splitlines()))
    assert want == readme, ("README's fault table is not what the fault tests measured; after them run "
                            "`python tests/fault_table.py --write-readme`", stale)


def test_vacuum_removes_only_files_no_version_references(results, tmp_path):
    s = DeltaSink(tmp_path, "invoice")
    s.write(results[0], "r1")
    pages = tmp_path / "pages"
    live = {p.name for p in pages.glob("*.parquet")}
    orphan = pages / "part-00000-killed-c000.snappy.parquet"  # what a writer killed mid-commit leaves
    pq.write_table(read_table(s, "pages"), orphan)
    week_ago = time.time() - 8 * 24 * 3600
    os.utime(orphan, (week_ago, week_ago))
    assert len(read(tmp_path, "pages")) == len(results[0].pages), "the log never names it: readers skip it"
    assert s.vacuum("pages") == 1
    assert not orphan.exists() and {p.name for p in pages.glob("*.parquet")} == live
