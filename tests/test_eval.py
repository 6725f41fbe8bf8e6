"""`docroute eval`: field scores, line items, router confusion and calibration, on real runs."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from docroute.pipelines.evaluate import _calibration, evaluate, load_labels

from conftest import REALDOCS, SAMPLES, all_expected, cli


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
