"""OCR engines on the receipts and scans of ../shared/realdocs: characters right per second, seconds per page.

Each page is drawn the way the pipeline draws it (``read_page``, ``render_dpi``, ``render``) and read by
tesseract (``--psm 3``, ``4`` and ``6``, English, one thread), by RapidOCR (one thread) and by the
``auto`` policy (extractors/ocr.py). Words are cached per engine in /tmp/ocr/ (the image's hash is the
key), with the seconds the engine took, so a second run costs nothing. Printed per half of the split
fixed by file hash (bench/realdocs_split.py), per kind of page (receipt, scan):

- ``CER``: character error rate against a reference text, Levenshtein distance / reference length, on
  text folded to lower case with whitespace runs as one space, the OCR words joined in their line order.
  References: tapuscorpus ALTO transcriptions (markup ``_ ^`` dropped, ``~~~`` handwritten words
  dropped), docling's ocr_test sentences, softmatic's Textract lines (rough: service output).
- ``chars right/s``: sum over pages of ``max(0, 1 - CER) * reference length``, divided by the OCR seconds
  of those pages: how much right text a second of one core buys.
- ``fields in text``: share of labelled values found in the OCR text (fuzzy, rapidfuzz partial ratio
  >= 90 after folding; values of 6 characters or fewer must occur exactly): SROIE company, address,
  date, total; softmatic date (as printed dd.mm.yy[yy]) and amount; invoice2data PNG fields; the Azure
  forms' labelled values; the Contoso receipt's fields.
- ``s/page``: median OCR CPU seconds per page (one thread; tesseract's child process counted), and their sum.

``--fit`` also fits the RapidOCR confidence calibration (extractors/ocr.py ``RAPID_CALIBRATION``) on the
tuning half: a word is right when it occurs in the page's reference text.

    python bench/ocr_eval.py [--jobs 1] [--json out.json] [--fit]

``--fields`` runs bench/receipts_eval.py (the whole pipeline on the labelled receipts) with the OCR
cache, for the engine the settings select: ``DOCROUTE_OCR__ENGINE=tesseract DOCROUTE_OCR__PSM=4
python bench/ocr_eval.py --fields``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import statistics
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from realdocs_split import REALDOCS, bench_main, half_of  # noqa: E402

CACHE = Path("/tmp/ocr")
ENGINES = tuple(os.environ.get("OCR_EVAL_ENGINES", "tess3,tess4,tess6,rapid,auto").split(","))
FIT = "--fit" in sys.argv


# --- cached engines: the pipeline's own functions, each result kept per image -----------------------

def cpu() -> float:
    """CPU seconds of this process and the children it waited for (tesseract is a child process)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _key(image, dpi: float, tag: str) -> Path:
    h = hashlib.sha256(image.tobytes())
    h.update(f"{image.mode}{image.size}{round(dpi, 1)}".encode())
    return CACHE / tag / f"{h.hexdigest()[:32]}.json"


def _cached(tag: str, run, image, dpi: float):
    from docroute.schemas import Word

    path = _key(image, dpi, tag)
    if path.exists():
        data = json.loads(path.read_text())
    else:
        t = cpu()
        words = run()
        data = {"seconds": cpu() - t, "words": [w.model_dump(mode="json") for w in words]}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data))
    _spent.append((tag, data["seconds"]))
    return tuple(Word.model_validate(w) for w in data["words"])


_spent: list[tuple[str, float]] = []


def install_cache() -> None:
    """Make the OCR module's engines read and fill the cache (also used by receipts runs)."""
    from docroute.extractors import ocr

    if getattr(ocr, "_bench_cached", False):
        return
    tess, rapid = ocr.tesseract_words, ocr.rapid_raw
    ocr.tesseract_words = lambda image, dpi, options: _cached(
        f"tess{options.psm}-{'+'.join(options.languages)}", lambda: tess(image, dpi, options), image, dpi)
    ocr.rapid_raw = lambda image, dpi: _cached("rapid", lambda: rapid(image, dpi), image, dpi)
    ocr._bench_cached = True


# --- references -------------------------------------------------------------------------------------

def fold(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower()).strip()


def _alto(path: Path) -> str:
    """The transcription of an ALTO file: its TextLines' String CONTENTs."""
    lines = []
    for el in ET.parse(path).iter():
        if el.tag.endswith("TextLine"):
            words = [s.get("CONTENT", "") for s in el.iter() if s.tag.endswith("String")]
            words = [w.lstrip("_^") for line in words for w in line.split() if "~~~" not in w]
            if words:
                lines.append(" ".join(words))
    return "\n".join(lines) if sum(map(len, lines)) >= 20 else ""


def _textract(path: Path) -> str:
    return "\n".join(b["Text"] for b in json.loads(path.read_text()) if b.get("BlockType") == "LINE")


def _values(obj) -> list[str]:
    if isinstance(obj, dict):
        return [v for x in obj.values() for v in _values(x)]
    if isinstance(obj, list):
        return [v for x in obj for v in _values(x)]
    return [str(obj)] if obj not in (None, "") and not isinstance(obj, bool) else []


def pages() -> list[dict]:
    out = []
    for img in sorted((REALDOCS / "sroie_train").glob("*.jpg")):
        lab = json.loads(img.with_suffix(".json").read_text())
        out.append({"file": f"sroie_train/{img.name}", "kind": "receipt", "ref": None, "values": list(lab.values())})
    for img in sorted((REALDOCS / "softmatic_receipts").glob("*.jpg")):
        lab = json.loads(img.with_suffix(".json").read_text())
        d = lab["date"]
        amount = f"{int(lab['amount']) // 100},{int(lab['amount']) % 100:02d}"
        out.append({"file": f"softmatic_receipts/{img.name}", "kind": "receipt",
                    "ref": _textract(img.with_name(img.stem + "_blocks.json")),
                    "values": [f"{d[:2]}.{d[2:4]}.", amount]})
    res = json.loads((REALDOCS / "azure_formrecognizer/contoso-allinone.receipt-result.json").read_text())
    fields = res["analyzeResult"]["documentResults"][0]["fields"]
    out.append({"file": "azure_formrecognizer/contoso-allinone.jpg", "kind": "receipt", "ref": None,
                "values": [f["text"] for f in fields.values() if isinstance(f, dict) and f.get("text")]})
    for img in sorted((REALDOCS / "tapuscorpus").glob("*.jp*g")):
        out.append({"file": f"tapuscorpus/{img.name}", "kind": "scan", "ref": _alto(img.with_suffix(".xml")) or None,
                    "values": []})
    for pdf in sorted((REALDOCS / "docling").glob("ocr_test*.pdf")):
        md = pdf.with_name(pdf.stem + ".tesseract.full_page.md").read_text()
        out.append({"file": f"docling/{pdf.name}", "kind": "scan", "ref": md.replace("#", " "), "values": []})
    for png in sorted((REALDOCS / "invoice2data").glob("*.png")):
        lab = json.loads(png.with_suffix(".json").read_text())[0]
        vals = [v for k, v in lab.items() if k not in ("lines", "currency", "desc") and not k.startswith("date")]
        out.append({"file": f"invoice2data/{png.name}", "kind": "scan", "ref": None,
                    "values": [v for v in _values(vals) if len(v.strip()) >= 4]})
    for jpg in ("f1099_scanned.jpg", "fw9_scanned.jpg"):
        lab = json.loads((REALDOCS / "azure_formrecognizer" / f"{jpg}.labels.json").read_text())
        vals = [" ".join(v["text"] for v in lb["value"]) for lb in lab["labels"]]
        vals = [v for v in vals if len(v.strip()) >= 4 and v not in ("selected", "unselected")]
        out.append({"file": f"azure_formrecognizer/{jpg}", "kind": "scan", "ref": None, "values": vals})
    return out


# --- one page ---------------------------------------------------------------------------------------

def text_of(words) -> str:
    lines: dict[tuple[int, int], list[str]] = {}
    for w in words:
        lines.setdefault((w.block, w.line), []).append(w.text)
    return "\n".join(" ".join(ws) for ws in lines.values())


def _found(value: str, text: str) -> bool:
    from rapidfuzz import fuzz

    value = fold(value)
    if len(value) <= 6:
        return value in text
    return fuzz.partial_ratio(value, text) >= 90


def _tokens(text: str) -> list[str]:
    return [t for t in (re.sub(r"^\W+|\W+$", "", w) for w in fold(text).split()) if t]


def word_rights(words, ref: str) -> list[tuple[float, int]]:
    """(confidence, right) per word: right when the word (folded, end punctuation off) is in the reference."""
    from collections import Counter

    left = Counter(_tokens(ref))
    out = []
    for w in words:
        tok = (_tokens(w.text) or [""])[0]
        ok = bool(tok) and left[tok] > 0
        if ok:
            left[tok] -= 1
        out.append((round(w.confidence, 4), int(ok)))
    return out


def measure(item: dict) -> dict:
    from rapidfuzz.distance import Levenshtein

    from docroute.extractors import ocr, pdf
    from docroute.pipelines.ingest import open_file

    install_cache()
    row = {"file": item["file"], "kind": item["kind"], "half": half_of(item["file"])}
    with open_file(REALDOCS / item["file"]) as doc:
        content = pdf.read_page(doc.page(0), 0)
        dpi = pdf.render_dpi(content)
        image = doc.render(0, dpi, gray=content.native_gray)
        for name in ENGINES:
            opts = ocr.OcrOptions(engine="tesseract", psm=int(name[4:])) if name.startswith("tess") else \
                ocr.OcrOptions(engine="rapidocr" if name == "rapid" else name)
            _spent.clear()
            t = cpu()
            words = ocr.ocr_words(image, dpi, opts)
            own = cpu() - t  # decisions and calibration; cached engine time added below
            secs = sum(s for _, s in _spent) + (own if name == "auto" else 0.0)
            text = fold(text_of(words))
            r = {"seconds": round(secs, 3), "words": len(words), "engines": [tag for tag, _ in _spent],
                 "mean_conf": round(sum(w.confidence for w in words) / len(words), 4) if words else 0.0}
            if item["ref"]:
                ref = fold(item["ref"])
                r["ref_chars"] = len(ref)
                r["cer"] = round(Levenshtein.distance(text, ref) / max(1, len(ref)), 4)
                if name in ("tess3", "rapid", "auto"):
                    r["conf_right"] = word_rights(words, item["ref"])
                if name == "rapid":  # the recogniser's own scores, for fitting the calibration
                    r["conf_right_raw"] = word_rights(ocr.rapid_raw(image, dpi), item["ref"])
            if item["values"]:
                r["values"] = len(item["values"])
                r["found"] = sum(_found(v, text) for v in item["values"])
            row[name] = r
    return row


# --- report -----------------------------------------------------------------------------------------

def report(rows: list[dict]) -> str:
    out = []
    for half in ("tune", "test"):
        for kind in ("receipt", "scan"):
            sel = [r for r in rows if r["half"] == half and r["kind"] == kind]
            if not sel:
                continue
            out.append(f"\n{half} half, {kind} pages ({len(sel)})")
            out.append(f"  {'engine':6} {'CER':>6} {'chars right/s':>14} {'fields in text':>15} "
                       f"{'s/page med':>11} {'s total':>8}")
            for name in ENGINES:
                refd = [r[name] for r in sel if "cer" in r[name]]
                right = sum(max(0.0, 1 - e["cer"]) * e["ref_chars"] for e in refd)
                chars = sum(e["ref_chars"] for e in refd)
                secs_ref = sum(e["seconds"] for e in refd)
                vals = [r[name] for r in sel if "values" in r[name]]
                found = sum(e["found"] for e in vals)
                nval = sum(e["values"] for e in vals)
                secs = [r[name]["seconds"] for r in sel]
                cer = f"{1 - right / chars:.3f}" if chars else "-"
                crs = f"{right / secs_ref:.0f}" if secs_ref else "-"
                fit = f"{found / nval:.3f} ({found}/{nval})" if nval else "-"
                out.append(f"  {name:6} {cer:>6} {crs:>14} {fit:>15} {statistics.median(secs):>11.2f} "
                           f"{sum(secs):>8.1f}")
            picks = [tuple(r["auto"]["engines"]) for r in sel]
            out.append("  auto ran: " + ", ".join(f"{'+'.join(k) or 'none'} x{picks.count(k)}"
                                                  for k in sorted(set(picks))))
    if FIT:
        out.append("\n" + fit_report(rows))
    return "\n".join(out)


def isotonic(pairs: list[tuple[float, int]], bins: int = 12) -> list[tuple[float, float]]:
    """(score, share right) knots: the words cut into ``bins`` equal-count bins by score, each bin's
    median score and share right, then pooled adjacent violators so the share never falls."""
    pairs = sorted(pairs)
    size = max(1, len(pairs) // bins)
    blocks = [[statistics.median(x for x, _ in chunk), sum(y for _, y in chunk), len(chunk)]
              for chunk in (pairs[i:i + size] for i in range(0, len(pairs), size)) if chunk]
    merged: list[list[float]] = []
    for b in blocks:
        merged.append(list(b))
        while len(merged) > 1 and merged[-2][1] / merged[-2][2] > merged[-1][1] / merged[-1][2]:
            x2, r2, n2 = merged.pop()
            x1, r1, n1 = merged.pop()
            merged.append([(x1 * n1 + x2 * n2) / (n1 + n2), r1 + r2, n1 + n2])
    return [(round(x, 4), round(r / n, 4)) for x, r, n in merged]


def _inverse(curve: list[tuple[float, float]], p: float) -> float:
    """The tesseract confidence whose share right is ``p`` (linear between knots; 0 and 1 at the ends)."""
    pts = [(0.0, 0.0), *curve, (1.0, 1.0)]
    for (c0, p0), (c1, p1) in zip(pts, pts[1:], strict=False):
        if p <= p1:
            return c1 if p1 == p0 else c0 + (c1 - c0) * (p - p0) / (p1 - p0)
    return 1.0


def fit_calibration(rapid: list[tuple[float, int]], tess: list[tuple[float, int]]) -> tuple:
    """RapidOCR score -> the tesseract confidence that is as often right: both engines' share right by
    score (isotonic), then RapidOCR's curve read through the inverse of tesseract's. Monotone knots."""
    r_curve, t_curve = isotonic(rapid), isotonic(tess)
    best: dict[float, float] = {0.0: 0.0, 1.0: 0.0}
    for x, p in r_curve:  # scores saturate at 1.0: equal scores keep the highest share right
        best[round(x, 3)] = max(best.get(round(x, 3), 0.0), round(_inverse(t_curve, p), 3))
    knots, last = [], 0.0
    for x in sorted(best):
        last = max(last, best[x])
        knots.append((x, last))
    return tuple(knots), r_curve, t_curve


def fit_report(rows: list[dict]) -> str:
    tune = [r for r in rows if r["half"] == "tune"]
    rapid = [tuple(p) for r in tune for p in r["rapid"].get("conf_right_raw", [])]
    tess = [tuple(p) for r in tune for p in r["tess3"].get("conf_right", [])]
    knots, r_curve, t_curve = fit_calibration(rapid, tess)
    out = [f"share of words right by score, tuning half: RapidOCR raw ({len(rapid)} words) {r_curve}",
           f"  tesseract psm 3 ({len(tess)} words) {t_curve}", f"RAPID_CALIBRATION = {knots}"]
    for half in ("tune", "test"):
        for name, key in (("tess3", "conf_right"), ("rapid", "conf_right_raw"), ("rapid", "conf_right")):
            pairs = [tuple(p) for r in rows if r["half"] == half for p in r[name].get(key, [])]
            if pairs:
                out.append(f"{half} {name} {'raw' if key.endswith('raw') else 'as stored'}: {len(pairs)} words, "
                           f"mean confidence {statistics.mean(c for c, _ in pairs):.3f}, "
                           f"share right {statistics.mean(y for _, y in pairs):.3f}; by score {isotonic(pairs, 6)}")
    return "\n".join(out)


def fields_score(args: tuple[Path, dict]) -> dict:
    """bench/receipts_eval.py's score of one receipt, OCR read from the cache."""
    import receipts_eval

    install_cache()
    return receipts_eval.score(*args)


if __name__ == "__main__":
    argv = [a for a in sys.argv[1:] if a not in ("--fit", "--fields")]
    if "--fields" in sys.argv:  # the fields' accuracy: DOCROUTE_OCR__ENGINE=... python bench/ocr_eval.py --fields
        import receipts_eval

        sys.exit(bench_main(receipts_eval.__doc__, fields_score, receipts_eval.receipts(), receipts_eval.report, argv))
    sys.exit(bench_main(__doc__, measure, pages(), report, argv))
