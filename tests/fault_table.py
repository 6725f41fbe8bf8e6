"""README "Fault tests": the table, rendered from what the fault tests measured.

Each fault test records through the ``fault_record`` fixture (tests/conftest.py) what it did and
found: inputs tried, kills survived, rows lost and rows duplicated (the last two counted from the
doc_ids of its output), and for the hostile and fuzz corpora the pages MuPDF failed on that poppler
read (``pages.renderer = 'poppler'``). When the session ends they are saved to RECORD, merged with the rows of
earlier sessions, so running one fault test file updates its own rows only. Then

    python tests/fault_table.py                  # print the table rendered from RECORD
    python tests/fault_table.py --write-readme   # put it into README.md

``test_readme_fault_table_is_what_the_fault_tests_measured`` (tests/test_exactly_once.py) runs after
the session's fault tests and checks that README's rows are the rows they measured.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
RECORD = Path(os.environ.get("DOCROUTE_FAULT_RECORD") or REPO / ".pytest_cache" / "docroute-fault-record.json")

# test function -> (its file, what it does to docroute): the table's rows, in this order
ROWS = {
    "test_hostile_corpus_through_the_cli": (
        "test_hostile.py", "the hostile corpus below (a 1.5 GB content-stream bomb and pages MuPDF cannot read among "
        "them), through the CLI (2 workers, 768 MB worker limit)"),
    "test_mutated_pdfs_always_give_one_clean_row": (
        "test_fuzz.py", "mutated PDFs (byte flips, truncation, cut/duplicated slices, junk, extreme numbers in "
        "the PDF syntax) through ingest and parse in the worker pool, derandomized"),
    "test_crash_hang_and_balloon_become_failed_rows_and_the_pool_goes_on": (
        "test_hostile_isolation.py", "a worker SIGKILLed, one hung past the timeout, one over its memory limit, "
        "an escaped exception, then the real parser; the pool goes on"),
    "test_a_real_parse_over_the_memory_limit_is_a_failed_row_that_says_so": (
        "test_hostile_isolation.py", "a real parse out of memory (8 MB worker limit), then a small document "
        "in the same pool"),
    "test_crash_at_every_sink_step_then_rerun_gives_each_document_once": (
        "test_exactly_once.py", "the sink aborted at every Delta commit (before it, with its data file written "
        "but not logged, after it; each table of each batch, and the un-commit of a rewrite) of a first write and "
        "of a `--force` rewrite, then rerun"),
    "test_sigkill_at_random_moments_then_rerun": (
        "test_exactly_once.py", "`docroute run` SIGKILLed as a process group at seeded random moments (start-up, "
        "planning, parsing, writing, after the last commit), 5 times in a row, then rerun; a second run during "
        "one of them is refused"),
}
HEADER = ("| test | what is done to docroute | inputs tried | kills survived | rows lost | rows duplicated "
          "| pages MuPDF failed on, read by poppler |\n"
          "|---|---|---:|---:|---:|---:|---:|")


def row(name: str, m: dict) -> str:
    file, what = ROWS[name]
    kills = "–" if m.get("kills") is None else m["kills"]
    poppler = "–" if m.get("poppler_pages") is None else m["poppler_pages"]
    return f"| `{file}` | {what} | {m['inputs']} | {kills} | {m['lost']} | {m['duplicated']} | {poppler} |"


def _prefix(name: str) -> str:
    file, what = ROWS[name]
    return f"| `{file}` | {what} |"


def load(path: Path = RECORD) -> dict[str, dict]:
    return json.loads(path.read_text()) if path.exists() else {}


def save(measured: dict[str, dict], path: Path = RECORD) -> None:
    """Merge this session's rows into the record (a row measured again replaces the older one)."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    record = load(path) | {name: m | {"measured_at": now} for name, m in measured.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")


def with_rows(readme: str, measured: dict[str, dict]) -> str:
    """``readme`` with the fault-table rows of the tests in ``measured`` replaced by what they measured.

    Raises ValueError when the README has not exactly one line for each row of ROWS under its header.
    """
    head, sep, rest = readme.partition(HEADER + "\n")
    if not sep:
        raise ValueError("README has no fault table (its header line changed?)")
    table, blank, tail = rest.partition("\n\n")
    lines = table.splitlines()
    names = []
    for line in lines:
        found = [n for n in ROWS if line.startswith(_prefix(n))]
        if len(found) != 1:
            raise ValueError(f"README fault-table line names no test row of tests/fault_table.py: {line}")
        names.append(found[0])
    if names != list(ROWS):
        raise ValueError(f"README fault-table rows {names} are not ROWS {list(ROWS)}")
    lines = [row(n, measured[n]) if n in measured else line for n, line in zip(names, lines, strict=True)]
    return head + sep + "\n".join(lines) + blank + tail


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--record", type=Path, default=RECORD, help=f"measurements (default {RECORD})")
    ap.add_argument("--write-readme", action="store_true", help="replace README.md's rows with the record's")
    args = ap.parse_args(argv)
    measured = load(args.record)
    if not measured:
        print(f"no measurements in {args.record}: run the fault tests first", file=sys.stderr)
        return 1
    missing = [n for n in ROWS if n not in measured]
    if missing:
        print(f"not measured yet (README keeps its row): {', '.join(missing)}", file=sys.stderr)
    if args.write_readme:
        README.write_text(with_rows(README.read_text(encoding="utf-8"), measured), encoding="utf-8")
        print(f"wrote {len(ROWS) - len(missing)} row(s) of the fault table into {README}")
    else:
        print("\n".join([HEADER] + [row(n, measured[n]) for n in ROWS if n in measured]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
