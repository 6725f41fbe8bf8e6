"""The router: regions from the detectors, the pure policy, addresses, budgets, and the pages table."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path

import pyarrow as pa
import pytest

from docroute.extractors import detect, layout_pymupdf, pdf
from docroute.pipelines import route
from docroute.pipelines.budget import RunBudget, apply_budgets, run_context
from docroute.pipelines.ingest import open_file
from docroute.pipelines.process import process_document, process_page
from docroute.pipelines.route import RouterOptions
from docroute.pipelines.settings import Settings
from docroute.pipelines.sink import page_rows
from docroute.schemas import BBox, Document, DocumentResult, Region
from docroute.schemas.contract import PAGES

from conftest import REALDOCS, SAMPLES

T = RouterOptions()
PAGE = {"page_width": 600.0, "page_height": 800.0, "has_text_layer": 1.0}


def _table(x0, y0, head=0.0, spans=0.0, score=0.5) -> Region:
    return Region(kind="table", bbox=BBox(x0=x0, y0=y0, x1=x0 + 200, y1=y0 + 100), score=score,
                  evidence={"rows": 5.0, "columns": 4.0, "spanning_header_cells": head, "ruled_spanning_cells": spans},
                  source="tables:word_grid", note="a table")


def _chart(score, box=(50, 50, 550, 750)) -> Region:
    return Region(kind="chart", bbox=BBox(x0=box[0], y0=box[1], x1=box[2], y1=box[3]), score=score, note="a chart")


def _digital(name: str, index: int = 0):
    with pdf.open_document(SAMPLES / name, "application/pdf") as doc:
        page = doc.load_page(index)
        content = pdf.read_page(page, index + 1)
        parsed = layout_pymupdf.parse_page(page, content, content.words, ocr=False)
        found = detect.detect_page(content, parsed, render=lambda box, dpi: pdf.render(page, dpi, gray=False, clip=box,
                                                                                      annots=False))
    return content, parsed, found


# --- the policy ----------------------------------------------------------------------------------

def test_policy_is_pure_versioned_and_page_routes_when_any_region_does():
    regions = [_table(40, 500), _table(40, 100, head=2.0, score=0.9), _chart(0.3, (300, 300, 500, 450))]
    a = route.decide(PAGE, T, regions, 3)
    assert a == route.decide(PAGE, T, list(regions), 3), "same inputs, same decision"
    assert a.policy_version == route.POLICY_VERSION
    assert a.route == "vlm" and a.reasons == ("complex_table",) and a.scores == {"complex_table": 0.9}
    by_address = {r.address: r for r in a.regions}
    assert set(by_address) == {"p3/table/1", "p3/table/2", "p3/chart/1"}
    assert by_address["p3/table/1"].route == "vlm" and "spanning header" in by_address["p3/table/1"].why
    assert by_address["p3/table/2"].route == "layout" and by_address["p3/table/2"].why.startswith("plain table")
    assert by_address["p3/chart/1"].route == "layout" and "< 0.60" in by_address["p3/chart/1"].why
    assert a.vlm_scope == "regions" and "p3/table/1" in a.explanation
    # thresholds are settings: a stricter header rule leaves the table on the layout route
    strict = route.decide(PAGE, RouterOptions(table_header_spans_min=3), regions, 3)
    assert strict.route == "layout" and strict.reasons == () and strict.explanation == "no routing rule fired"


def test_addresses_are_stable_whatever_order_the_detectors_return():
    regions = [_table(40, 500), _table(40, 100), _table(300, 100), _chart(0.9, (10, 10, 100, 60))]
    one = {r.address: r.bbox for r in route.decide(PAGE, T, regions, 1).regions}
    two = {r.address: r.bbox for r in route.decide(PAGE, T, list(reversed(regions)), 1).regions}
    assert one == two
    assert one["p1/table/1"].y0 == 100 and one["p1/table/1"].x0 == 40  # reading order: top, then left
    assert one["p1/table/3"].y0 == 500


def test_whole_page_goes_when_routed_regions_cover_most_of_it():
    assert route.decide(PAGE, T, [_chart(0.9)], 1).vlm_scope == "page"
    small = route.decide(PAGE, T, [_chart(0.9, (50, 50, 250, 200))], 1)
    assert small.route == "vlm" and small.vlm_scope == "regions"
    assert route.decide(PAGE, RouterOptions(page_share_for_whole_page=0.01), [_chart(0.9, (50, 50, 250, 200))], 1).vlm_scope == "page"


def test_low_ocr_confidence_is_page_level_and_a_routed_chart_explains_missing_words():
    scan = {**PAGE, "has_text_layer": 0.0, "ocr_words": 2.0, "ocr_mean_conf": 0.5, "ocr_p10_conf": 0.4, "ink_share": 0.05}
    alone = route.decide(scan, T, [], 1)
    assert alone.reasons == ("low_ocr_confidence",) and alone.vlm_scope == "page"
    assert alone.regions[0].address == "p1/text/1"
    with_chart = route.decide(scan, T, [_chart(0.9)], 1)
    assert with_chart.reasons == ("chart",)
    text = next(r for r in with_chart.regions if r.kind == "text")
    assert text.route == "layout" and "routed chart" in text.why
    unread = {**scan, "ocr_words": 80.0, "ocr_mean_conf": 0.9, "ocr_p10_conf": 0.8, "ocr_unread_print": 0.6}
    assert route.decide(unread, T, [], 1).reasons == ("low_ocr_confidence",)
    assert route.decide(unread, RouterOptions(ocr_unread_print_max=0.7), [], 1).route == "layout"


# --- budgets -------------------------------------------------------------------------------------

def test_document_budget_keeps_the_most_valuable_pages_and_says_what_was_left_out():
    decisions = [route.decide(PAGE, T, [_chart(s, (50, 50, 150, 150))], n) for n, s in enumerate((0.7, 0.95, 0.8, 0.2), 1)]
    assert [d.route for d in decisions] == ["vlm", "vlm", "vlm", "layout"]
    kept = route.apply_budget(decisions, 2)
    assert [d.route for d in kept] == ["layout", "vlm", "vlm", "layout"]
    left = kept[0]
    assert left.reasons == ("chart", "budget_exceeded") and left.scores["budget_exceeded"] == 0.7
    assert "document budget of 2" in left.explanation and "ranks 3 of 3" in left.explanation
    assert all(r.route == "layout" and r.why.startswith("budget_exceeded") for r in left.regions)
    assert left.vlm_scope == "none"
    assert route.apply_budget(decisions, None) == decisions
    assert route.apply_budget(decisions, 0)[1].route == "layout"


def test_escalation_after_extraction_names_the_fields_and_the_budget_ranks_it():
    """Policy v3: doubtful fields send the pages they were read from; a missing one the first and last."""
    pages = [route.decide(PAGE, T, [], n) for n in (1, 2, 3)]
    problems = {"total": ("confidence 0.41 < 0.60", 0.41, 2), "invoice_number": ("missing", 0.0, None)}
    out = route.escalate(pages, problems, [1, 2, 3])
    assert [d.route for d in out] == ["vlm", "vlm", "vlm"] and all(d.vlm_scope == "page" for d in out)
    assert all(d.reasons == (route.ESCALATION,) and d.policy_version == "3" for d in out)
    assert out[1].explanation == "extraction_low_confidence: total confidence 0.41 < 0.60"
    assert "invoice_number missing" in out[0].explanation and "total" not in out[0].explanation
    assert [d.scores[route.ESCALATION] for d in out] == [1.0, 0.59, 1.0]
    assert route.escalate(pages, {}, [1, 2, 3]) == pages
    kept = route.apply_budget(out, 1)  # the most valuable first: a missing field over a doubtful one
    assert [d.route for d in kept] == ["vlm", "layout", "layout"]
    assert kept[1].reasons == (route.ESCALATION, "budget_exceeded") and "total" in kept[1].explanation
    chart = route.decide(PAGE, T, [_chart(0.7, (50, 50, 150, 150))], 1)  # already routed: the reason joins
    both = route.escalate([chart], {"total": ("missing", 0.0, None)}, [1])[0]
    assert both.reasons == ("chart", route.ESCALATION) and both.explanation.startswith("chart: ")


def _reserve(args):
    path, doc = args
    return RunBudget(Path(path)).reserve(doc, 3)[0]


def test_run_budget_ledger_is_shared_by_worker_processes(tmp_path):
    ledger = RunBudget.create(tmp_path / "_budget" / "run.json", 5)
    with get_context("spawn").Pool(2) as pool:
        grants = pool.map(_reserve, [(str(ledger.path), f"doc{i}") for i in range(4)])
    assert sum(grants) == 5 and max(grants) <= 3, grants
    assert ledger.state()["spent"] == 5
    assert ledger.reserve("doc0", 3)[0] == grants[0], "a retried document gets its earlier grant back"
    context = run_context(RouterOptions(max_vlm_pages_per_run=4), tmp_path, "r1")
    assert context.budget_file == (tmp_path / "_budget" / "r1.json").resolve() and context.run_id == "r1"
    assert run_context(RouterOptions(), tmp_path, "r2").budget_file is None
    settings = Settings(workers=1, router=RouterOptions(max_vlm_pages_per_run=4))
    assert "budget" not in json.dumps(settings.model_dump(mode="json")).replace("max_vlm_pages", ""), \
        "runtime state stays out of the settings (and so out of runs.config)"


def test_process_document_applies_document_and_run_budgets(tmp_path):
    import pymupdf

    merged = pymupdf.open()
    for name in ("handwriting_note.pdf", "chart.pdf", "complex_table.pdf", "plain_text.pdf"):
        with pymupdf.open(SAMPLES / name) as src:
            merged.insert_pdf(src)
    path = tmp_path / "three_routed.pdf"
    merged.save(path)
    open_doc = process_document(path, Settings(workers=1))
    assert [p.decision.route for p in open_doc.pages] == ["vlm", "vlm", "vlm", "layout"]
    capped = process_document(path, Settings(workers=1, router=RouterOptions(max_vlm_pages_per_document=1)))
    routes = [p.decision.route for p in capped.pages]
    assert routes.count("vlm") == 1
    left = [p for p in capped.pages if "budget_exceeded" in p.decision.reasons]
    assert len(left) == 2 and all(p.decision.route == "layout" for p in left)
    # the run budget: the first document takes what is left, the second gets none
    ledger = RunBudget.create(tmp_path / "ledger.json", 2)
    first = apply_budgets(list(open_doc.pages), RouterOptions(), "doc-a", ledger.path)
    second = apply_budgets(list(open_doc.pages), RouterOptions(), "doc-b", ledger.path)
    assert [p.decision.route for p in first].count("vlm") == 2
    assert [p.decision.route for p in second].count("vlm") == 0
    assert "run budget of 2 VLM page(s): 0 left" in second[0].decision.explanation


# --- the pages table -----------------------------------------------------------------------------

def test_pages_table_carries_route_regions_with_global_addresses():
    with open_file(SAMPLES / "chart.pdf") as doc:
        result, _ = process_page(doc, 1, Settings(workers=1))
    doc_result = DocumentResult(
        document=Document(doc_id="abc123", source_path="chart.pdf", file_name="chart.pdf", mime_type="application/pdf",
                          size_bytes=1, n_pages=1),
        status="ok", pages=(result,), processed_at=datetime.now(UTC), pipeline_version="test",
    )
    rows = page_rows(doc_result, "run1")
    table = pa.Table.from_pylist(rows, schema=PAGES)
    regions = table.column("route_regions").to_pylist()[0]
    routed = [r for r in regions if r["route"] == "vlm"]
    assert routed and routed[0]["address"] == "abc123/p1/chart/1" and routed[0]["reason"] == "chart"
    assert dict(routed[0]["evidence"])["axes"] == 1.0 and routed[0]["why"]
    assert table.column("vlm_scope").to_pylist() == [result.decision.vlm_scope]


# --- detectors on the generated samples ----------------------------------------------------------

def test_detectors_put_regions_where_the_samples_drew_them():
    _, _, chart = _digital("chart.pdf")
    c = next(r for r in chart.regions if r.kind == "chart")
    # make_samples.py draws the axes from (110, 130) to (530, 500)
    assert c.bbox.x0 <= 110 and c.bbox.x1 >= 528 and c.bbox.y0 <= 132 and c.bbox.y1 >= 500 and c.score >= 0.6
    _, _, table = _digital("complex_table.pdf")
    t = next(r for r in table.regions if r.kind == "table")
    assert t.evidence["spanning_header_cells"] + t.evidence["ruled_header_spanning_cells"] >= 2  # 2023 | 2024
    assert t.bbox.y0 <= 96 and t.bbox.x0 <= 36
    content, _, hand = _digital("handwriting_note.pdf")
    ink = [r for r in hand.regions if r.source == "handwriting:ink_annotation"]
    assert len(ink) == 1 and ink[0].bbox.overlap_of(content.ink_boxes[0]) == 1.0
    pen = [r for r in hand.regions if r.source == "handwriting:pen_strokes"]
    assert len(pen) >= 2, "the pen-drawn remarks and name are found as vector strokes"


def test_plain_invoice_tables_are_considered_and_left_on_the_layout_route():
    _, _, found = _digital("invoice_ruled.pdf")
    tables = [r for r in found.regions if r.kind == "table"]
    assert tables
    decision = route.decide(found.signals, T, found.regions, 1)
    assert decision.route == "layout"
    assert all(r.route == "layout" for r in decision.regions)


@pytest.mark.parametrize("name", ["TestamentsDePoilus_will_AN_0077-0.jpg"])
def test_handwriting_on_a_scan_is_a_region_of_unread_irregular_ink(name):
    path = REALDOCS / "testaments_de_poilus" / name
    if not path.exists():
        pytest.skip("realdocs not available")
    with open_file(path) as doc:
        result, _ = process_page(doc, 1, Settings(workers=1))
    hand = [r for r in result.decision.regions if r.reason == "handwriting" and r.route == "vlm"]
    assert hand and hand[0].source == "handwriting:unread_ink"
    assert hand[0].evidence["irregularity"] >= 0.45 and hand[0].bbox.area >= 0.3 * result.parsed.width * result.parsed.height
