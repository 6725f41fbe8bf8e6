"""The tuning and test halves of ../shared/realdocs, fixed by file hash.

A document's half is decided by the sha256 of its bytes: even -> ``tune``, odd -> ``test``. Files that
are one document in two forms (``invoice2data/oyo.pdf`` and ``oyo.png``: same folder, same stem) share
the half of the first of them by name, so nothing tuned on a PDF is scored on its picture. Thresholds,
lexicon entries and expectations may be tuned on the tuning half only; results are reported on both.
``python bench/realdocs_split.py --write`` writes the split down in tests/realdocs_split.json, which a
test checks against the rule.
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REALDOCS = REPO.parent / "shared" / "realdocs"
SPLIT = REPO / "tests" / "realdocs_split.json"


def half(path: Path) -> str:
    return "tune" if int(hashlib.sha256(Path(path).read_bytes()).hexdigest(), 16) % 2 == 0 else "test"


def documents() -> list[dict]:
    """index.csv's rows (file, source, kind, ...) of the documents that are present."""
    with (REALDOCS / "index.csv").open(encoding="utf-8") as fh:
        return [row for row in csv.DictReader(fh) if (REALDOCS / row["file"]).exists()]


@cache
def split() -> dict[str, str]:
    files = sorted(row["file"] for row in documents())
    first: dict[str, str] = {}
    for f in files:
        first.setdefault(str(Path(f).with_suffix("")), f)
    return {f: half(REALDOCS / first[str(Path(f).with_suffix(""))]) for f in files}  # read once (cached)


def half_of(file: str) -> str:
    """The half of a realdocs file (its path relative to realdocs), as written in the split."""
    return split()[file]


def run_document(rel: str):
    """One realdocs document (``rel``: its path relative to realdocs) through the whole pipeline:
    ``process_document`` with the default settings (OCR ``auto``: RapidOCR for receipts; no VLM), one
    worker. The DocumentResult the benchmarks score (the tests score the same, made once per session)."""
    from docroute.pipelines.process import process_document
    from docroute.pipelines.settings import Settings

    return process_document(REALDOCS / rel, Settings(workers=1))


def field_tally(rows: list[dict], keys) -> list[tuple[str, int, int]]:
    """(field, right, scored) per field over rows that carry ``right`` maps, fields never scored left out."""
    out = []
    for k in keys:
        scored = [r["right"][k] for r in rows if k in r["right"]]
        if scored:
            out.append((k, sum(scored), len(scored)))
    return out


def straight_through(rows: list[dict]) -> tuple[int, int, int]:
    """How many rows went straight through (``needs_review`` false), and their fields right / scored."""
    straight = [r for r in rows if not r["needs_review"]]
    fields = [v for r in straight for v in r["right"].values()]
    return len(straight), sum(fields), len(fields)


def bench_main(doc: str, fn, items: list, report, argv: list[str] | None = None) -> int:
    """The command line of a realdocs benchmark: ``fn`` over ``items`` in a process pool, the rows
    optionally saved as JSON (``--json``), then ``report(rows)`` printed."""
    import argparse
    from multiprocessing import get_context

    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    with get_context("spawn").Pool(args.jobs) as pool:
        rows = pool.map(fn, items)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))
    print(report(rows))
    return 0


if __name__ == "__main__":
    if "--write" in sys.argv:
        SPLIT.write_text(json.dumps({"rule": "sha256 of the file's bytes as an integer: even -> tune, odd -> test; "
                                             "files with the same folder and stem take the first one's half",
                                     "files": split()}, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    halves = split()
    print(f"{sum(h == 'tune' for h in halves.values())} tune, {sum(h == 'test' for h in halves.values())} test")
