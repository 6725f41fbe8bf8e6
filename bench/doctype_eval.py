"""How right the document-type classifier is on ../shared/realdocs, per half of the fixed split.

Each document's first pages go through the pipeline's own page step (``process_page``: text layer, or
tesseract for page images) and ``extractors.doctype.classify``. Labels come from realdocs/index.csv:
kind ``invoice`` and ``receipt`` as they are, every other kind (table, chart, scan, handwriting, form,
other) is ``other``. Printed per half: accuracy, a confusion table, and the documents it got wrong.

    python bench/doctype_eval.py [--jobs 2] [--json out.json]
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from realdocs_split import REALDOCS, bench_main, documents, half_of  # noqa: E402

CLASSES = ("invoice", "receipt", "other")


def label(kind: str) -> str:
    return kind if kind in ("invoice", "receipt") else "other"


def classify_file(row: dict) -> dict:
    from docroute.extractors.doctype import classify
    from docroute.pipelines.ingest import open_file
    from docroute.pipelines.process import process_page
    from docroute.pipelines.settings import Settings

    path = REALDOCS / row["file"]
    out = {"file": row["file"], "label": label(row["kind"]), "half": half_of(row["file"])}
    try:
        with open_file(path) as doc:
            pages = [process_page(doc, n, Settings(workers=1))[0].parsed for n in range(1, min(doc.page_count, 2) + 1)]
    except Exception as exc:  # an input docroute cannot open (a .txt): not scored
        return out | {"error": f"{type(exc).__name__}: {exc}"}
    t = classify(pages)
    return out | {"predicted": t.kind, "confidence": t.confidence, "evidence": t.evidence}


def report(rows: list[dict]) -> str:
    lines = []
    for which in ("tune", "test"):
        scored = [r for r in rows if r["half"] == which and "predicted" in r]
        right = sum(r["label"] == r["predicted"] for r in scored)
        lines.append(f"{which} half: {right}/{len(scored)} = {right / max(1, len(scored)):.3f} right")
        confusion = Counter((r["label"], r["predicted"]) for r in scored)
        lines.append("  label \\ predicted " + " ".join(f"{c:>8s}" for c in CLASSES))
        for a in CLASSES:
            lines.append(f"  {a:18s}" + " ".join(f"{confusion[(a, b)]:8d}" for b in CLASSES))
        for r in scored:
            if r["label"] != r["predicted"]:
                lines.append(f"  wrong: {r['file']}: {r['label']} -> {r['predicted']} ({r['confidence']:.2f})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return bench_main(__doc__, classify_file, documents(), report, argv)


if __name__ == "__main__":
    raise SystemExit(main())
