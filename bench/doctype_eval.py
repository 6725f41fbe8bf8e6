"""How right the document-type classifier is on ../shared/realdocs, per half of the fixed split.

Each document goes through the whole pipeline (``process_document``, defaults, no VLM: the page step
reads the text layer, or OCRs page images with the default engine ``auto``) and its ``document_type``
(``extractors.doctype.classify`` on the first two pages read) is scored. Labels come from realdocs/index.csv:
kind ``invoice`` and ``receipt`` as they are, every other kind (table, chart, scan, handwriting, form,
other) is ``other``. Printed per half: accuracy, a confusion table, and the documents it got wrong.

    python bench/doctype_eval.py [--jobs 2] [--json out.json]
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from realdocs_split import bench_main, documents, half_of, run_document  # noqa: E402

CLASSES = ("invoice", "receipt", "other")


def label(kind: str) -> str:
    return kind if kind in ("invoice", "receipt") else "other"


def classify_file(row: dict) -> dict:
    return type_row(row, run_document(row["file"]))


def type_row(row: dict, result) -> dict:
    """An index.csv row scored by the document type of its DocumentResult (``process_document``'s)."""
    out = {"file": row["file"], "label": label(row["kind"]), "half": half_of(row["file"])}
    t = result.document_type
    if t is None:  # an input docroute cannot read (a .txt): not scored
        return out | {"error": result.error}
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
