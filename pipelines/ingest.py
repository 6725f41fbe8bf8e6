"""Discovery and ingest: which files a run takes, what they are (from their bytes) and their doc_id."""

from __future__ import annotations

import glob
import hashlib
from dataclasses import dataclass
from pathlib import Path

SUPPORTED = {
    "application/pdf": "pdf",
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/tiff": "tiff",
}
_CHUNK = 1 << 20
# Sidecar files that sit beside documents (ground truth, scripts, notes) are not inputs. This is the
# only name-based rule: every other file's type comes from its bytes.
SIDECAR_SUFFIXES = {".json", ".py", ".md", ".txt", ".csv", ".xml", ".yaml", ".yml", ".toml"}


class InputError(ValueError):
    pass


@dataclass(frozen=True)
class SourceFile:
    path: Path
    doc_id: str
    size_bytes: int
    mime_type: str | None  # None: not a supported type (the error says what it looks like)
    detected: str  # what the bytes look like, for error messages


def discover(input_spec: str) -> list[Path]:
    """A folder (recursive), a glob pattern, or one file; sorted, hidden files skipped."""
    path = Path(input_spec)
    if path.is_file():
        return [path]
    if path.is_dir():
        candidates = (p for p in path.rglob("*") if p.is_file())
    elif glob.has_magic(input_spec):
        candidates = (Path(p) for p in glob.glob(input_spec, recursive=True) if Path(p).is_file())
    else:
        raise InputError(f"input {input_spec!r} is not a file, a folder or a glob that matches anything")
    return sorted(p for p in candidates if not p.name.startswith(".") and p.suffix.lower() not in SIDECAR_SUFFIXES)


def sniff(head: bytes) -> tuple[str | None, str]:
    """(supported mime type or None, a description of what the bytes are)."""
    import filetype

    if not head:
        return None, "an empty file"
    if head.lstrip(b"\x00\t\r\n ")[:5] == b"%PDF-" or b"%PDF-" in head[:1024]:
        return "application/pdf", "PDF"
    kind = filetype.guess(head)
    if kind is None:
        printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in head[:512]) / max(1, len(head[:512]))
        return None, "plain text" if printable > 0.95 else "unknown binary data"
    mime = kind.mime
    return (mime if mime in SUPPORTED else None), f"{kind.extension} ({mime})"


def ingest(path: Path) -> SourceFile:
    """Hash the bytes (doc_id = sha256) and detect the type from them, not from the name."""
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
    return hashlib.sha256(b"unreadable:" + str(path.resolve()).encode("utf-8", "surrogateescape")).hexdigest()
