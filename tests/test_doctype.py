"""The document type: invoices and receipts fill the invoice schema, other documents get no invented field.

Measured on ../shared/realdocs with the split fixed by file hash (tests/realdocs_split.json, written by
bench/realdocs_split.py): the cues and thresholds were tuned on the tuning half; the floors below are
asserted on the test half (bench/doctype_eval.py prints both halves).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from docroute.pipelines.process import process_document
from docroute.pipelines.settings import Settings

from conftest import REALDOCS, REPO, SAMPLES

sys.path.insert(0, str(REPO / "bench"))
import doctype_eval  # noqa: E402
import realdocs_split  # noqa: E402

SPLIT = json.loads((REPO / "tests" / "realdocs_split.json").read_text())["files"]


def test_the_split_is_the_hash_rule_written_down():
    if not REALDOCS.exists():
        pytest.skip("../shared/realdocs is not laid beside the checkout")
    assert SPLIT == realdocs_split.split()
    assert {"tune", "test"} == set(SPLIT.values())


def test_on_the_test_half_types_are_right_and_no_bill_is_surely_other(realdocs_results):
    docs = [r for r in realdocs_split.documents() if SPLIT[r["file"]] == "test"]
    rows = [doctype_eval.type_row(r, result)
            for r, result in zip(docs, realdocs_results([r["file"] for r in docs]), strict=True)]
    scored = [r for r in rows if "predicted" in r]
    assert len(scored) >= 90
    right = sum(r["label"] == r["predicted"] for r in scored) / len(scored)
    assert right >= 0.9, doctype_eval.report(rows)  # measured 0.957 (2026-11-28)
    # a bill taken surely for something else would lose its fields without a flag: never
    lost = [r["file"] for r in scored if r["label"] != "other" and r["predicted"] == "other" and r["confidence"] >= 0.7]
    assert not lost, lost
    bills = [r for r in scored if r["label"] != "other"]
    assert sum(r["predicted"] != "other" for r in bills) / len(bills) >= 0.85


@pytest.mark.parametrize("name, kind", [("invoice_ruled.pdf", "invoice"), ("invoice_photo.png", "invoice"),
                                        ("plain_text.pdf", "other"), ("complex_table.pdf", "other")])
def test_sample_documents_are_typed(name, kind):
    result = process_document(SAMPLES / name, Settings(workers=1))
    assert result.document_type.kind == kind
    assert result.document_type.evidence["words"] > 0


def test_a_letter_gets_no_invented_invoice_field_and_a_not_applicable_row():
    result = process_document(SAMPLES / "plain_text.pdf", Settings(workers=1))
    (invoice,) = [ex for ex in result.extractions if ex.schema_name == "invoice"]
    assert result.document_type.kind == "other" and result.document_type.confidence >= 0.7
    assert all(v in (None, []) for v in invoice.data.values()), invoice.data
    assert not invoice.fields and not invoice.needs_review and invoice.review_reasons == ()
    assert json.loads(invoice.raw_json)["not_applicable"] == "other"


def test_an_unsure_other_is_flagged_not_filled():
    result = process_document(SAMPLES / "chart.pdf", Settings(workers=1))  # a chart with few words
    (invoice,) = [ex for ex in result.extractions if ex.schema_name == "invoice"]
    assert result.document_type.kind == "other" and result.document_type.confidence < 0.7
    assert all(v in (None, []) for v in invoice.data.values())
    assert invoice.needs_review and "document_type_uncertain" in invoice.review_reasons


def test_the_documents_table_carries_the_type(tmp_path):
    import docroute
    from docroute.pipelines.sink import DeltaSink

    result = process_document(SAMPLES / "invoice_ruled.pdf", Settings(workers=1))
    DeltaSink(tmp_path, "invoice").write(result, "r1")
    (row,) = docroute.read(tmp_path)["documents"].to_dict("records")
    assert row["document_type"] == "invoice" and row["document_type_confidence"] >= 0.9
    assert dict(row["document_type_evidence"])["invoice_names"] >= 1


def test_a_custom_schema_is_filled_whatever_the_type():
    from docroute.extractors.doctype import schema_applies
    from docroute.schemas import DocumentType

    other = DocumentType(kind="other", confidence=0.95)
    assert not schema_applies("invoice", other) and schema_applies("purchase_order", other)
    assert schema_applies("invoice", DocumentType(kind="receipt", confidence=0.6))


def test_cues_live_in_the_data_file():
    from docroute.extractors import doctype

    assert Path(doctype.CUES).suffix == ".toml"
    cues = doctype.cues()
    assert {"invoice", "receipt", "amounts", "neutral"} <= set(cues)
    assert "kassenbon" in cues["receipt"]["strong"] and "invoice" in cues["invoice"]["strong"]


def test_a_receipt_scanned_on_a_full_sheet_is_typed_by_the_shape_of_its_print():
    """A till receipt on an A4-shaped scan (tuning half) prints "TAX INVOICE" and "INVOICE NO": by the
    page's shape it is a bill like any other, by the shape of its print a till strip, so a receipt."""
    if not REALDOCS.exists():
        pytest.skip("../shared/realdocs is not laid beside the checkout")
    rel = "sroie_train/X51007846357.jpg"
    assert SPLIT[rel] == "tune"
    result = process_document(REALDOCS / rel, Settings(workers=1))
    page = result.pages[0].parsed
    box = page.print_box
    assert page.width / page.height > 0.6 and box is not None and box.width / box.height < 0.5
    assert result.document_type.kind == "receipt" and result.document_type.evidence["narrow_page"] == 1.0
    assert result.document_type.evidence["invoice_names"] >= 1  # what typed it an invoice by the page's shape

    # by the page's shape alone it is an invoice, one cue point ahead of its receipt cues: the receipt
    # rules then fill what the invoice rules leave empty (here its total), never replacing a value
    from docroute.extractors import doctype
    from docroute.extractors.fields import extract
    from docroute.schemas.targets import Invoice

    whole = page.model_copy(update={"print_box": None})
    unsure = doctype.classify([whole])
    assert unsure.kind == "invoice" and unsure.confidence <= doctype.UNSURE_INVOICE
    assert doctype.field_rules(unsure) == "invoice_or_receipt"
    invoice_only, both = extract(Invoice, [whole], "invoice"), extract(Invoice, [whole], "invoice_or_receipt")
    assert "total" in set(both) - set(invoice_only)
    assert all(both[k] == v for k, v in invoice_only.items())
    assert doctype.field_rules(doctype.classify([page])) == "receipt"


def test_the_print_box_decides_narrowness_where_there_is_one():
    from docroute.extractors.doctype import classify
    from docroute.schemas import BBox, ParsedPage

    text = "Cash 10.00\nChange 0.50\nTotal 9.50\nInvoice no 12"
    wide = ParsedPage(page_number=1, width=595.0, height=842.0, has_text_layer=False, parser="ocr", text=text)
    strip = wide.model_copy(update={"print_box": BBox(x0=200.0, y0=100.0, x1=380.0, y1=700.0)})
    assert classify([wide]).evidence["narrow_page"] == 0.0
    assert classify([strip]).evidence["narrow_page"] == 1.0 and classify([strip]).kind == "receipt"
    # a narrow page stays narrow whatever its print box (a photo's background can widen the box of ink)
    tall = wide.model_copy(update={"width": 300.0, "print_box": BBox(x0=0.0, y0=0.0, x1=300.0, y1=320.0)})
    assert classify([tall]).evidence["narrow_page"] == 1.0
