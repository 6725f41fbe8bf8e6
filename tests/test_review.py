"""Review queue: export flagged fields with crops, apply corrections as new row versions, fine-tune set."""

from __future__ import annotations

import csv
import json
import shutil

from PIL import Image

from docroute.pipelines import review
from docroute.pipelines.sink import sql_connection
from docroute.schemas.targets import Invoice

from conftest import expected

LATEST_VIEW = """SELECT * FROM invoice
QUALIFY row_number() OVER (PARTITION BY doc_id ORDER BY coalesce(row_version, 1) DESC) = 1"""


def test_export_then_apply_corrections(sample_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(sample_run[0], out)
    queue = tmp_path / "queue"
    items = review.export(out, queue, threshold=0.6)
    rows = list(csv.DictReader((queue / "review.csv").open()))
    assert len(rows) == len(items) > 0
    assert len((queue / "review.jsonl").read_text().splitlines()) == len(rows)
    # every exported field has a reason and a crop; a boxed field's crop is smaller than its page
    for row in rows:
        assert row["why"] and row["crop"]
        img = Image.open(queue / row["crop"])
        assert img.width > 0 and img.height > 0
        if row["x0"]:
            width_pt = float(row["x1"]) - float(row["x0"]) + 2 * review.CROP_MARGIN
            assert abs(img.width - width_pt * review.CROP_DPI / 72) <= 3
    flagged = {(r["file_name"], r["field"]) for r in rows}
    assert ("broken_truncated.pdf", "total") in flagged  # a missing key field
    assert not any(f == "handwriting_note.pdf" for f, _ in flagged), "a letter has no invoice field to review"
    assert ("einvoice_mismatch.pdf", "total") in flagged  # the picture and its XML disagree on the total

    scan = expected("invoice_scanned.pdf")["invoice"]
    corrections = tmp_path / "fix.csv"
    with corrections.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file_name", "field", "correct_value"])
        w.writerow(["invoice_scanned.pdf", "tax_total", scan["tax_total"]])
        w.writerow(["invoice_scanned.pdf", "vendor_name", scan["vendor_name"]])
    written = review.apply(out, corrections, reviewer="ada")
    assert len(written) == 1 and written[0]["row_version"] == 2

    con = sql_connection(out)
    both = con.sql("""SELECT row_version, tax_total, vendor_name FROM invoice
                      WHERE file_name = 'invoice_scanned.pdf' ORDER BY row_version""").fetchall()
    assert [r[0] for r in both] == [1, 2], "the original stays beside the correction"
    assert str(both[1][1]).rstrip("0").rstrip(".") == scan["tax_total"].rstrip("0").rstrip(".")
    current = con.sql(LATEST_VIEW).df()
    assert current["doc_id"].is_unique
    row = current[current.file_name == "invoice_scanned.pdf"].iloc[0]
    assert row.vendor_name == scan["vendor_name"] and row.corrected_by == "ada"
    assert dict(row.field_source)["vendor_name"] == "human" and dict(row.field_confidence)["tax_total"] == 1.0
    assert sorted(row.corrected_fields) == ["tax_total", "vendor_name"]

    ft = review.export_finetune(out, written, tmp_path / "ft")
    record = json.loads(ft.read_text().splitlines()[0])
    user, assistant = record["messages"]
    assert [c["type"] for c in user["content"]].count("image") == len(record["images"]) == 1
    assert (tmp_path / "ft" / record["images"][0]).is_file()
    target = Invoice.model_validate_json(assistant["content"][0]["text"])
    assert target.vendor_name == scan["vendor_name"] and str(target.tax_total) == scan["tax_total"]


def test_bad_corrections_are_refused(sample_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(sample_run[0], out)
    bad = tmp_path / "bad.csv"
    bad.write_text("file_name,field,correct_value\ninvoice_ruled.pdf,currency,dollars\n")
    try:
        review.apply(out, bad)
    except ValueError as exc:
        assert "currency" in str(exc)
    else:
        raise AssertionError("an invalid correction must be refused")
    assert _versions(out) == [1]


def test_apply_is_refused_while_a_run_holds_the_output(sample_run, prefect_api, tmp_path):
    from docroute.pipelines.runlog import output_lock

    from conftest import cli

    out = tmp_path / "out"
    shutil.copytree(sample_run[0], out)
    fix = tmp_path / "fix.csv"
    fix.write_text("file_name,field,correct_value\ninvoice_ruled.pdf,vendor_name,Someone\n")
    with output_lock(out, "run-holding", "x"):
        proc = cli(["review", str(out), "--apply", str(fix)], api_url=prefect_api)
    assert proc.returncode == 75 and "run-holding" in proc.stderr
    assert _versions(out) == [1]
    assert cli(["review", str(out), "--apply", str(fix)], api_url=prefect_api).returncode == 0
    assert _versions(out) == [1, 2]


def test_a_finetune_record_is_the_task_inference_poses(sample_run, tmp_path):
    """An exported correction sends what the VLM stage sends (its prompt, its page images at the pixel
    budget) and answers with text the transformers backend's own grammar decodes to the end."""
    import tiny_vlm
    import xgrammar as xgr

    from docroute.extractors.vlm import get_backend
    from docroute.extractors.vlm.structured import generation_schema, parse_and_validate
    from docroute.pipelines.ingest import open_file
    from docroute.pipelines.settings import Settings
    from docroute.pipelines.validate import jsonable
    from docroute.pipelines.vlm import stage
    from docroute.pipelines.vlm.base import Request
    from docroute.pipelines.vlm.render import handle_renderer

    from conftest import SAMPLES

    out = tmp_path / "out"
    shutil.copytree(sample_run[0], out)
    fix = tmp_path / "fix.csv"
    with fix.open("w", newline="") as fh:  # non-ASCII, an amount, and a line break the grammar cannot write
        csv.writer(fh).writerows([["file_name", "field", "correct_value"],
                                  ["invoice_two_page.pdf", "vendor_name", "Müller & Söhne\nGmbH"],
                                  ["invoice_two_page.pdf", "total", "1234.50"]])
    written = review.apply(out, fix)
    settings = Settings()
    record = json.loads(review.export_finetune(out, written, tmp_path / "ft", settings=settings).read_text())
    user, assistant = record["messages"]
    answer = assistant["content"][0]["text"]

    # the prompt and the images of the VLM stage's document call on these pages
    n = len(record["images"])
    assert n == 2 and [c["type"] for c in user["content"]] == ["image", "image", "text"]
    planned = Request("document", Invoice, tuple(range(1, n + 1)))
    assert user["content"][-1]["text"] == stage.prompt(planned, Invoice, n)
    with open_file(SAMPLES / "invoice_two_page.pdf") as doc:
        sent = [handle_renderer(doc)(p, None, settings.vlm.max_pixels) for p in planned.page_numbers]
    for rel, image in zip(record["images"], sent, strict=True):
        exported = Image.open(tmp_path / "ft" / rel).convert("RGB")
        assert exported.size == image.size and exported.tobytes() == image.tobytes()
    assert (record["min_pixels"], record["max_pixels"]) == (settings.vlm.min_pixels, settings.vlm.max_pixels)

    # the target: every token accepted by the backend's own compiled grammar, then its stop token
    options = tiny_vlm.options("qwen2_5_vl", max_string_chars=settings.vlm.max_string_chars,
                               max_list_items=settings.vlm.max_list_items)
    backend = get_backend("transformers", options)
    grammar = backend.grammar(generation_schema(Invoice, options.max_string_chars, options.max_list_items))

    def decodes(text: str) -> bool:
        matcher = xgr.GrammarMatcher(grammar)
        tokens = backend.vlm.tokenizer.encode(text, add_special_tokens=False)
        return (all(matcher.accept_token(t) for t in tokens) and matcher.accept_token(backend.vlm.stop_ids[0])
                and matcher.is_terminated())

    assert decodes(answer)
    data, errors = parse_and_validate(answer, Invoice)
    assert not errors and data["vendor_name"] == "Müller & Söhne GmbH" and str(data["total"]) == "1234.50"
    assert data == {**Invoice.model_validate({k: written[0][k] for k in Invoice.model_fields}).model_dump(),
                    "vendor_name": "Müller & Söhne GmbH"}
    old = json.dumps(jsonable({k: written[0][k] for k in Invoice.model_fields}), ensure_ascii=False)
    assert not decodes(old), "the former target (amounts as strings) is not what the grammar writes"


def _versions(out) -> list[int]:
    return [r[0] for r in sql_connection(out).sql("SELECT DISTINCT row_version FROM invoice ORDER BY 1").fetchall()]
