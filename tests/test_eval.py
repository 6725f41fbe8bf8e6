"""`docroute eval`: field scores, line items, router confusion and calibration, on real runs."""

from __future__ import annotations

import csv
import json
import shutil
import sys

import pytest

from docroute.pipelines.evaluate import _calibration, evaluate, load_labels
from docroute.schemas import FieldValue

from conftest import REALDOCS, REPO, SAMPLES, all_expected, cli

sys.path.insert(0, str(REPO / "bench"))  # worker processes import it by name too


def test_calibration_bins_and_ece():
    rows, ece = _calibration([(0.95, True), (0.95, True), (0.95, False), (0.15, False)])
    assert [r["n"] for r in rows] == [1, 3]
    # bin 0.9-1.0: conf .95, acc .667 -> |.283| * 3/4 ; bin 0.1-0.2: conf .15, acc 0 -> .15 * 1/4
    assert ece == pytest.approx(0.2833 * 0.75 + 0.15 * 0.25, abs=1e-3)


def test_eval_on_sample_run(sample_run, prefect_api, tmp_path):
    out, _ = sample_run
    proc = cli(["eval", str(SAMPLES), "--out", str(out)], api_url=prefect_api)
    assert proc.returncode == 0, proc.stderr
    assert "overall" in proc.stdout and "ECE" in proc.stdout and "router" in proc.stdout
    report = json.loads((out / "eval.json").read_text())
    cases = [e for e in all_expected() if e["invoice"]]
    assert report["per_field"]["invoice_number"]["labelled"] == len(cases)
    assert report["per_field"]["invoice_number"]["correct"] == len(cases)
    assert report["overall"]["recall"] >= 0.9
    routed = sum(r == "vlm" for e in all_expected() for r in e["expected_route"])
    assert {"label": "vlm", "predicted": "vlm", "pages": routed} in report["router_confusion"]
    assert 0 <= report["ece"] <= 1 and report["calibration"]
    st = report["straight_through"]  # the clean digital invoices reconcile: straight through, every field right
    assert f"/{st['of']}" in report["overall"]["exact_match_documents"] and 1 <= st["documents"] < st["of"]
    assert st["fields"] > 0 and st["fields_right"] == st["fields"] and "straight through" in proc.stdout

    # a wrong label lowers exactly that field's precision
    labels = tmp_path / "labels.csv"
    with labels.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "field", "value"])
        w.writerow(["invoice_ruled.pdf", "invoice_number", "WRONG-1"])
        ruled = next(e for e in cases if e["file"] == "invoice_ruled.pdf")
        w.writerow(["invoice_ruled.pdf", "total", ruled["invoice"]["total"]])
        w.writerow(["invoice_ruled.pdf", "route:1", "vlm"])
    r = evaluate(out, load_labels(labels))
    assert r.per_field["invoice_number"].correct == 0 and r.per_field["total"].correct == 1
    assert r.confusion == {("vlm", "layout"): 1}


def test_eval_on_invoice2data(prefect_api, tmp_path):
    src = REALDOCS / "invoice2data"
    if not src.is_dir():
        pytest.skip("../shared/realdocs is not beside the checkout")
    folder = tmp_path / "in"
    folder.mkdir()
    documents = []
    for pdf in sorted(src.glob("*.pdf")):
        shutil.copy(pdf, folder / pdf.name)
        gt = json.loads(pdf.with_suffix(".json").read_text())[0]
        fields = {"invoice_number": gt.get("invoice_number", "").lstrip("#") or None, "invoice_date": gt.get("date"),
                  "total": gt.get("amount"), "currency": gt.get("currency")}
        documents.append({"file": pdf.name, "fields": {k: v for k, v in fields.items() if v is not None},
                          "routes": ["layout"]})
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"documents": documents}))
    out = tmp_path / "out"
    assert cli(["run", str(folder), "--out", str(out)], api_url=prefect_api).returncode == 0
    proc = cli(["eval", str(labels), "--out", str(out)], api_url=prefect_api)
    assert proc.returncode == 0, proc.stderr
    print(proc.stdout)
    report = json.loads((out / "eval.json").read_text())
    assert report["per_field"]["invoice_number"]["recall"] >= 0.9
    assert report["per_field"]["invoice_date"]["recall"] >= 0.9
    assert report["overall"]["precision"] >= 0.9
    assert {"label": "layout", "predicted": "layout", "pages": len(documents)} in report["router_confusion"]


# ------------------------------------------------------------------ match rules, straight through, calibration

def test_match_rules_for_labels_not_printed_verbatim():
    from docroute.pipelines.evaluate import field_right

    assert field_right("BOOK TA.K (TAMAN DAYA) SDN BHD", "BOOK TA .K (TAMAN DAYA) SDN BHD", "similar:0.9")
    assert not field_right("TAMAN DAYA", "BOOK TA .K (TAMAN DAYA) SDN BHD", "similar:0.9")
    assert field_right("ALDI SÜD GmbH", "aldi", "contains") and not field_right("Lidl", "aldi", "contains")
    assert field_right("#BLR_WFLD20151000982590", "BLR_WFLD20151000982590", "id")
    assert field_right("Amazon Web Services, Inc.", "Amazon Web Services", "token_set:0.8")
    assert field_right("12.5", 12.50) and not field_right(None, "12.50") and not field_right("12.51", "12.50")


def test_calibration_fit_is_monotone_pools_ties_and_falls_back():
    import calibrate

    from docroute.extractors.fields.calibration import calibrate_fields, calibrated

    points = [(0.9, True)] * 8 + [(0.9, False)] * 2 + [(0.5, True), (0.5, False), (0.5, False), (0.2, False)] + \
        [(0.7, True), (0.7, True), (0.7, False)]
    blocks = calibrate.isotonic(points)
    assert [b[0] for b in blocks] == sorted(b[0] for b in blocks) and sum(b[2] for b in blocks) == len(points)
    rates = [k / n for _, k, n in blocks]
    assert rates == sorted(rates) and (0.9, 8, 10) in blocks, "equal raw values share one block"
    m = calibrate.fit_group(points)
    assert m["y"] == sorted(m["y"]) and m == calibrate.fit_group(list(reversed(points))), "monotone, deterministic"
    table = {"money/ocr": m, "*/layout": {"x": [0.0, 0.8], "y": [0.3, 0.95], "n": 40}}
    assert calibrated("total", "ocr", 0.95, table) == m["y"][-1] and calibrated("total", "ocr", 0.1, table) == m["y"][0]
    assert calibrated("vendor_name", "layout", 0.85, table) == 0.95, "no map of its own: */source"
    assert calibrated("vendor_name", "ocr", 0.85, table) == 0.85, "no map at all: left as it is"
    fields = {"total": FieldValue(name="total", value=1, confidence=0.95, source="ocr"),
              "iban": FieldValue(name="iban", value="X", confidence=0.95, source="einvoice")}
    out = calibrate_fields(fields, table)
    assert out["total"].confidence == m["y"][-1] and out["iban"] == fields["iban"]


def test_calibrated_confidence_holds_on_the_held_out_half(realdocs_results):
    """The fitted map (extractors/fields/calibration.json, fitted on the tuning half by bench/calibrate.py)
    on the test half, through the pipeline as it runs: ECE measured 0.106 when fitted (README; 0.112 raw:
    the rules fit the tuning half better than the test half); the floor leaves room for the noise of about
    140 values, and fails when a map says far more (or less) than the test half bears out — or says no
    more than "always right" (its ECE is the share of wrong values), which a floor alone would let pass."""
    import calibrate
    from realdocs_split import half_of

    docs = [(rel, lab) for rel, lab in calibrate.documents() if half_of(rel) == "test"]
    assert len(docs) >= 30
    # calibration on: the confidences the pipeline writes
    rows = [calibrate.raw_row(rel, result)
            for (rel, _), result in zip(docs, realdocs_results([rel for rel, _ in docs]), strict=True)]
    values = [v for row, (_, lab) in zip(rows, docs, strict=True) for v in calibrate.scored(row, lab)]
    assert len(values) >= 100
    ece = _calibration([(v["raw"], v["right"]) for v in values])[1]
    always_right = _calibration([(1.0, v["right"]) for v in values])[1]
    assert ece <= 0.13 and ece < always_right, (ece, always_right)
