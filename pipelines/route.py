"""The routing policy: a pure, versioned function of page signals and thresholds.

Each reason that fires adds its name to ``reasons`` and its score to ``scores``; a page goes to the
VLM when any reason fires. The explanation is a sentence a person tuning thresholds can read.
"""

from __future__ import annotations

from docroute.pipelines.settings import RouterSettings
from docroute.schemas import RouteDecision

POLICY_VERSION = "1"


def _handwriting(s: dict[str, float], t: RouterSettings) -> tuple[float, str] | None:
    if s.get("ink_unexplained", 0) >= t.ink_annotations_min:
        return s["ink_unexplained"], f"{int(s['ink_unexplained'])} ink annotation(s) with no text under them"
    if not s.get("has_text_layer", 1) and s.get("ink_outside_words", 0) > t.ink_outside_words_max:
        share = s["ink_outside_words"]
        return share, f"{share:.0%} of the scan's ink lies outside confidently read words (> {t.ink_outside_words_max:.0%})"
    return None


def _complex_table(s: dict[str, float], t: RouterSettings) -> tuple[float, str] | None:
    head, spans = s.get("table_header_spanning_cells", 0), s.get("table_spanning_cells", 0)
    if head >= t.table_header_spans_min or spans >= t.table_spans_min:
        return spans, f"table with {int(spans)} spanning cell(s), {int(head)} in its header"
    return None


def _chart(s: dict[str, float], t: RouterSettings) -> tuple[float, str] | None:
    score = s.get("chart_score", 0)
    if score >= t.chart_score_min:
        return score, f"vector chart: axes, {int(s.get('chart_marks', 0))} marks, {int(s.get('chart_ticks', 0))} ticks (score {score:.2f})"
    return None


def _low_ocr(s: dict[str, float], t: RouterSettings) -> tuple[float, str] | None:
    if s.get("has_text_layer", 1):
        return None
    words, mean, p10 = s.get("ocr_words", 0), s.get("ocr_mean_conf", 0), s.get("ocr_p10_conf", 0)
    if words < t.ocr_min_words and s.get("ink_share", 0) > 0.002:
        return 1.0, f"only {int(words)} OCR words on a page with ink"
    if words >= t.ocr_min_words and (mean < t.ocr_mean_conf_min or p10 < t.ocr_p10_conf_min):
        return 1.0 - mean, f"OCR confidence mean {mean:.2f} / p10 {p10:.2f} under {t.ocr_mean_conf_min:.2f} / {t.ocr_p10_conf_min:.2f}"
    return None


RULES = {
    "handwriting": _handwriting,
    "complex_table": _complex_table,
    "chart": _chart,
    "low_ocr_confidence": _low_ocr,
}


def decide(signals: dict[str, float], thresholds: RouterSettings) -> RouteDecision:
    reasons, scores, why = [], {}, []
    for name, rule in RULES.items():
        hit = rule(signals, thresholds)
        if hit is not None:
            reasons.append(name)
            scores[name] = round(float(hit[0]), 4)
            why.append(f"{name}: {hit[1]}")
    return RouteDecision(
        route="vlm" if reasons else "layout",
        reasons=tuple(reasons),
        scores=scores,
        explanation="; ".join(why) if why else "no routing rule fired",
        policy_version=POLICY_VERSION,
    )
