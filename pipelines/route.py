"""The routing policy: a pure, versioned function of detector output and thresholds.

Detectors (extractors/detect) return candidate regions (kind, bbox, score, evidence). For each one a
rule decides ``vlm`` or ``layout`` and says why; a page goes to the VLM when any of its regions does.
Every candidate is kept in the decision, routed or not, with a stable address (``p3/table/2``) so
that a person tuning thresholds sees what was considered as well as what was sent.

Rules (thresholds in :class:`RouterOptions`):

- ``handwriting``: an ink annotation with no text under it; pen strokes, a signature image, or a block
  of unread, irregular ink on a page image scoring at least ``handwriting_score_min``.
- ``complex_table``: ``table_header_spans_min`` spanning (grouping) header cells, or
  ``table_spans_min`` spanning cells anywhere. A plain table (one header row, no spans) stays.
- ``chart``: a chart score of at least ``chart_score_min``.
- ``low_ocr_confidence`` (page images): mean or 10th-percentile word confidence under the minimums;
  fewer than ``ocr_min_words`` words on a page with ink (unless a routed chart covers the page); or
  more than ``ocr_unread_print_max`` of the text-sized ink in print that OCR left unread.

Policy v3 adds a second step, after the layout path has read the document's fields (:func:`escalate`):
``extraction_low_confidence`` sends to the VLM a document whose extraction misses a required field,
does not reconcile, or has a field under the review confidence; its ``why`` names the fields. The
pages sent are those the named fields were read from (the first and last page for a field that was not
found), whole; their value for the budgets is 1 - the lowest confidence among their named fields (a
missing one counts 0). Without a VLM the document keeps its layout result, flagged with the reason.

Budgets (``max_vlm_pages_per_document``, ``max_vlm_pages_per_run``) are applied after routing by
:func:`apply_budget`: routed pages are ranked by value (their best routed region's score), the most
valuable keep the VLM, and the others go back to the layout route with the reason
``budget_exceeded`` and what they would have been routed for.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from docroute.schemas import BBox, PageSignals, Region, RouteDecision, RoutedRegion

POLICY_VERSION = "3"
REASONS = ("handwriting", "complex_table", "chart", "low_ocr_confidence")
REASON_OF_KIND = {"handwriting": "handwriting", "table": "complex_table", "chart": "chart", "text": "low_ocr_confidence"}
BUDGET_REASON = "budget_exceeded"
ESCALATION = "extraction_low_confidence"  # policy v3: the second step, after the layout path's fields


class RouterOptions(BaseModel):
    """Thresholds of the routing policy, nested in Settings as ``router`` (``DOCROUTE_ROUTER__CHART_SCORE_MIN``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ocr_mean_conf_min: float = Field(0.66, ge=0, le=1, description="scan pages under this mean word confidence go to the VLM")
    ocr_p10_conf_min: float = Field(0.20, ge=0, le=1, description="...or under this 10th-percentile word confidence")
    ocr_min_words: int = Field(5, ge=0, description="a scan with ink but fewer OCR words than this is unreadable")
    ocr_unread_print_max: float = Field(0.35, ge=0, le=1, description="...or with more than this share of its text-sized ink in print OCR left unread")
    ink_annotations_min: int = Field(1, ge=1, description="ink annotations (with no text under them) that make a region handwriting")
    handwriting_score_min: float = Field(0.5, ge=0, le=1, description="pen strokes, signature images and unread irregular ink above this score are handwriting")
    table_header_spans_min: int = Field(1, ge=1, description="spanning (grouping) header cells that make a table complex")
    table_spans_min: int = Field(3, ge=1, description="spanning cells anywhere that make a table complex")
    chart_score_min: float = Field(0.6, ge=0, le=1, description="chart score (vector axes or raster figure) above which a region is a chart")
    page_share_for_whole_page: float = Field(0.5, ge=0, le=1, description="send the whole page, not crops, when routed regions cover more than this share of it")
    max_vlm_pages_per_document: int | None = Field(None, ge=0, description="VLM pages per document at most; the most valuable pages go first (None: no cap)")
    max_vlm_pages_per_run: int | None = Field(None, ge=0, description="VLM pages per run at most, granted to documents as they finish routing (None: no cap)")
    escalate_after_extraction: bool = Field(True, description="send a document whose layout extraction misses a required field, does not reconcile or has a field under the review confidence to the VLM (reason extraction_low_confidence)")


def _handwriting(r: Region, t: RouterOptions) -> tuple[bool, str]:
    ev = r.evidence
    if r.source.endswith("ink_annotation"):
        n, under = int(ev.get("ink_annotations", 0)), ev.get("text_under", 0.0)
        if n >= t.ink_annotations_min and under < 0.3:
            return True, f"{n} ink annotation(s) with no text under them"
        return False, f"ink over text ({under:.0%} covered): an underline or a mark, not writing"
    if r.score >= t.handwriting_score_min:
        return True, f"{r.note} (score {r.score:.2f} >= {t.handwriting_score_min:.2f})"
    return False, f"{r.note} (score {r.score:.2f} < {t.handwriting_score_min:.2f})"


def _complex_table(r: Region, t: RouterOptions) -> tuple[bool, str]:
    ev = r.evidence
    head = int(ev.get("spanning_header_cells", 0) + ev.get("ruled_header_spanning_cells", 0))
    spans = int(ev.get("ruled_spanning_cells", 0))
    shape = f"{int(ev.get('rows', 0))} rows x {int(ev.get('columns', 0))} columns"
    if head >= t.table_header_spans_min:
        return True, f"{shape}, {head} spanning header cell(s) (>= {t.table_header_spans_min})"
    if spans >= t.table_spans_min:
        return True, f"{shape}, {spans} spanning cell(s) (>= {t.table_spans_min})"
    return False, f"plain table: {shape}, {head} spanning header cell(s), {spans} spanning cell(s)"


def _chart(r: Region, t: RouterOptions) -> tuple[bool, str]:
    cmp = ">=" if r.score >= t.chart_score_min else "<"
    return r.score >= t.chart_score_min, f"{r.note} (score {r.score:.2f} {cmp} {t.chart_score_min:.2f})"


def low_ocr(s: PageSignals, t: RouterOptions, chart_share: float = 0.0) -> tuple[bool, float, str]:
    """The page-level OCR rule: (fires, score, why)."""
    if s.has_text_layer:
        return False, 0.0, "the page has a text layer"
    words, mean, p10 = s.ocr_words or 0.0, s.ocr_mean_conf or 0.0, s.ocr_p10_conf or 0.0
    unread = s.ocr_unread_print or 0.0
    if words < t.ocr_min_words and (s.ink_share or 0.0) > 0.002:
        if chart_share >= 0.5:
            return False, 0.0, f"only {int(words)} OCR words, but the ink is a routed chart"
        return True, 1.0, f"only {int(words)} OCR words on a page with ink"
    if words >= t.ocr_min_words and (mean < t.ocr_mean_conf_min or p10 < t.ocr_p10_conf_min):
        return True, round(1.0 - mean, 4), (f"OCR confidence mean {mean:.2f} / p10 {p10:.2f} under "
                                            f"{t.ocr_mean_conf_min:.2f} / {t.ocr_p10_conf_min:.2f}")
    if unread > t.ocr_unread_print_max:
        return True, round(unread, 4), f"{unread:.0%} of text-sized ink is print OCR left unread (> {t.ocr_unread_print_max:.0%})"
    return False, round(1.0 - mean, 4), f"OCR read {int(words)} words, mean confidence {mean:.2f}, p10 {p10:.2f}"


RULES = {"handwriting": _handwriting, "table": _complex_table, "chart": _chart}


def _addresses(regions: Sequence[Region], page_number: int | None) -> list[str]:
    """``p<page>/<kind>/<n>``: n counts regions of that kind in reading order (top, then left)."""
    prefix = f"p{page_number}/" if page_number is not None else ""
    order = sorted(range(len(regions)), key=lambda i: (regions[i].kind, round(regions[i].bbox.y0, 1), regions[i].bbox.x0))
    counts: dict[str, int] = {}
    out = [""] * len(regions)
    for i in order:
        k = regions[i].kind
        counts[k] = counts.get(k, 0) + 1
        out[i] = f"{prefix}{k}/{counts[k]}"
    return out


def _union_share(boxes: Sequence[BBox], width: float, height: float) -> float:
    """Share of the page that the boxes cover (overlaps counted once, on a 50x50 grid)."""
    if not boxes or width <= 0 or height <= 0:
        return 0.0
    n = 50
    cells = set()
    for b in boxes:
        for i in range(max(0, int(b.x0 / width * n)), min(n, int(b.x1 / width * n + 0.999))):
            for j in range(max(0, int(b.y0 / height * n)), min(n, int(b.y1 / height * n + 0.999))):
                cells.add((i, j))
    return len(cells) / (n * n)


def decide(signals: PageSignals | dict[str, float], thresholds: RouterOptions, regions: Sequence[Region] = (),
           page_number: int | None = None) -> RouteDecision:
    """Route one page from its signals and candidate regions."""
    t = thresholds
    signals = PageSignals.model_validate(signals)
    width, height = signals.page_width, signals.page_height
    candidates = [r for r in regions if r.kind != "text"]
    addresses = _addresses(candidates, page_number)
    routed: list[RoutedRegion] = []
    for r, address in zip(candidates, addresses, strict=True):
        hit, why = RULES[r.kind](r, t)
        routed.append(RoutedRegion(**r.model_dump(), address=address, reason=REASON_OF_KIND[r.kind],
                                   route="vlm" if hit else "layout", why=why))
    chart_share = _union_share([r.bbox for r in routed if r.reason == "chart" and r.route == "vlm"], width, height)
    ocr_hit, ocr_score, ocr_why = low_ocr(signals, t, chart_share)
    if not signals.has_text_layer:
        text = next((r for r in regions if r.kind == "text"), None)
        box = text.bbox if text else BBox(x0=0, y0=0, x1=width, y1=height)
        prefix = f"p{page_number}/" if page_number is not None else ""
        routed.append(RoutedRegion(
            kind="text", bbox=box, score=min(1.0, max(0.0, ocr_score)), evidence=text.evidence if text else {},
            source=text.source if text else "ocr_quality:signals", note=text.note if text else "",
            address=f"{prefix}text/1", reason="low_ocr_confidence", route="vlm" if ocr_hit else "layout", why=ocr_why,
        ))
    hits = [r for r in routed if r.route == "vlm"]
    reasons = [reason for reason in REASONS if any(r.reason == reason for r in hits)]
    scores = {reason: round(max(r.score for r in hits if r.reason == reason), 4) for reason in reasons}
    why = []
    for reason in reasons:
        mine = sorted((r for r in hits if r.reason == reason), key=lambda r: -r.score)
        more = f" (+{len(mine) - 1} more)" if len(mine) > 1 else ""
        why.append(f"{reason}: {mine[0].address} {mine[0].why}{more}")
    scope = "none"
    if hits:
        share = _union_share([r.bbox for r in hits], width, height)
        whole = "low_ocr_confidence" in reasons or share > t.page_share_for_whole_page or not width
        scope = "page" if whole else "regions"
    return RouteDecision(
        route="vlm" if hits else "layout",
        reasons=tuple(reasons),
        scores=scores,
        explanation="; ".join(why) if why else "no routing rule fired",
        policy_version=POLICY_VERSION,
        regions=tuple(routed),
        vlm_scope=scope,
    )


# --- policy v3: escalation after extraction --------------------------------------------------------

def escalate(decisions: Sequence[RouteDecision], problems: dict[str, tuple[str, float, int | None]],
             page_numbers: Sequence[int]) -> list[RouteDecision]:
    """The second routing step: ``problems`` (field -> (why, confidence, page read from or None)) send
    their pages to the VLM with the reason :data:`ESCALATION`; a page already routed gets the reason too
    (the document call then reads it). No problems: the decisions as they are."""
    if not problems or not page_numbers:
        return list(decisions)
    wanted: dict[int, list[str]] = {}
    for name, (_why, _conf, page) in sorted(problems.items()):
        for n in [page] if page in page_numbers else sorted({page_numbers[0], page_numbers[-1]}):
            wanted.setdefault(n, []).append(name)
    out = list(decisions)
    for i, n in enumerate(page_numbers):
        if n not in wanted:
            continue
        d, names = decisions[i], wanted[n]
        value = round(1.0 - min(problems[f][1] for f in names), 4)
        why = f"{ESCALATION}: " + "; ".join(f"{f} {problems[f][0]}" for f in names)
        out[i] = d.model_copy(update={
            "route": "vlm", "reasons": (*d.reasons, ESCALATION), "scores": {**d.scores, ESCALATION: value},
            "explanation": why if d.route != "vlm" else f"{d.explanation}; {why}",
            "policy_version": POLICY_VERSION, "vlm_scope": "page"})
    return out


# --- budgets -------------------------------------------------------------------------------------

def page_value(decision: RouteDecision) -> float:
    """What sending a page to the VLM is worth: its best routed region's score, or its escalation's
    (policy v3); 0 when not routed."""
    best = max((r.score for r in decision.regions if r.route == "vlm"), default=None)
    if ESCALATION in decision.scores and decision.route == "vlm":
        best = max(best or 0.0, decision.scores[ESCALATION])
    return best if best is not None else (1.0 if decision.route == "vlm" else 0.0)


def demote(decision: RouteDecision, why: str) -> RouteDecision:
    """Send a routed page back to the layout route, keeping what it would have been routed for."""
    value = page_value(decision)
    regions = tuple(
        r.model_copy(update={"route": "layout", "why": f"{BUDGET_REASON}: {why}; {r.why}"}) if r.route == "vlm" else r
        for r in decision.regions
    )
    return decision.model_copy(update={
        "route": "layout",
        "reasons": (*decision.reasons, BUDGET_REASON),
        "scores": {**decision.scores, BUDGET_REASON: round(value, 4)},
        "explanation": f"{BUDGET_REASON}: {why} (would be: {decision.explanation})",
        "regions": regions,
        "vlm_scope": "none",
    })


def rank(decisions: Sequence[RouteDecision]) -> list[int]:
    """Indexes of the routed pages, most valuable first (ties: earlier page first)."""
    routed = [i for i, d in enumerate(decisions) if d.route == "vlm"]
    return sorted(routed, key=lambda i: (-page_value(decisions[i]), i))


def apply_budget(decisions: Sequence[RouteDecision], limit: int | None, scope: str = "document",
                 note: str | None = None) -> list[RouteDecision]:
    """Keep the VLM for at most ``limit`` pages, the most valuable first; demote the rest with the reason."""
    out = list(decisions)
    if limit is None:
        return out
    order = rank(decisions)
    if len(order) <= limit:
        return out
    kept = order[:limit]
    floor = page_value(decisions[kept[-1]]) if kept else None
    spent = note or f"{scope} budget of {limit} VLM page(s) spent"
    for n, i in enumerate(order[limit:], start=limit + 1):
        bar = f", the last kept page's value is {floor:.2f}" if floor is not None else ""
        out[i] = demote(decisions[i], f"{spent}; this page ranks {n} of {len(order)} by value "
                                      f"({page_value(decisions[i]):.2f}{bar})")
    return out
