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
