"""Discovery and ingest: which files a run takes, what they are (from their bytes) and their doc_id.

Discovery never hangs and never loops: folders are walked with symbolic links followed but each real
folder entered once (a link back up the tree is a cycle, skipped), and every non-folder entry that
looks like an input is returned, including those that cannot be read (a FIFO, a dangling or looping
link, a socket): :func:`ingest` refuses them with a clear error, so they become failed rows instead of
vanishing or blocking the run. File names that are not valid UTF-8 are kept as bytes on disk and
shown (and written to Parquet) with each undecodable byte as ``\\xNN`` (:func:`display_path`).
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from docroute.extractors.document import DocumentHandle, SourceFile, open_handle

SUPPORTED = {
    "application/pdf": "pdf",
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/tiff": "tiff",
    "application/xml": "xml",  # a CII or UBL invoice only (sniff reads the root element)
}
XML_MIME = "application/xml"
_CHUNK = 1 << 20
# Sidecar files that sit beside documents (ground truth, scripts, notes) are not inputs. This is the
# only name-based rule: every other file's type comes from its bytes.
SIDECAR_SUFFIXES = {".json", ".py", ".md", ".txt", ".csv", ".xml", ".yaml", ".yml", ".toml"}


class InputError(ValueError):
    pass


class NotAFileError(OSError):
    """The path exists but is not a regular file (a FIFO, a socket, a device, a folder)."""


def display_path(path: Path | str) -> str:
    """The path as valid UTF-8 text: undecodable bytes of a file name become ``\\xNN``.

    Linux file names are bytes; Python carries undecodable ones as lone surrogates, which Parquet,
    JSON and terminals reject. Valid UTF-8 names are unchanged. To find the file from a row, compare
    with ``display_path`` of the candidates (or ``os.fsencode(p).decode('utf-8', 'backslashreplace')``).
    """
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def _wanted(name: str, folder: str = "") -> bool:
    """Not hidden, not a sidecar; an ``.xml`` file only when it is a CII or UBL invoice (its root)."""
    if name.startswith("."):
        return False
    suffix = os.path.splitext(name)[1].lower()
    if suffix == ".xml":
        return _xml_invoice(os.path.join(folder, name))
    return suffix not in SIDECAR_SUFFIXES


def _xml_invoice(path: str) -> bool:
    """A regular file whose first bytes open a CII or UBL invoice (never opens a FIFO or a device)."""
    from docroute.extractors.einvoice import sniff_root

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as fh:
            return sniff_root(fh.read(8192)) is not None
    except OSError:
        return False


def _walk(root: Path, exclude: tuple[Path, ...] = ()) -> list[Path]:
    """Every wanted non-folder entry under ``root``: links followed, each real folder entered once."""
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()
    excluded = set()
    for ex in exclude:
        try:
            st = ex.stat()
            excluded.add((st.st_dev, st.st_ino))
        except OSError:
            pass

    def on_error(err: OSError) -> None:  # a folder that cannot be listed is reported, not skipped
        if err.filename is not None and Path(err.filename) != root:
            found.append(Path(err.filename))

    root_real = os.path.realpath(root)
    for current, dirs, files in os.walk(root, followlinks=True, onerror=on_error):
        try:
            st = os.stat(current)
        except OSError:
            dirs[:] = []
            continue
        key = (st.st_dev, st.st_ino)
        real = os.path.realpath(current)
        if key in seen or key in excluded or (current != str(root) and root_real.startswith(real.rstrip("/") + "/")):
            dirs[:] = []  # a symlink cycle, a link to a folder above the input, or the run's own output
            continue
        seen.add(key)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(current, f) for f in files if _wanted(f, current))
    return found


def _component_regex(comp: str) -> str:
    """One path component of a glob: ``*`` and ``?`` never cross a ``/``; ``[..]`` is a class."""
    out, i = [], 0
    while i < len(comp):
        c = comp[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[" and "]" in comp[i + 2:]:  # a class; "]" right after "[" (or "[!") is a member
            j = comp.index("]", i + 2)
            body = comp[i + 1:j]
            body = "^" + body[1:] if body.startswith("!") else body
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def _glob_regex(pattern: str) -> re.Pattern:
    """A glob pattern (``*``, ``?``, ``[..]``, ``**`` for any folders) as a regex over relative paths."""
    regex = ""
    comps = pattern.split("/")
    for n, comp in enumerate(comps):
        last = n == len(comps) - 1
        if comp == "**":
            regex += ".*" if last else "(?:[^/]+/)*"
        else:
            regex += _component_regex(comp) + ("" if last else "/")
    return re.compile(regex + r"\Z", re.S)


def _glob(pattern: str, exclude: tuple[Path, ...] = ()) -> list[Path]:
    """Like ``glob.glob(pattern, recursive=True)`` but over :func:`_walk` (no symlink loops)."""
    parts = Path(pattern).parts
    fixed = 0
    while fixed < len(parts) - 1 and not glob.has_magic(parts[fixed]):
        fixed += 1
    root = Path(*parts[:fixed]) if fixed else Path(".")
    rest = "/".join(parts[fixed:])
    regex = _glob_regex(rest)
    hits = []
    for p in _walk(root, exclude):
        rel = p.relative_to(root).as_posix()
        if regex.match(rel):
            hits.append(p)
    return hits


def discover(input_spec: str, exclude: tuple[Path, ...] = ()) -> list[Path]:
    """A folder (recursive), a glob pattern, or one file; sorted; hidden and sidecar files skipped.

    ``exclude``: folders never entered (the run's output folder when it lies inside the input).
    """
    path = Path(input_spec)
    if path.is_dir():
        return sorted(_walk(path, exclude))
    if path.exists() or path.is_symlink():
        return [path]  # one named input is taken whatever it is; ingest says if it cannot be read
    if glob.has_magic(input_spec):
        hits = _glob(input_spec, exclude)
        if hits:
            return sorted(hits)
    raise InputError(f"input {input_spec!r} is not a file, a folder or a glob that matches anything")


def sniff(head: bytes) -> tuple[str | None, str]:
    """(supported mime type or None, a description of what the bytes are).

    XML is supported only when its root element is a CII or UBL invoice (``application/xml``)."""
    import filetype

    if not head:
        return None, "an empty file"
    if head.lstrip(b"\x00\t\r\n ")[:5] == b"%PDF-" or b"%PDF-" in head[:1024]:
        return "application/pdf", "PDF"
    from docroute.extractors.einvoice import sniff_root

    if syntax := sniff_root(head):
        return "application/xml", {"cii": "a UN/CEFACT CII invoice (XML)", "ubl": "a UBL invoice (XML)"}[syntax]
    kind = filetype.guess(head)
    if kind is None:
        printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in head[:512]) / max(1, len(head[:512]))
        return None, "plain text" if printable > 0.95 else "unknown binary data"
    mime = kind.mime
    return (mime if mime in SUPPORTED else None), f"{kind.extension} ({mime})"


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def check_regular(path: Path) -> os.stat_result:
    """stat ``path`` (following links); raise OSError with a clear reason unless it is a regular file.

    Opening a FIFO would block forever and a device could stream without end, so only regular files
    are ever opened.
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        if path.is_symlink():
            target = display_path(os.readlink(path))
            why = "a symbolic link loop" if exc.errno == 40 else f"a symbolic link to {target!r}, which is missing"
            raise OSError(exc.errno, f"{exc.strerror}: {why}") from exc
        raise
    if not stat.S_ISREG(st.st_mode):
        raise NotAFileError(f"it is {_kind(st.st_mode)}, not a regular file")
    return st


def ingest(path: Path) -> SourceFile:
    """Hash the bytes (doc_id = sha256) and detect the type from them, not from the name.

    A run does this once per file, when it plans; the planned :class:`SourceFile` travels with the
    document to its worker."""
    check_regular(path)
    digest = hashlib.sha256()
    size = 0
    head = b""
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            if not head:
                head = chunk[:8192]
            digest.update(chunk)
            size += len(chunk)
    mime, detected = sniff(head)
    return SourceFile(path=path, doc_id=digest.hexdigest(), size_bytes=size, mime_type=mime, detected=detected)


def unreadable_id(path: Path) -> str:
    """A stable id for a file whose bytes cannot be read at all."""
    absolute = os.path.abspath(path)  # not resolve(): that raises on a symlink loop
    return hashlib.sha256(b"unreadable:" + os.fsencode(absolute)).hexdigest()


@contextmanager
def open_file(path: Path, passwords: Sequence[str] = ()) -> Iterator[DocumentHandle]:
    """Ingest ``path`` and open it once (``inspect``, ``review``'s crops, tests): the pipeline's handle.

    Raises :class:`InputError` for a file that is not a supported document type."""
    src = ingest(Path(path))
    if src.mime_type is None:
        raise InputError(f"{display_path(path)}: not a PDF or image (the bytes look like {src.detected})")
    if src.mime_type == XML_MIME:
        raise InputError(f"{display_path(path)}: {src.detected} has no pages to open (`docroute run` reads it)")
    with open_handle(src, passwords) as handle:
        yield handle
