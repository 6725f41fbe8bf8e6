"""The VLM stage in the pipeline: planning, rendering at the pixel budget, merge by confidence,
region targets (tables, charts, handwriting), and failure handling. Runs the tiny Qwen2.5-VL for real.
"""

from __future__ import annotations

import json
import os
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import tiny_vlm

from docroute.extractors.vlm import VlmResult, get_backend
from docroute.pipelines.process import process_document
from docroute.pipelines.settings import Settings, load_settings
from docroute.pipelines.sink import element_rows
from docroute.pipelines.validate import build_extraction, merge_fields
from docroute.pipelines.vlm import stage
from docroute.pipelines.vlm.base import Request
from docroute.pipelines.vlm.stage import assemble, plan
from docroute.schemas import FieldValue
from docroute.schemas.targets import Invoice, Table

from conftest import SAMPLES

os.environ.setdefault("OMP_NUM_THREADS", "1")


def fv(name, value, conf, source):
    return FieldValue(name=name, value=value, confidence=conf, source=source, page_number=1)


def tiny_settings(**changes) -> Settings:
    o = tiny_vlm.options("qwen2_5_vl")
    vlm = dict(min_pixels=o.min_pixels, max_pixels=o.max_pixels, max_new_tokens=o.max_new_tokens,
               max_string_chars=o.max_string_chars, max_list_items=o.max_list_items, loop_window=0, dtype="float32")
    return Settings(**({"vlm_backend": "transformers", "vlm_model": o.model, "vlm": vlm, "workers": 1} | changes))


# -------------------------------------------------------------------------------------------- merge

def test_merge_by_confidence_keeps_both_sources_in_raw_json():
    layout = {"invoice_number": fv("invoice_number", "INV-1", 0.95, "layout"),
              "total": fv("total", Decimal("36.00"), 0.4, "layout"),
              "due_date": fv("due_date", date(2024, 4, 14), 0.9, "layout")}
    vlm = {"invoice_number": fv("invoice_number", "INV-7", 0.7, "vlm"),
           "total": fv("total", Decimal("63.00"), 0.92, "vlm"),
           "due_date": fv("due_date", None, 0.99, "vlm"),  # a confident null never beats a value
           "currency": fv("currency", "EUR", 0.8, "vlm")}  # only the VLM saw it
    merged, winner = merge_fields(layout, vlm)
    assert winner == {"invoice_number": "layout", "total": "vlm", "due_date": "layout", "currency": "vlm"}
    ex = build_extraction(Invoice, layout, routed_pages=[1], vlm_status="ok", vlm_fields=vlm, raw_extra={"vlm_call": {"x": 1}})
    assert ex.data["total"] == Decimal("63.00") and ex.data["invoice_number"] == "INV-1" and ex.data["currency"] == "EUR"
    assert {k: v.source for k, v in ex.fields.items()} == {"invoice_number": "layout", "total": "vlm",
                                                           "due_date": "layout", "currency": "vlm"}
    raw = json.loads(ex.raw_json)
    assert raw["layout"]["total"]["value"] == "36.00" and raw["vlm"]["total"]["value"] == "63.00"
    assert raw["vlm"]["due_date"]["value"] is None and raw["merged_from"]["total"] == "vlm" and raw["vlm_call"] == {"x": 1}
    assert not any(r.startswith("vlm_") for r in ex.review_reasons)


def test_table_html_has_header_cells_and_spans():
    data = {"n_rows": 2, "n_cols": 3, "header_rows": 1, "cells": [
        {"row": 0, "col": 0, "text": "Region", "row_span": 1, "col_span": 1, "is_header": True},
        {"row": 0, "col": 1, "text": "2023 <Q>", "row_span": 1, "col_span": 2, "is_header": True},
        {"row": 1, "col": 0, "text": "EU", "row_span": 1, "col_span": 1, "is_header": False}]}
    assert Table.model_validate(data).html() == ('<table><tr><th>Region</th><th colspan="2">2023 &lt;Q&gt;</th></tr>'
                                "<tr><td>EU</td></tr></table>")


def test_vlm_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("DOCROUTE_VLM_BACKEND", "openai")
    monkeypatch.setenv("DOCROUTE_VLM_MODEL", "Qwen/Qwen2.5-VL-3B-Instruct")
    monkeypatch.setenv("DOCROUTE_VLM__SERVER_URL", "http://127.0.0.1:9000/v1")
    monkeypatch.setenv("DOCROUTE_VLM__MAX_PIXELS", "401408")
    s = load_settings()
    o = s.vlm
    assert (o.backend, o.model, o.server_url, o.max_pixels) == (
        "openai", "Qwen/Qwen2.5-VL-3B-Instruct", "http://127.0.0.1:9000/v1", 401408)
    monkeypatch.setenv("DOCROUTE_VLM_BACKEND", "llama")
    with pytest.raises(ValueError):
        load_settings()


# -------------------------------------------------------------------------------- planning, assembly

def test_plan_sends_a_multipage_document_in_one_call_and_regions_as_crops():
    pages = list(process_document(SAMPLES / "invoice_two_page.pdf", Settings(workers=1)).pages)
    routed = pages[1].decision.model_copy(update={"route": "vlm", "reasons": ("low_ocr_confidence",)})
    pages[1] = pages[1].model_copy(update={"decision": routed})
    planned = plan(pages, Invoice, {"total": fv("total", Decimal(1), 0.9, "layout")}, max_pages=4)
    assert [(p.kind, p.page_numbers, p.bbox) for p in planned] == [("document", (1, 2), None)]

    table_pages = list(process_document(SAMPLES / "complex_table.pdf", Settings(workers=1)).pages)
    planned = plan(table_pages, Invoice, {}, max_pages=4)
    kinds = [p.kind for p in planned]
    assert kinds[0] == "document" and "complex_table" in kinds
    crop = planned[kinds.index("complex_table")]
    assert crop.schema is Table and crop.bbox is not None and crop.element_id
    assert crop.bbox.area < table_pages[0].parsed.width * table_pages[0].parsed.height


def test_a_vlm_table_replaces_the_element_table_html_only_when_it_has_cells():
    pages = list(process_document(SAMPLES / "complex_table.pdf", Settings(workers=1)).pages)
    table = next(e for e in pages[0].parsed.elements if e.kind == "table")
    req = Request("complex_table", Table, (1,), table.bbox, table.element_id, table.element_id)
    cells = [{"row": 0, "col": 0, "text": "Region", "row_span": 2, "col_span": 1, "is_header": True}]
    good = VlmResult(status="ok", data={"n_rows": 1, "n_cols": 1, "header_rows": 1, "cells": cells},
                     field_confidence={"cells": 0.9, "n_rows": 0.8, "n_cols": 0.8, "header_rows": 0.7}, model="m")
    out = assemble(pages, [1], Invoice, [req], [good])
    new = next(e for e in out.pages[0].parsed.elements if e.element_id == table.element_id)
    assert new.table == Table.model_validate(good.data) and new.source == f"{table.source}+vlm"
    assert new.table.html() == '<table><tr><th rowspan="2">Region</th></tr></table>' and out.pages[0].vlm_status == "ok"
    ex = out.extra[0]
    assert ex.schema_name == "table" and ex.fields["cells"].source == "vlm" and ex.fields["cells"].bbox == table.bbox
    assert json.loads(ex.raw_json)["layout_table_html"] == table.table.html()
    empty = VlmResult(status="ok", data={"n_rows": 0, "n_cols": 0, "header_rows": 0, "cells": []}, model="m")
    out = assemble(pages, [1], Invoice, [req], [empty])
    assert next(e for e in out.pages[0].parsed.elements if e.element_id == table.element_id).table == table.table


def test_a_vlm_table_answer_and_the_layout_table_are_written_by_the_same_function():
    doc = process_document(SAMPLES / "complex_table.pdf", Settings(workers=1))
    table = next(e for e in doc.pages[0].parsed.elements if e.kind == "table")
    html = {r["element_id"]: r["table_html"] for r in element_rows(doc, "r")}
    assert html[table.element_id] == table.table.html() and 'colspan="4"' in html[table.element_id]
    answer = {"n_rows": 2, "n_cols": 3, "header_rows": 1, "cells": [
        {"row": 0, "col": 0, "text": "Region", "row_span": 2, "col_span": 1, "is_header": True},
        {"row": 0, "col": 1, "text": "2023", "row_span": 1, "col_span": 2, "is_header": True},
        {"row": 1, "col": 1, "text": "Q1", "row_span": 1, "col_span": 1, "is_header": True}]}
    req = Request("complex_table", Table, (1,), table.bbox, table.element_id, table.element_id)
    out = assemble(list(doc.pages), [1], Invoice, [req], [VlmResult(status="ok", data=answer, model="m")])
    html = {r["element_id"]: r["table_html"] for r in element_rows(doc.model_copy(update={"pages": tuple(out.pages)}), "r")}
    assert html[table.element_id] == Table.model_validate(answer).html() == (
        '<table><tr><th rowspan="2">Region</th><th colspan="2">2023</th></tr><tr><th>Q1</th></tr></table>')


def test_each_region_kind_is_one_registered_processor(monkeypatch):
    assert {p.reason: p.schema.schema_name for p in stage.PROCESSORS} == {
        "complex_table": "table", "chart": "chart", "handwriting": "handwriting"}
    assert all(p.hint for p in stage.PROCESSORS)
    pages = list(process_document(SAMPLES / "chart.pdf", Settings(workers=1)).pages)
    layout = {"total": FieldValue(name="total", value=Decimal(1), confidence=0.9, source="layout")}  # not from page 1
    assert [r.kind for r in plan(pages, Invoice, layout, max_pages=4)] == ["chart"]
    # unregistered, a routed chart has no processor: the page goes to the document schema instead
    monkeypatch.setattr(stage, "PROCESSORS", tuple(p for p in stage.PROCESSORS if p.reason != "chart"))
    assert [r.kind for r in plan(pages, Invoice, layout, max_pages=4)] == ["document"]


def test_the_stage_takes_its_pixels_from_the_injected_render():
    from PIL import Image

    from docroute.pipelines.ingest import open_file
    from docroute.pipelines.vlm.render import handle_renderer

    path = SAMPLES / "complex_table.pdf"
    pages = list(process_document(path, Settings(workers=1)).pages)
    vlm = Settings().vlm.model_copy(update={"backend": "openai", "model": "m", "server_url": "http://127.0.0.1:9/v1",
                                            "retries": 0, "timeout_s": 2.0})
    planned = plan(pages, Invoice, {}, vlm.max_pages)
    calls = []

    def render(n, bbox, max_pixels):
        calls.append((n, bbox, max_pixels))
        return Image.new("RGB", (8, 8))

    with open_file(path) as doc:
        out = stage.run_vlm_stage(doc, pages, Invoice, vlm, layout_fields={}, render=render)
        assert out.status in ("failed", "timeout") and calls  # nothing listens on port 9
        assert calls == [(n, r.bbox, vlm.max_pixels) for r in planned for n in r.page_numbers]
        box = planned[-1].bbox
        default = handle_renderer(doc)  # the page, and a crop at its own dpi: both use the budget
        page, crop = default(1, None, vlm.max_pixels), default(1, box, vlm.max_pixels)
    for img in (page, crop):
        assert 0.98 < img.width * img.height / vlm.max_pixels < 1.02
    assert abs(crop.width / crop.height - box.width / box.height) < 0.02 * box.width / box.height


# ------------------------------------------------------------------------------ the pipeline, for real

def test_default_backend_none_keeps_the_layout_result():
    result = process_document(SAMPLES / "chart.pdf", Settings(workers=1))
    assert [p.vlm_status for p in result.pages] == ["unavailable"]
    assert len(result.extractions) == 1 and "vlm_unavailable" in result.extractions[0].review_reasons


def test_pipeline_with_the_tiny_transformers_model():
    from docroute.pipelines.route import RouterOptions

    settings = tiny_settings()
    budget = settings.vlm.max_pixels
    for name, reason, target in (("complex_table.pdf", "complex_table", "table"), ("chart.pdf", "chart", "chart"),
                                 ("handwriting_note.pdf", "handwriting", "handwriting")):
        result = process_document(SAMPLES / name, settings)
        assert result.status == "ok" and [p.decision.reasons for p in result.pages] == [(reason,)]
        assert [p.vlm_status for p in result.pages] == ["ok"]
        invoice, *extra = result.extractions
        raw = json.loads(invoice.raw_json)  # no bill: the invoice schema is never asked of the VLM
        assert raw["not_applicable"] == "other" and "vlm_call" not in raw and not invoice.fields
        assert not any(r.startswith("vlm_") for r in invoice.review_reasons)
        assert [e.schema_name for e in extra] == [target]
        call = json.loads(extra[0].raw_json)["vlm_call"]
        assert call["status"] == "ok" and call["image_pixels"] <= budget and call["pages"] == [1]
    # a scanned invoice whose OCR the router doubts (a strict threshold): the document call reads it whole
    strict = tiny_settings(router=RouterOptions(ocr_mean_conf_min=0.99))
    result = process_document(SAMPLES / "invoice_scanned.pdf", strict)
    assert result.document_type.kind == "invoice" and result.pages[0].decision.reasons[0] == "low_ocr_confidence"
    assert set(result.pages[0].decision.reasons) <= {"low_ocr_confidence", "extraction_low_confidence"}  # + v3
    invoice = result.extractions[0]
    raw = json.loads(invoice.raw_json)
    assert set(raw) >= {"layout", "vlm", "merged_from", "vlm_call"} and raw["vlm_call"]["status"] == "ok"
    assert raw["vlm_call"]["image_pixels"] <= budget and raw["vlm_call"]["pages"] == [1]
    assert {fvalue.source for fvalue in invoice.fields.values()} <= {"layout", "ocr", "vlm", "derived"}
    assert all(0 <= f.confidence <= 1 for f in invoice.fields.values())
    plain = process_document(SAMPLES / "invoice_ruled.pdf", settings)  # not routed: no VLM call
    assert [p.vlm_status for p in plain.pages] == ["not_routed"] and "vlm" not in json.loads(plain.extractions[0].raw_json)


def test_pipeline_with_the_server_backend_matches_transformers():
    from docroute.extractors.vlm.serve import serve_in_thread

    direct = process_document(SAMPLES / "chart.pdf", tiny_settings())
    server, url = serve_in_thread(get_backend("transformers", tiny_vlm.options("qwen2_5_vl")))
    try:
        vlm = tiny_settings().vlm.model_copy(update={"server_url": url, "concurrency": 2})
        over_http = process_document(SAMPLES / "chart.pdf", tiny_settings(vlm_backend="openai", vlm_model=None, vlm=vlm))
    finally:
        server.shutdown()
        server.server_close()
    assert [p.vlm_status for p in over_http.pages] == ["ok"]
    assert [e.data for e in over_http.extractions] == [e.data for e in direct.extractions]


def test_a_backend_that_cannot_load_keeps_the_layout_result_flagged(tmp_path):
    result = process_document(SAMPLES / "chart.pdf", tiny_settings(vlm_model=str(tmp_path / "no-model")))
    assert result.status == "ok" and [p.vlm_status for p in result.pages] == ["failed"]
    ex = result.extractions[0]
    assert "vlm_failed" in ex.review_reasons and "not a model folder" in json.loads(ex.raw_json)["vlm_call"]["error"]
    layout_only = process_document(SAMPLES / "chart.pdf", Settings(workers=1)).extractions[0]
    assert ex.data == layout_only.data


def test_backend_auto_chooses_itself(tmp_path):
    from docroute.extractors.vlm import VlmOptions

    assert VlmOptions().backend == "auto" and VlmOptions().resolved_backend() == "none"
    assert "DOCROUTE_VLM_MODEL" in VlmOptions().why_none()
    assert VlmOptions(model=str(tmp_path)).resolved_backend() == "transformers"
    assert VlmOptions(model="qwen2.5-vl-3b", server_url="http://127.0.0.1:8000/v1").resolved_backend() == "openai"
    named = VlmOptions(model="Qwen/Qwen2.5-VL-3B-Instruct")  # a hub name, not a downloaded folder
    assert named.resolved_backend() == "none" and "not a local folder" in named.why_none()
    assert VlmOptions(backend="none", model=str(tmp_path)).resolved_backend() == "none"


def test_a_model_folder_alone_turns_the_vlm_on_and_the_summary_says_which(monkeypatch):
    """DOCROUTE_VLM_MODEL naming a local folder is enough (no DOCROUTE_VLM_BACKEND); a name that is
    no folder leaves routed pages without an answer, and the run summary says why."""
    from docroute.flows.core import vlm_in_use
    from docroute.pipelines.batch import RunTotals, document_summary

    o = tiny_vlm.options("qwen2_5_vl")
    small = {"vlm": dict(min_pixels=o.min_pixels, max_pixels=o.max_pixels, max_new_tokens=o.max_new_tokens,
                         max_string_chars=o.max_string_chars, max_list_items=o.max_list_items, loop_window=0,
                         dtype="float32")}
    monkeypatch.setenv("DOCROUTE_VLM_MODEL", o.model)
    settings = load_settings(workers=1, **small)
    result = process_document(SAMPLES / "chart.pdf", settings)
    chart_page = result.pages[0]
    assert chart_page.decision.route == "vlm" and chart_page.vlm_status != "unavailable"
    totals = RunTotals()
    totals.add(document_summary(result))
    assert vlm_in_use(settings, totals).startswith("transformers: ")
    assert vlm_in_use(settings, totals).endswith(f"{Path(o.model).name} (1 document(s))")  # the model that answered

    monkeypatch.setenv("DOCROUTE_VLM_MODEL", "Qwen/Qwen2.5-VL-3B-Instruct")
    settings = load_settings(workers=1)
    summary = document_summary(process_document(SAMPLES / "chart.pdf", settings))
    assert summary.pages_vlm == 1 and summary.vlm_unanswered == 1 and summary.vlm_why == "unavailable"
    totals = RunTotals()
    totals.add(summary)
    said = vlm_in_use(settings, totals)
    assert said.startswith("none: ") and "not a local folder" in said
    assert totals.vlm_why == {"unavailable": 1} and totals.counts()["vlm_unanswered"] == 1


# ------------------------------------------------------------- escalation after extraction (policy v3)

def _short_invoice(path: Path) -> Path:
    """An invoice that prints no subtotal, tax or items: its total cannot be reconciled."""
    import pymupdf

    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    for i, line in enumerate(("ACME Tools GmbH", "Hauptstrasse 1, 10115 Berlin", "", "INVOICE",
                              "Invoice number: INV-2024-0042", "Invoice date: 15.03.2024", "",
                              "Consulting services, March 2024", "", "Total: 120.00 EUR")):
        page.insert_text((72, 72 + 18 * i), line, fontsize=11)
    doc.save(path)
    return path


def test_a_doubtful_extraction_reaches_the_vlm_with_the_reason_and_the_fields(tmp_path):
    from docroute.pipelines.route import ESCALATION

    result = process_document(_short_invoice(tmp_path / "short.pdf"), tiny_settings())
    page = result.pages[0]
    assert page.decision.route == "vlm" and page.decision.reasons == (ESCALATION,) and page.decision.vlm_scope == "page"
    assert page.decision.policy_version == "3"
    why = page.decision.explanation
    assert why.startswith(f"{ESCALATION}: ") and all(f in why for f in ("subtotal", "tax_total", "line_items"))
    assert page.vlm_status == "ok"
    invoice = result.extractions[0]
    raw = json.loads(invoice.raw_json)
    assert raw["vlm_call"]["status"] == "ok" and raw["vlm_call"]["pages"] == [1] and raw["routed_pages"] == [1]
    assert raw["layout"]["invoice_number"]["value"] == "INV-2024-0042" and "vlm" in raw
    assert ESCALATION not in invoice.review_reasons, "the VLM answered: its result is validated on its own"


def test_escalation_keeps_to_the_budgets(tmp_path):
    from docroute.pipelines.budget import RunBudget
    from docroute.pipelines.context import RunContext
    from docroute.pipelines.route import ESCALATION, RouterOptions

    path = _short_invoice(tmp_path / "short.pdf")
    layout_only = process_document(path, Settings(workers=1)).extractions[0]
    capped = process_document(path, tiny_settings(router=RouterOptions(max_vlm_pages_per_document=0)))
    ledger = RunBudget.create(tmp_path / "_budget" / "run.json", 0)
    spent = process_document(path, tiny_settings(), RunContext(run_id="r", budget_file=ledger.path))
    for result, budget in ((capped, "document budget of 0"), (spent, "run budget of 0")):
        page = result.pages[0]
        assert page.decision.route == "layout" and page.decision.reasons == (ESCALATION, "budget_exceeded")
        assert budget in page.decision.explanation and "subtotal" in page.decision.explanation
        assert page.vlm_status == "not_routed"
        ex = result.extractions[0]
        assert ESCALATION in ex.review_reasons and "vlm_call" not in json.loads(ex.raw_json)
        assert ex.data == layout_only.data
    assert ledger.state()["wanted"] == {spent.document.doc_id: 1}


def test_without_a_vlm_an_escalated_document_keeps_its_layout_values_flagged(tmp_path):
    from docroute.pipelines.route import ESCALATION, RouterOptions

    path = _short_invoice(tmp_path / "short.pdf")
    result = process_document(path, Settings(workers=1))
    page, ex = result.pages[0], result.extractions[0]
    assert page.decision.route == "vlm" and ESCALATION in page.decision.reasons and page.vlm_status == "unavailable"
    assert {ESCALATION, "vlm_unavailable", "unreconciled:no_subtotal"} <= set(ex.review_reasons)
    assert ex.data["invoice_number"] == "INV-2024-0042" and ex.data["total"] == Decimal("120.00")
    assert {f.source for f in ex.fields.values()} == {"layout"}
    off = process_document(path, Settings(workers=1, router=RouterOptions(escalate_after_extraction=False)))
    assert off.pages[0].decision.route == "layout" and ESCALATION not in off.extractions[0].review_reasons
    assert off.extractions[0].data == ex.data
