"""The router measured on the labelled page set (tests/router_labels.json) with bench/router_eval.py.

Floors come from the measurement in the README (Router section). The default run takes the pages
labelled ``fast``; ``DOCROUTE_ROUTER_EVAL=all`` runs every labelled page (several minutes). What the
router costs per page is timed by ``python bench/router_eval.py`` (no wall-clock limit is asserted here:
a test's timing depends on the machine and its load, not on the code).
"""

from __future__ import annotations

import os
import sys

import pytest

from conftest import REALDOCS, REPO

sys.path.insert(0, str(REPO / "bench"))  # worker processes import it by name too
import router_eval  # noqa: E402


@pytest.fixture(scope="module")
def measured():
    if not REALDOCS.exists():
        pytest.skip("../shared/realdocs is not available")
    subset = "all" if os.environ.get("DOCROUTE_ROUTER_EVAL") == "all" else "fast"
    labels = router_eval.load_labels(subset=subset)
    rows = router_eval.run(labels, jobs=2)
    return router_eval.metrics(rows), rows


def test_labels_are_well_formed():
    labels = router_eval.load_labels()
    assert len(labels) >= 150
    seen = set()
    for lab in labels:
        key = (lab["file"], lab["page"])
        assert key not in seen, key
        seen.add(key)
        assert lab["route"] in ("layout", "vlm") and lab["why"]
        assert (lab["route"] == "vlm") == bool(lab["reasons"])
        assert set(lab["reasons"]) | set(lab.get("also_ok", [])) <= set(router_eval.REASONS)
        assert lab["file"].startswith(("sample_docs/", "realdocs/"))
    kinds = {r for lab in labels for r in lab["reasons"]}
    assert kinds == set(router_eval.REASONS)


def test_router_f1_and_no_plain_invoice_routed(measured):
    m, rows = measured
    assert m["pages"] >= 70
    assert m["route"]["f1"] >= 0.9, router_eval.report(m)
    assert m["plain_invoices_routed"] == [], m["plain_invoices_routed"]
    invoice_pages = [r for r in rows if r["file"].startswith("realdocs/invoice2data/")]
    assert len(invoice_pages) >= 13
    for reason in ("complex_table", "chart", "handwriting"):
        assert m["per_reason"][reason]["f1"] >= 0.85, (reason, m["per_reason"][reason])
    assert m["cost"]["digital_detect_ms"]["n"] >= 50, "the digital pages are read as digital (text layer)"
