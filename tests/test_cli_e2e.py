"""The CLI end to end on sample_docs/, read back with DuckDB over the Delta tables; broken inputs; reruns; a SIGKILL mid-run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
from deltalake import DeltaTable

from docroute.pipelines.sink import sql_connection
from docroute.schemas.contract import DOCUMENTS, ELEMENTS, PAGES, RUNS, extraction_schema
from docroute.schemas.targets import Invoice

from conftest import SAMPLES, all_expected, cli

EXPECTED = {e["file"]: e for e in all_expected(recursive=True)}  # the run reads sample_docs/other/ too
TABLES = ["documents", "pages", "elements", "runs", "extractions/invoice"]


def q(out: Path, sql: str) -> list[tuple]:
    """Run SQL where {t} names the output's Delta tables (registered as docroute sql does)."""
    for t in TABLES:
        sql = sql.replace("{" + t + "}", t.rpartition("/")[2])
    return sql_connection(out).sql(sql).fetchall()


def test_run_reports_summary_and_duckdb_query(sample_run):
    out, proc = sample_run
    assert "ok / partial / failed" in proc.stdout
    assert "docroute sql" in proc.stdout
    assert "pages/s" in proc.stdout
    for name, case in EXPECTED.items():
        if case["status"] != "ok":
            assert name in proc.stdout, f"the summary names the failed file {name}"


def test_one_row_per_document_with_expected_status(sample_run):
    out, _ = sample_run
    rows = q(out, "SELECT file_name, status, error, n_pages, mime_type FROM {documents}")
    assert {r[0] for r in rows} == set(EXPECTED)
    for file_name, status, error, n_pages, _mime in rows:
        case = EXPECTED[file_name]
        assert status == case["status"], (file_name, error)
        if case["error_contains"]:
            assert case["error_contains"] in error.lower(), (file_name, error)
        if case["n_pages"] is not None:
            assert n_pages == case["n_pages"]
    assert dict((r[0], r[4]) for r in rows)["invoice_photo.png"] == "image/png"


def test_pages_routes_and_text(sample_run):
    out, _ = sample_run
    rows = q(out, """SELECT d.file_name, p.page_number, p.route, p.route_reasons, p.vlm_status, p.text,
                            p.has_text_layer, p.policy_version, p.signals
                     FROM {pages} p JOIN {documents} d USING (doc_id) WHERE d.status = 'ok'
                     ORDER BY 1, 2""")
    by_file: dict[str, list] = {}
    for r in rows:
        by_file.setdefault(r[0], []).append(r)
    for name, pages in by_file.items():
        case = EXPECTED[name]
        # the first routing step as expected; the escalation after extraction (policy v3) may add its reason
        first = [sorted(set(p[3]) - {"extraction_low_confidence"}) for p in pages]
        assert first == [sorted(x) for x in case["expected_reasons"]], name
        assert [p[2] == "vlm" for p in pages] == [r == "vlm" or "extraction_low_confidence" in p[3]
                                                  for r, p in zip(case["expected_route"], pages, strict=True)], name
        assert [p[6] for p in pages] == case["has_text_layer"], name
        for p in pages:
            assert p[4] == ("unavailable" if p[2] == "vlm" else "not_routed")
            assert p[7] and isinstance(p[8], dict) and "words" in p[8]
        text = "\n".join(p[5] for p in pages)
        if all(case["has_text_layer"]):
            for s in case["text_contains"]:
                assert s in text, (name, s)


def test_the_printed_query_runs_offline_and_exits_cleanly(sample_run, prefect_api, tmp_path):
    """The `docroute sql` line the summary prints works as printed (no DuckDB extension, no network), and
    its process exits 0 every time (deltalake's to_pyarrow_table can abort a process at exit: not used)."""
    out, proc = sample_run
    line = next(ln.strip() for ln in proc.stdout.splitlines() if "docroute sql " in ln)
    assert line.startswith(str(Path(sys.executable).with_name("docroute"))), "the command as it was started"
    query = line.split('"')[1]
    for _ in range(3):
        got = cli(["sql", str(out), query, "--format", "csv"], api_url=prefect_api)
        assert got.returncode == 0, got.stderr[-2000:]
    header, *rows = got.stdout.strip().splitlines()
    assert header.startswith("file_name,invoice_number")
    assert len(rows) == sum(1 for e in EXPECTED.values() if e["status"] != "failed")
    assert any(r.startswith("invoice_ruled.pdf,INV-2024-0042") for r in rows), rows


def test_compact_merges_files_and_keeps_every_row(sample_run, prefect_api, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(sample_run[0], out)
    before = {t: len(q(out, f"SELECT * FROM {{{t}}}")) for t in TABLES}
    extra = tmp_path / "extra"
    extra.mkdir()
    for i in range(3):  # three more runs: three more files in each table
        (extra / f"{i}.pdf").write_bytes((SAMPLES / "plain_text.pdf").read_bytes() + f"\n% {i}\n".encode())
        assert cli(["run", str(extra), "--out", str(out), "--workers", "1"], api_url=prefect_api).returncode == 0
    files = DeltaTable(out / "pages").file_uris()
    assert len(files) >= 4
    proc = cli(["compact", str(out), "--retain-days", "0"], api_url=prefect_api)
    assert proc.returncode == 0, proc.stderr
    assert len(DeltaTable(out / "pages").file_uris()) == 1 and "pages:" in proc.stdout
    assert not [f for f in files if Path(f.removeprefix("file://")).exists()], "vacuumed"
    after = {t: len(q(out, f"SELECT * FROM {{{t}}}")) for t in TABLES}
    assert after["documents"] == before["documents"] + 3 and after["runs"] == before["runs"] + 3


def test_invoice_extractions_match_expected_json(sample_run):
    out, _ = sample_run
    df = sql_connection(out).sql("SELECT * FROM invoice").df()
    rows = {r["file_name"]: r for r in df.to_dict("records")}
    digital = ["invoice_ruled.pdf", "invoice_unruled.pdf", "invoice_two_page.pdf"]
    for name in digital:
        exp, row = EXPECTED[name]["invoice"], rows[name]
        assert row["invoice_number"] == exp["invoice_number"], name
        assert str(row["invoice_date"])[:10] == exp["invoice_date"], name
        assert str(row["due_date"])[:10] == exp["due_date"], name
        assert row["currency"] == exp["currency"], name
        for money in ("subtotal", "tax_total", "total"):
            assert Decimal(str(row[money])) == Decimal(exp[money]), (name, money)
        assert len(row["line_items"]) == len(exp["line_items"]), name
        for got, want in zip(row["line_items"], exp["line_items"], strict=True):
            assert Decimal(str(got["amount"])) == Decimal(want["amount"]), name
        conf = dict(row["field_confidence"])
        assert set(conf) >= {"invoice_number", "total"} and all(0 <= c <= 1 for c in conf.values())
        assert dict(row["field_source"])["total"] == "layout"
    for name in ("invoice_scanned.pdf", "invoice_photo.png"):
        exp, row = EXPECTED[name]["invoice"], rows[name]
        assert row["invoice_number"] == exp["invoice_number"], name
        assert Decimal(str(row["total"])) == Decimal(exp["total"]), name
        assert dict(row["field_source"])["total"] == "ocr", name
    # routed documents are flagged: no VLM in this run
    routed = {r[0]: r[1] for r in q(out, """SELECT d.file_name, e.review_reasons FROM {extractions/invoice} e
                                            JOIN {documents} d USING (doc_id)""")}
    assert "vlm_unavailable" in routed["handwriting_note.pdf"]


def test_machine_readable_rows_and_the_readme_disagreement_query(sample_run):
    out, _ = sample_run
    rows = {r[0]: r[1:] for r in q(out, """SELECT d.file_name, d.n_pages, e.total, e.iban, e.field_source['amount_due'], e.amount_due,
                                                  json_extract_string(e.raw_json, '$.einvoice.profile')
                                           FROM {extractions/invoice} e JOIN {documents} d USING (doc_id)""")}
    machine = {name: case for name, case in EXPECTED.items() if "machine" in case}
    assert len(machine) == 6
    for name, case in machine.items():
        n_pages, total, iban, source, due, profile = rows[name]
        assert n_pages == case["n_pages"] and Decimal(str(total)) == Decimal(case["invoice"]["total"]), name
        # what is to pay comes from the machine-readable data (a QR code carries that, not the grand total)
        assert Decimal(str(due)) == Decimal(case["invoice"]["amount_due"]), name
        assert iban == case["invoice"]["iban"] and source == case["machine"]["source"], name
        assert profile == case["machine"].get("profile"), name
    assert not q(out, "SELECT 1 FROM {pages} p JOIN {documents} d USING (doc_id) WHERE d.file_name LIKE '%.xml'")
    readme = (SAMPLES.parent / "README.md").read_text(encoding="utf-8")
    sql = readme.split("Invoices whose picture and data disagree:")[1].split('.venv/bin/docroute sql out "')[1].split('"')[0]
    hits = sql_connection(out).sql(sql).fetchall()
    assert [(h[0], h[-1]) for h in hits] == [("einvoice_mismatch.pdf", ["einvoice_mismatch:total:printed=160.65:xml=135.00"])]


def test_parquet_files_follow_the_contract(sample_run):
    out, _ = sample_run
    for name, schema in (("documents", DOCUMENTS), ("pages", PAGES), ("elements", ELEMENTS), ("runs", RUNS),
                         ("extractions/invoice", extraction_schema(Invoice))):
        got = DeltaTable(out / name).to_pyarrow_dataset().schema.remove_metadata()
        assert got.equals(schema), (name, got)
    types = dict(q(out, "SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {extractions/invoice})"))
    assert types["invoice_date"] == "DATE" and types["total"].startswith("DECIMAL")
    assert types["line_items"].startswith("STRUCT(") and types["line_items"].endswith("[]")
    assert not list(out.rglob("*.tmp")), "no temporary file is left behind"


def test_elements_have_stable_addresses_and_boxes_in_points(sample_run):
    out, _ = sample_run
    rows = q(out, """SELECT e.element_id, e.page_number, e.x0, e.y0, e.x1, e.y1, p.width, p.height
                     FROM {elements} e JOIN {pages} p USING (doc_id, page_number)""")
    assert rows
    for eid, page, x0, y0, x1, y1, w, h in rows:
        assert eid.startswith(f"/page/{page}/")
        assert -1 <= x0 <= x1 <= w + 1 and -1 <= y0 <= y1 <= h + 1


def test_rerun_writes_nothing_new(sample_run, prefect_api, tmp_path):
    out, _ = sample_run
    tables = [t for t in TABLES if t != "runs"]
    versions = {t: DeltaTable(out / t).version() for t in tables}
    proc = cli(["run", str(SAMPLES), "--out", str(out)], api_url=prefect_api)
    assert proc.returncode == 0, proc.stderr
    assert {t: DeltaTable(out / t).version() for t in tables} == versions, "no new table version"
    assert f"{len(EXPECTED)}" in proc.stdout and "skipped" in proc.stdout
    runs = q(out, "SELECT counts['skipped'], counts['documents'] FROM {runs} ORDER BY started_at")
    assert runs[-1] == (len(EXPECTED), 0)


def test_bad_input_is_a_clear_error_with_nonzero_exit(prefect_api, tmp_path):
    proc = cli(["run", str(tmp_path / "nope"), "--out", str(tmp_path / "o")], api_url=prefect_api)
    assert proc.returncode == 2 and "nope" in proc.stderr
    proc = cli(["run", str(SAMPLES), "--out", str(tmp_path / "o"), "--schema", "nosuch"], api_url=prefect_api)
    assert proc.returncode == 2 and "unknown schema" in proc.stderr


@pytest.mark.slow
def test_sigkill_midway_then_rerun_keeps_each_document_once(prefect_api, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(8):  # distinct bytes: a trailing comment after %%EOF changes the hash, not the PDF
        for name in ("invoice_ruled.pdf", "invoice_scanned.pdf"):
            data = (SAMPLES / name).read_bytes() + f"\n% copy {i}\n".encode()
            (corpus / f"{i:02d}_{name}").write_bytes(data)
    out = tmp_path / "out"
    small_batches = {"DOCROUTE_COMMIT_EVERY_DOCUMENTS": "2"}
    proc = cli(["run", str(corpus), "--out", str(out), "--workers", "2"], api_url=prefect_api,
               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, extra_env=small_batches)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and _documents(out) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    committed = _documents(out)
    assert 3 <= committed < 16, "the kill landed mid-run"
    rerun = cli(["run", str(corpus), "--out", str(out), "--workers", "2"], api_url=prefect_api, extra_env=small_batches)
    assert rerun.returncode == 0, rerun.stderr
    for table in ("documents", "extractions/invoice"):
        n, distinct = q(out, f"SELECT count(*), count(DISTINCT doc_id) FROM {{{table}}}")[0]
        assert n == distinct == 16, table
    pages = q(out, "SELECT count(*), count(DISTINCT (doc_id, page_number)) FROM {pages}")[0]
    assert pages == (16, 16)
    elements = q(out, "SELECT count(*), count(DISTINCT (doc_id, element_id)) FROM {elements}")[0]
    assert elements[0] == elements[1]
    skipped = q(out, "SELECT counts['skipped'] FROM {runs} ORDER BY started_at DESC LIMIT 1")[0][0]
    assert skipped == committed
    shutil.rmtree(corpus)


def test_read_returns_dataframes(sample_run):
    import docroute

    out, _ = sample_run
    tables = docroute.read(out)
    assert set(tables) >= {"documents", "pages", "elements", "runs", "extractions/invoice"}
    assert len(tables["documents"]) == len(EXPECTED)
    assert tables["extractions/invoice"]["doc_id"].is_unique


def test_unstructured_parser_end_to_end(prefect_api, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("plain_text.pdf", "invoice_ruled.pdf", "invoice_photo.png"):
        shutil.copy(SAMPLES / name, folder / name)
    out = tmp_path / "out"
    proc = cli(["run", str(folder), "--out", str(out), "--parser", "unstructured", "--workers", "1"],
               api_url=prefect_api)
    assert proc.returncode == 0, proc.stderr
    assert q(out, "SELECT DISTINCT status FROM {documents}") == [("ok",)]
    assert q(out, "SELECT DISTINCT parser FROM {pages}") == [("unstructured",)]
    rows = q(out, """SELECT d.file_name, e.kind, e.text, e.source FROM {elements} e JOIN {documents} d USING (doc_id)""")
    by_file: dict[str, list] = {}
    for name, kind, text, source in rows:
        by_file.setdefault(name, []).append((kind, text, source))
    assert {s.split(":")[0] for els in by_file.values() for _, _, s in els} == {"unstructured"}
    plain = by_file["plain_text.pdf"]
    assert {"title", "text"} <= {k for k, _, _ in plain}, "offline NLP classifies prose and headings"
    assert all(s == "unstructured:fast" for _, _, s in plain)
    assert all(s == "unstructured:ocr" for _, _, s in by_file["invoice_photo.png"])  # the page step's OCR words
    text = " ".join(t for _, t, _ in by_file["invoice_photo.png"])
    assert EXPECTED["invoice_photo.png"]["invoice"]["invoice_number"] in text
    # fields and routing come from the page reading, whatever the element engine
    number = q(out, "SELECT invoice_number FROM {extractions/invoice} WHERE file_name = 'invoice_ruled.pdf'")
    assert number == [(EXPECTED["invoice_ruled.pdf"]["invoice"]["invoice_number"],)]


def _documents(out: Path) -> int:
    try:
        return DeltaTable(out / "documents").to_pyarrow_dataset().count_rows()
    except Exception:  # no table yet
        return 0
