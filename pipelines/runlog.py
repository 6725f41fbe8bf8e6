"""The output folder's lock and each run's manifest with its commit journal.

:func:`output_lock` refuses a second run on the same output folder while one runs (an ``flock`` on
``OUT/.docroute.lock``, released by the kernel when its holder dies, however it dies), and
:class:`RunManifest` keeps ``OUT/_manifests/<run_id>.json`` (what the run planned, what it
committed, whether it finished) with an append-only journal of commits beside it, so an interrupted
run is visible and named by the next one.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path


def _write_json(data: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str), encoding="utf-8")
    os.replace(tmp, path)


LOCK_FILE = ".docroute.lock"
MANIFESTS = "_manifests"


class OutputLocked(RuntimeError):
    """Another run holds the output folder."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def output_lock(out: Path, run_id: str, input_spec: str = "") -> Iterator[dict]:
    """Hold ``OUT/.docroute.lock`` for the run, or raise :class:`OutputLocked` naming the holder.

    The lock is an ``flock``: the kernel drops it when the holder exits or is killed, so a lock file
    left by a dead run is stale and simply taken over (the holder it names is reported as
    ``previous``). Yields the holder record written into the file.
    """
    import fcntl

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        with os.fdopen(os.dup(fd), "r", encoding="utf-8", errors="replace") as fh:
            previous_text = fh.read()
        try:
            previous = json.loads(previous_text) if previous_text.strip() else None
        except ValueError:
            previous = None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            h = previous or {}
            where = f"pid {h.get('pid', '?')} on host {h.get('host', '?')}"
            if h.get("host") == socket.gethostname() and isinstance(h.get("pid"), int) and not _pid_alive(h["pid"]):
                where += " (that pid is gone: a child process it started still holds the lock)"
            raise OutputLocked(
                f"output folder {out} is in use by another docroute run: run {h.get('run_id', '?')}, "
                f"{where}, started {h.get('started_at', '?')}, input {h.get('input', '?')!s}. "
                "Two runs must not write one output folder at once: wait for it to finish, or use another --out."
            ) from None
        holder = {"run_id": run_id, "pid": os.getpid(), "host": socket.gethostname(),
                  "started_at": datetime.now(UTC).isoformat(timespec="seconds"), "input": input_spec,
                  "previous": previous}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({k: v for k, v in holder.items() if k != "previous"}).encode(), 0)
        os.fsync(fd)
        try:
            yield holder
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the flock


class RunManifest:
    """``OUT/_manifests/<run_id>.json`` and its journal ``<run_id>.commits.jsonl``.

    The JSON (written atomically) says what the run planned and, once it ends, that it finished and
    what it committed. The journal gets one line per committed document as it is committed
    (appended, flushed), so a run killed at any moment still tells what it had done. A manifest still
    in state ``running`` when the next run takes the lock belongs to an interrupted run.
    """

    def __init__(self, out: Path, run_id: str):
        self.folder = Path(out) / MANIFESTS
        self.run_id = run_id
        self.path = self.folder / f"{run_id}.json"
        self.journal = self.folder / f"{run_id}.commits.jsonl"
        self._lock = threading.Lock()
        self.data: dict = {}

    def start(self, **info) -> None:
        self.data = {"run_id": self.run_id, "state": "running", "pid": os.getpid(), "host": socket.gethostname(),
                     **info}
        _write_json(self.data, self.path)

    def commit(self, doc_id: str, status: str, **info) -> None:
        line = json.dumps({"doc_id": doc_id, "status": status, "at": datetime.now(UTC).isoformat(), **info}) + "\n"
        with self._lock, open(self.journal, "a", encoding="utf-8") as fh:
            fh.write(line)

    def finish(self, **info) -> None:
        committed = read_journal(self.journal)
        self.data |= {"state": "finished", "committed": len(committed), **info}
        _write_json(self.data, self.path)

    @staticmethod
    def interrupted(out: Path) -> list[dict]:
        """Manifests of runs that never finished (killed, crashed), oldest first; marks them so."""
        found = []
        for path in sorted((Path(out) / MANIFESTS).glob("*.json")):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if data.get("state") != "running":
                continue
            committed = read_journal(path.with_name(f"{data.get('run_id', path.stem)}.commits.jsonl"))
            data |= {"state": "interrupted", "committed": len(committed)}
            _write_json(data, path)
            found.append({"run_id": data.get("run_id"), "planned": len(data.get("planned", ())),
                          "committed": len(committed), "started_at": data.get("started_at")})
        return found


def read_journal(path: Path) -> dict[str, str]:
    """doc_id -> status from a commits journal; a torn last line (a kill mid-write) is ignored."""
    out: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            rec = json.loads(line)
            out[rec["doc_id"]] = rec["status"]
        except (ValueError, KeyError, TypeError):
            continue
    return out
