from __future__ import annotations

import json
import os
import subprocess
import sys
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


def all_expected() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(SAMPLES.glob("*.expected.json"))]


def realdoc(rel: str) -> Path:
    path = REALDOCS / rel
    if not path.exists():
        pytest.skip(f"{path} is not available (../shared/realdocs is laid beside the checkout)")
    return path


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
