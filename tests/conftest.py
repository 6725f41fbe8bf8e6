from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

os.environ.setdefault("OMP_THREAD_LIMIT", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
from docroute.flows import prefect_env  # noqa: E402

prefect_env.apply()

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_docs"
REALDOCS = REPO.parent / "shared" / "realdocs"


def expected(name: str) -> dict:
    return json.loads((SAMPLES / f"{Path(name).stem}.expected.json").read_text())


def all_expected(recursive: bool = False) -> list[dict]:
    """The expected records of sample_docs/; ``recursive`` adds sample_docs/other/ (the non-invoice kinds,
    which a run over the folder reads too: discovery is recursive)."""
    found = SAMPLES.rglob("*.expected.json") if recursive else SAMPLES.glob("*.expected.json")
    return [json.loads(p.read_text()) for p in sorted(found)]


def realdoc(rel: str) -> Path:
    path = REALDOCS / rel
    if not path.exists():
        pytest.skip(f"{path} is not available (../shared/realdocs is laid beside the checkout)")
    return path


@pytest.fixture(scope="session")
def realdocs_results():
    """``results(files)``: the DocumentResults of realdocs files (paths relative to realdocs), each file
    through the whole pipeline once per session (``bench/realdocs_split.run_document``: process_document,
    default settings) in two spawned processes, remembered for the next test that asks. The receipts,
    document-type and calibration tests score the same test-half documents: OCR reads each once."""
    if not REALDOCS.exists():
        pytest.skip("../shared/realdocs is not laid beside the checkout")
    from multiprocessing import get_context

    if str(REPO / "bench") not in sys.path:
        sys.path.insert(0, str(REPO / "bench"))  # the workers import it by name too
    from realdocs_split import run_document

    done: dict = {}

    def results(files: list[str]) -> list:
        todo = [f for f in dict.fromkeys(files) if f not in done]
        if todo:
            with get_context("spawn").Pool(min(2, len(todo))) as pool:
                done.update(zip(todo, pool.imap(run_document, todo, chunksize=1), strict=True))
        return [done[f] for f in files]

    return results


def journal(out: Path) -> list[dict]:
    """Every commit line of every run's journal under ``out/_manifests``, oldest run first."""
    lines = []
    for path in sorted((out / "_manifests").glob("*.commits.jsonl")):
        lines += [json.loads(line) for line in path.read_text().splitlines()]
    return lines


@pytest.fixture(scope="session")
def prefect_api():
    """One Prefect test server for the whole session (its start costs about 12 s)."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()


def cli(args: list[str], *, api_url: str, cwd: Path | None = None, timeout: float = 600,
        extra_env: dict[str, str] | None = None, **popen):
    """Run the real console script in a subprocess against the session's Prefect server."""
    env = os.environ | {"PREFECT_API_URL": api_url, "COLUMNS": "200"} | (extra_env or {})
    cmd = [str(Path(sys.executable).with_name("docroute")), *args]
    if popen:
        return subprocess.Popen(cmd, env=env, cwd=cwd, **popen)
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def sample_run(prefect_api, tmp_path_factory):
    """The CLI run over sample_docs/ once for the session: (output folder, completed process)."""
    out = tmp_path_factory.mktemp("sample_run") / "out"
    proc = cli(["run", str(SAMPLES), "--out", str(out), "--workers", "2"], api_url=prefect_api)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, proc


def file_permissions_apply(cmd: list[str]) -> list[str]:
    """``cmd`` as a process that file permissions apply to, as they do to a normal user.

    Run as root (CI is), a process reads every file, so a permission case would test nothing. Then the
    command keeps uid 0 but loses, from its bounding set too, the two capabilities that bypass the
    permission checks (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH): a ``chmod 000`` file is unreadable to it.
    (Switching to ``nobody`` is no way here: the venv's interpreter is under root's 0700 home.)
    """
    if os.geteuid() != 0:
        return cmd
    if shutil.which("setpriv") is None:
        pytest.skip("running as root, and setpriv (util-linux) is not there to drop root's file capabilities")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}", *cmd]


# --------------------------------------------------------------------------- README "Fault tests"
PART_KEYS = {"documents": ("doc_id",), "pages": ("doc_id", "page_number"), "elements": ("doc_id", "element_id")}


def committed(out: Path) -> tuple[set[str], int]:
    """What an output folder holds, counted from its doc_ids: the doc_ids with a documents row, and
    the rows duplicated (rows beyond one per doc_id in documents, per (doc_id, page_number) in pages,
    per (doc_id, element_id) in elements)."""
    from docroute.pipelines.sink import DeltaSink, read_table

    ids: set[str] = set()
    duplicated = 0
    for table, key in PART_KEYS.items():
        seen = Counter()
        t = read_table(DeltaSink(out, "invoice"), table, list(key))
        seen.update(zip(*(t[k].to_pylist() for k in key), strict=True))
        duplicated += sum(seen.values()) - len(seen)
        if table == "documents":
            ids = {k[0] for k in seen}
    return ids, duplicated


def pytest_configure(config):
    config.addinivalue_line("markers", "after_fault_tests: runs after every other test of the session")


def pytest_collection_modifyitems(items):
    """The README fault-table check reads what the session's fault tests measured: it runs last."""
    last = [i for i in items if i.get_closest_marker("after_fault_tests")]
    items[:] = [i for i in items if i not in last] + last


@pytest.fixture(scope="session")
def fault_measurements():
    """What this session's fault tests measured (test name -> counts); saved for tests/fault_table.py
    when the session ends."""
    import fault_table

    measured: dict[str, dict] = {}
    yield measured
    if measured:
        fault_table.save(measured)


@pytest.fixture
def fault_record(request, fault_measurements):
    """``fault_record(inputs=, lost=, duplicated=, kills=, poppler_pages=)``: this test's row of README
    "Fault tests", as measured. ``kills`` is None for a test that kills nothing; ``poppler_pages`` (pages
    MuPDF failed on that poppler read) is None for a test that does not count them."""

    def record(*, inputs: int, lost: int, duplicated: int, kills: int | None = None,
               poppler_pages: int | None = None) -> None:
        fault_measurements[request.node.originalname] = {
            "inputs": inputs, "kills": kills, "lost": lost, "duplicated": duplicated, "poppler_pages": poppler_pages}

    return record
