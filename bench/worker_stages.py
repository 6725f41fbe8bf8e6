"""Where a worker's time goes on digital pages: CPU seconds per stage of ``process_document``.

Builds bench/throughput.py's digital corpus (150 invoices, 200 pages; distinct bytes per copy), runs
every document through ``process_document`` in this one process (after a worker's own start,
``flows.isolation._worker_init``) and reports the CPU time (``time.process_time``: steadier than wall
time on a shared machine) spent inside each stage, timed by wrapping the stage's function. Stages
nest: ``find_tables`` is part of ``parse_page``, the ``fields:`` lines are parts of ``fields``.

    python bench/worker_stages.py [--pages 200]
"""

from __future__ import annotations

import argparse
import functools
import importlib
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from throughput import build_corpus

STAGES = [
    ("docroute.extractors.pdf", "read_page", "read the page (words, images, drawings)"),
    ("docroute.extractors.layout_pymupdf", "parse_page", "layout parse (incl. find_tables)"),
    ("docroute.extractors.layout_pymupdf", "_find_tables", "  find_tables"),
    ("docroute.extractors.detect", "detect_page", "detectors"),
    ("docroute.pipelines.machine", "read", "machine-readable (embedded XML, payment QR)"),
    ("docroute.pipelines.process", "_extract_fields", "fields"),
    ("docroute.extractors.fields.generic", "page_rows", "  fields: rows"),
    ("docroute.extractors.fields.generic", "find_labels", "  fields: labels"),
    ("docroute.extractors.fields.generic", "infer_style", "  fields: number/date style"),
    ("docroute.extractors.fields.line_items", "read_table", "  fields: line items"),
    ("docroute.pipelines.process", "build_extraction", "validation"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=200)
    args = ap.parse_args()
    from docroute.flows.isolation import _worker_init
    from docroute.pipelines.ingest import ingest
    from docroute.pipelines.settings import Settings

    _worker_init(0)
    from docroute.pipelines import process

    spent: dict[str, float] = defaultdict(float)
    for module, name, label in STAGES:
        mod = importlib.import_module(module)
        fn = getattr(mod, name)

        @functools.wraps(fn)
        def timed(*a, _fn=fn, _label=label, **k):
            t0 = time.process_time()
            try:
                return _fn(*a, **k)
            finally:
                spent[_label] += time.process_time() - t0

        setattr(mod, name, timed)
    with tempfile.TemporaryDirectory() as tmp:
        files, pages = build_corpus("digital", args.pages, Path(tmp))
        sources = [ingest(f) for f in files]
        settings = Settings()
        process.process_document(sources[0], settings)  # first-call costs (caches, lazy imports) apart
        spent.clear()
        t0 = time.process_time()
        for source in sources:
            process.process_document(source, settings)
        total = time.process_time() - t0
    print(f"{len(sources)} documents, {pages} pages: {total:.2f} s CPU, {1000 * total / pages:.1f} ms a page")
    for _module, _name, label in STAGES:
        print(f"  {label:46s} {1000 * spent[label] / pages:6.1f} ms a page  {100 * spent[label] / total:5.1f} %")


if __name__ == "__main__":
    main()
