"""The run state folder: the output's lock and each run's manifest with its commit journal.

The state folder (:func:`state_folder`) is the output folder itself, or, for an object-store output
(``s3://``, ``az://``, ``gs://``), a local folder: ``--state-dir`` / ``state_dir``, else one under the
user cache dir keyed by a hash of the output URI. :func:`output_lock` refuses a second run on the same
state folder while one runs (an ``flock`` on ``STATE/.docroute.lock``, released by the kernel when
its holder dies, however it dies), and :class:`RunManifest` keeps ``STATE/_manifests/<run_id>.json``
(what the run planned, what it committed, whether it finished) with an append-only journal of commits
beside it, so an interrupted run is visible and named by the next one.

The lock is local: it keeps two runs of this machine (sharing a state folder) off one output. It does
not see a run on another machine writing the same URI; what keeps the tables right then is Delta's
optimistic concurrency (see pipelines/sink.py and README "Object stores").
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
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
OUTPUT_FILE = "output.json"  # in a state folder kept apart from its output: which output it serves


class OutputLocked(RuntimeError):
    """Another run holds the output (its state folder)."""


class StateFolderError(ValueError):
    """A state folder that serves another output."""


def is_uri(out: str | Path) -> bool:
    return "://" in str(out)


def cache_dir() -> Path:
    """The user cache dir (``$XDG_CACHE_HOME``, else ``~/.cache``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def state_folder(out: str | Path, state_dir: Path | None = None) -> Path:
    """Where a run on ``out`` keeps its lock, manifests, journals and reports (a local folder).

    ``state_dir`` when given; else the output folder itself; else (an object-store URI) a folder under
    the user cache dir keyed by a hash of the URI, so every run on one URI from this machine shares it.
    """
    if state_dir is not None:
        return Path(state_dir).expanduser()
    if not is_uri(out):
        return Path(out)
    uri = str(out).rstrip("/")
    return cache_dir() / "docroute" / "state" / hashlib.sha256(uri.encode()).hexdigest()[:16]


def claim_state_folder(folder: Path, out: str | Path) -> None:
    """Record in a state folder kept apart from its output which output it serves; refuse one that
    serves another output (its lock and manifests would mix two outputs' runs)."""
    if not is_uri(out) and Path(folder).resolve() == Path(out).resolve():
        return
    target = str(out).rstrip("/") if is_uri(out) else str(Path(out).resolve())
    path = Path(folder) / OUTPUT_FILE
    try:
        recorded = json.loads(path.read_text(encoding="utf-8")).get("output")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if recorded is not None and recorded != target:
        raise StateFolderError(f"state folder {folder} belongs to output {recorded}, not {target}: "
                           "give each output its own --state-dir")
    if recorded is None:
        _write_json({"output": target}, path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def output_lock(out: Path, run_id: str, input_spec: str = "", output: str | None = None) -> Iterator[dict]:
    """Hold ``OUT/.docroute.lock`` (``out``: the state folder) for the run, or raise
    :class:`OutputLocked` naming the holder; ``output`` names the output in the message when the state
    folder is not the output folder.

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
                f"output {output or f'folder {out}'} is in use by another docroute run: run {h.get('run_id', '?')}, "
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
        self.data = {"run_id": self.run_id, "pid": os.getpid(), "host": socket.gethostname(), **info,
                     "state": "running"}
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
