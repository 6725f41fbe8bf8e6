"""The review queue: export fields a person should check, apply their corrections as new row versions.

Corrections never overwrite: each applied correction writes a new version of the document's extraction
row (``row_version`` + 1, ``corrected_fields``, ``corrected_by``, ``corrected_at``) beside the original,
in the same Delta table (one MERGE on doc_id + row_version per apply). The current value of a document is its highest ``row_version``; the DuckDB
view in the README (and :func:`latest`) selects it.

Corrections also export as a fine-tuning set in the conversational format TRL's SFTTrainer reads for
vision models: one JSON line per document with ``messages`` (user: image placeholders + prompt;
assistant: the corrected JSON) and ``images`` (page image paths). Prompt, images and answer are those
of inference (see :func:`export_finetune`), so a model is tuned on the task it is then asked.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from docroute.pipelines.settings import Settings
from docroute.pipelines.sink import DeltaSink, read_table
from docroute.schemas import BBox
from docroute.schemas.contract import extraction_schema
from docroute.schemas.registry import get_schema

log = logging.getLogger(__name__)

REVIEW_COLUMNS = ["doc_id", "file_name", "source_path", "field", "value", "confidence", "source", "page_number",
                  "x0", "y0", "x1", "y1", "why", "crop", "correct_value"]
CROP_DPI = 150
CROP_MARGIN = 12.0  # points around a field's box


def extraction_dir(out: Path, schema_name: str) -> Path:
    return Path(out) / "extractions" / get_schema(schema_name).schema_name


def latest(table: pa.Table) -> pa.Table:
    """One row per doc_id: the highest row_version (pipeline output is version 1)."""
    rows = table.to_pylist()
    best: dict[str, dict] = {}
    for r in rows:
        v = r.get("row_version") or 1
        if r["doc_id"] not in best or v > (best[r["doc_id"]].get("row_version") or 1):
            best[r["doc_id"]] = r
    return pa.Table.from_pylist(list(best.values()), schema=table.schema)


def _read(out: Path, schema_name: str) -> pa.Table:
    sink = DeltaSink(out, schema_name)
    if sink.table(sink.extraction_table) is None:
        raise FileNotFoundError(f"no extractions in {sink.uri(sink.extraction_table)}: run `docroute run ... "
                                f"--out {out}` first")
    return read_table(sink, sink.extraction_table)


def _documents(out: Path) -> dict[str, dict]:
    return {r["doc_id"]: r for r in read_table(DeltaSink(out, "invoice"), "documents").to_pylist()}


def review_items(out: Path, schema_name: str, threshold: float) -> list[dict]:
    """Fields flagged for review or under ``threshold`` confidence, one item per (document, field)."""
    schema = get_schema(schema_name)
    docs = _documents(out)
    items = []
    for row in latest(_read(out, schema_name)).to_pylist():
        conf = dict(row.get("field_confidence") or [])
        source = dict(row.get("field_source") or [])
        prov = {p["field"]: p for p in row.get("field_provenance") or []}
        reasons = row.get("review_reasons") or []
        flagged: dict[str, list[str]] = defaultdict(list)
        for reason in reasons:
            kind, _, name = reason.partition(":")
            name = name.partition(":")[0]  # einvoice_mismatch:total:printed=..:xml=.. flags total
            if name in schema.model_fields:
                flagged[name].append(kind)
        for name, c in conf.items():
            if c < threshold:
                flagged[name].append(f"confidence {c:.2f} < {threshold:.2f}")
        for name, why in sorted(flagged.items()):
            p = prov.get(name) or {}
            value = row.get(name)
            items.append({
                "doc_id": row["doc_id"], "file_name": row["file_name"],
                "source_path": docs.get(row["doc_id"], {}).get("source_path", ""), "field": name,
                "value": json.dumps(value, default=str) if isinstance(value, list | dict) else value,
                "confidence": conf.get(name), "source": source.get(name), "page_number": p.get("page_number"),
                "x0": p.get("x0"), "y0": p.get("y0"), "x1": p.get("x1"), "y1": p.get("y1"),
                "why": "; ".join(why), "crop": None, "correct_value": "",
            })
    return items


def _crops(items: list[dict], target: Path, passwords: tuple[str, ...]) -> None:
    """A PNG crop of each field's region (the whole page when it has no box): each document opened once."""
    from docroute.extractors import pdf
    from docroute.pipelines.ingest import InputError, open_file

    by_source: dict[str, list[dict]] = defaultdict(list)
    for item in items:
        by_source[item["source_path"]].append(item)
    for source, its in by_source.items():
        try:
            with open_file(Path(source), passwords) as doc:
                for item in its:
                    number = item["page_number"] or 1
                    box = (item["x0"], item["y0"], item["x1"], item["y1"])
                    clip = None
                    if None not in box:
                        page = doc.page(number).rect
                        clip = BBox(x0=max(0.0, box[0] - CROP_MARGIN), y0=max(0.0, box[1] - CROP_MARGIN),
                                    x1=min(page.width, box[2] + CROP_MARGIN), y1=min(page.height, box[3] + CROP_MARGIN))
                    crop = target / "crops" / f"{item['doc_id'][:16]}_{item['field']}.png"
                    crop.parent.mkdir(parents=True, exist_ok=True)
                    doc.render(number, CROP_DPI, clip=clip).save(crop)
                    item["crop"] = str(crop.relative_to(target))
        except (OSError, InputError, pdf.DocumentOpenError):
            continue  # the source moved, or cannot be opened: its fields are exported without a crop


def export(out: Path, target: Path, schema_name: str = "invoice", threshold: float = 0.6,
           passwords: tuple[str, ...] = ()) -> list[dict]:
    """Write review.csv, review.jsonl and a PNG crop per field (the whole page when a field has no box)."""
    target.mkdir(parents=True, exist_ok=True)
    items = review_items(out, schema_name, threshold)
    _crops(items, target, passwords)
    with (target / "review.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=REVIEW_COLUMNS)
        writer.writeheader()
        writer.writerows(items)
    with (target / "review.jsonl").open("w", encoding="utf-8") as fh:
        for item in items:
            fh.write(json.dumps(item, default=str, ensure_ascii=False) + "\n")
    return items


def _load_corrections(path: Path) -> dict[str, dict[str, str]]:
    """doc_id -> field -> corrected value, from a CSV with doc_id (or file_name), field, correct_value|value."""
    out: dict[str, dict[str, str]] = defaultdict(dict)
    with Path(path).open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            value = row.get("correct_value") or row.get("value") or ""
            key = row.get("doc_id") or row.get("file_name")
            if key and row.get("field") and value.strip():
                out[key][row["field"]] = value.strip()
    return dict(out)


def apply(out: Path, corrections: Path, schema_name: str = "invoice", reviewer: str | None = None) -> list[dict]:
    """Write each corrected document as a new row version; returns the new rows."""
    schema = get_schema(schema_name)
    arrow = extraction_schema(schema)
    table = latest(_read(out, schema_name))
    current = {r["doc_id"]: r for r in table.to_pylist()}
    by_name = {r["file_name"]: r["doc_id"] for r in current.values()}
    written = []
    now = datetime.now(UTC)
    for key, changes in _load_corrections(corrections).items():
        doc_id = key if key in current else by_name.get(key)
        if doc_id is None:
            raise ValueError(f"correction for {key!r}: no such doc_id or file_name in {out}")
        row = dict(current[doc_id])
        data = {k: row.get(k) for k in schema.model_fields}
        for name, value in changes.items():
            if name not in schema.model_fields:
                raise ValueError(f"correction for {key!r}: {name!r} is not a field of {schema.schema_name}")
            data[name] = json.loads(value) if name == "line_items" else value
        obj = schema.model_validate(data)  # a correction must itself validate
        row.update(obj.model_dump())
        conf = dict(row.get("field_confidence") or [])
        src = dict(row.get("field_source") or [])
        for name in changes:
            conf[name], src[name] = 1.0, "human"
        version = (row.get("row_version") or 1) + 1
        row.update({
            "field_confidence": sorted(conf.items()), "field_source": sorted(src.items()),
            "review_reasons": [r for r in row.get("review_reasons") or [] if r.partition(":")[2] not in changes],
            "row_version": version, "corrected_fields": sorted(changes), "corrected_at": now,
            "corrected_by": reviewer or os.environ.get("USER") or "unknown",
        })
        row["needs_review"] = bool(row["review_reasons"])
        written.append(row)
    if written:  # one MERGE on (doc_id, row_version): applying the same corrections twice adds nothing
        sink = DeltaSink(out, schema_name)
        sink.table(sink.extraction_table).merge(
            pa.Table.from_pylist(written, schema=arrow), source_alias="s", target_alias="t",
            predicate="t.doc_id = s.doc_id AND t.row_version = s.row_version",
        ).when_not_matched_insert_all().execute()
    return written


def export_finetune(out: Path, rows: list[dict], target: Path, schema_name: str = "invoice",
                    settings: Settings | None = None) -> Path:
    """The corrected rows as TRL SFTTrainer vision-conversation records, with page images beside them.

    A record is the task inference poses: up to ``vlm.max_pages`` page images rendered at the VLM pixel
    budget as the VLM stage renders them (``min_pixels``/``max_pixels`` ride along for the trainer's
    processor), the prompt the VLM stage sends with that many images, and as the target the JSON the
    constrained decoder writes (``structured.answer_text``). A row that grammar cannot write is skipped.
    Encrypted sources open with ``settings``' passwords.
    """
    from docroute.extractors.vlm.structured import answer_text, build_prompt
    from docroute.pipelines.ingest import open_file

    settings = settings or Settings()
    vlm = settings.vlm
    schema = get_schema(schema_name)
    docs = _documents(out)
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"{schema.schema_name}.jsonl"
    with path.open("a", encoding="utf-8") as fh:
        for row in rows:
            try:
                answer = answer_text(schema, {k: row.get(k) for k in schema.model_fields},
                                     vlm.max_string_chars, vlm.max_list_items)
            except ValueError as exc:
                log.warning("fine-tuning export: %s skipped, the grammar cannot write it: %s", row["doc_id"], exc)
                continue
            source = Path(docs[row["doc_id"]]["source_path"])
            images = []
            with open_file(source, settings.passwords()) as doc:
                for i in range(min(doc.page_count, vlm.max_pages)):
                    image_path = target / "images" / f"{row['doc_id'][:16]}_p{i + 1}.png"
                    image_path.parent.mkdir(parents=True, exist_ok=True)
                    doc.render_at_budget(i + 1, vlm.max_pixels).save(image_path)
                    images.append(str(image_path.relative_to(target)))
            prompt = build_prompt(schema, n_images=len(images))
            record = {
                "messages": [
                    {"role": "user", "content": [*({"type": "image"} for _ in images), {"type": "text", "text": prompt}]},
                    {"role": "assistant", "content": [{"type": "text", "text": answer}]},
                ],
                "images": images,
                "min_pixels": min(vlm.min_pixels, vlm.max_pixels), "max_pixels": vlm.max_pixels,
                "doc_id": row["doc_id"],
            }
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path
