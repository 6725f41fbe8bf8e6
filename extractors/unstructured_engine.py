"""The second layout engine: ``unstructured`` (open source), run fully offline.

``partition_elements`` runs unstructured on one document and returns our ``Element`` values per page,
with bboxes in PDF points, top-left origin (the caller's ``page_sizes``).

Strategy (``unstructured_available_hi_res()`` is checked first):

* ``hi_res`` for PDFs and images only when unstructured-inference's layout model (yolox) is already in
  the local Hugging Face cache. Nothing is ever downloaded.
* PDFs otherwise: ``fast`` (pdfminer text layer) for the pages that have a text layer and ``ocr_only``
  (tesseract) for the pages that have none. A mixed PDF is partitioned twice: ``fast`` over the
  whole file (cheap: scanned pages carry no text) keeping only the text-layer pages, and
  ``ocr_only`` over a temporary PDF holding only the scanned pages (so no text page is rendered and
  OCRed). Each element's ``source`` says which strategy made it.
* unstructured's ``fast`` path catches every exception of its pdfminer pass and returns nothing. An
  empty ``fast`` result is therefore re-checked: if unstructured refuses the PDF as too complex for
  pdfminer (``is_pdf_too_complex``: many vector-graphics operators or oversized content streams, e.g.
  docling's amt_handbook_sample.pdf) all its pages are OCRed instead, with a warning (unstructured's
  own ``auto`` would go to hi_res); otherwise its pdfminer pass is re-run outside that try/except, so
  a real failure surfaces as ``UnstructuredError``.
* Images (PNG/JPEG/TIFF/...): ``partition_image`` with ``ocr_only``; each frame of a multi-frame TIFF
  is partitioned as its own page (unstructured's ``ocr_only`` reads only the first frame).

Coordinates. unstructured reports ``metadata.coordinates`` as points plus a coordinate system with its
own width, height and orientation; we go through the system's relative coordinates, so a
bottom-left-origin ``PointSpace`` and a top-left ``PixelSpace`` both come out right.

* OCR and hi_res: the system is the rendered image (cropbox, with /Rotate applied), so it is scaled to
  the page size.
* ``fast``: the system is pdfminer's page, which is the *mediabox* (rotated by /Rotate, top-left
  origin in unstructured 0.27; checked against PyMuPDF word positions), while PyMuPDF pages (and our
  ``page_sizes``) are the *cropbox*. We read each page's mediabox, cropbox and /Rotate with pdfminer
  and map the cropbox's rectangle in that space onto ``(0, 0, width, height)``. Without this, pages
  with a cropbox smaller than the mediabox would be off by the crop margin.

Offline spaCy (the trap). unstructured's text heuristics (``unstructured.nlp.tokenize``) load the
spaCy model ``en_core_web_sm`` and, when it is missing, try to download and pip-install it from
GitHub at run time. Offline that fails, and unstructured's fast path swallows the exception: a PDF
silently comes back with no elements. When ``en_core_web_sm`` is installed we leave unstructured
alone. When it is not, :func:`ensure_nlp_pipeline` replaces ``unstructured.nlp.tokenize._get_nlp``
(a cached loader that ``_run_pipeline`` looks up by global name) with a pipeline built only from what
spaCy ships: ``spacy.blank("en")`` (rule-based English tokenizer) + ``sentencizer`` (punctuation
sentence splitter) + :func:`tag_verbs_penn`, a small documented rule component that assigns the
Penn tags unstructured's heuristics read. unstructured uses the tags in exactly one place,
``text_type.contains_verb`` ("is there a VB/VBD/VBG/VBN/VBP/VBZ?"), which separates a one-sentence
NarrativeText from a Title, so the component tags verbs (plus ``MD``, ``TO`` and ``POS`` that its
rules rely on) and leaves every other token's ``tag_`` empty rather than inventing tags. It is an
approximation of a statistical tagger: expect more Title/NarrativeText flips on one-sentence
elements than with the real model (multi-sentence elements do not depend on tags). A warning is
logged once per process when it is in use. The real fix is installing the official model wheel
(``python -m spacy download en_core_web_sm`` from explosion/spacy-models on GitHub, or the same wheel
from an internal mirror); the ``en-core-web-sm`` packages on PyPI are unofficial re-uploads and are
not to be used.

Environment. Importing this module sets, with ``os.environ.setdefault`` (an explicit setting wins):
``HF_HUB_OFFLINE=1`` so that hi_res fails fast instead of trying to download a missing model (it has
to be set before ``huggingface_hub`` is imported, hence at import); just before unstructured is
first imported it also sets ``DO_NOT_TRACK=1`` (unstructured's telemetry ping, and its
``nvidia-smi`` probe) and ``UNSTRUCTURED_DISABLE_NOTICE=1`` (a commercial notice logged at WARNING),
plus ``OMP_THREAD_LIMIT=1`` for tesseract as in ``extractors/ocr.py``.

``timeout_s`` is enforced with SIGALRM around the partitioning (after the imports), in the main
thread only (this project runs engines in worker processes); elsewhere it is logged and ignored.

unstructured itself is imported lazily (``import unstructured.partition.pdf`` takes 5-8 s: it pulls
in spaCy, thinc and torch), so importing this module is cheap.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from docroute.schemas import BBox, Element, ElementKind

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Doc

# Must precede any import of huggingface_hub (it reads the variable once, at import).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

logger = logging.getLogger(__name__)

NAME = "unstructured"

OCR_CONFIDENCE = 0.8
"""unstructured's tesseract agent drops tesseract's word confidences (it keeps only the text and
boxes of its hOCR output) and only whitelisted OCR agent modules can be plugged in, so OCR elements
get this fixed confidence; hi_res elements carry the layout model's ``detection_class_prob``, and
text-layer (``fast``) elements 1.0."""

PDF_MIME = "application/pdf"
IMAGE_MIMES = frozenset(
    {"image/png", "image/jpeg", "image/jpg", "image/tiff", "image/bmp", "image/webp", "image/heic"}
)

# unstructured-inference's default layout model (unstructured_inference/models/yolox.py, MODEL_TYPES):
# the hi_res model name (env UNSTRUCTURED_HI_RES_MODEL_NAME, default "yolox") -> (HF repo id, file).
_YOLOX_MODELS: dict[str, tuple[str, str]] = {
    "yolox": ("unstructuredio/yolo_x_layout", "yolox_l0.05.onnx"),
    "yolox_tiny": ("unstructuredio/yolo_x_layout", "yolox_tiny.onnx"),
    "yolox_quantized": ("unstructuredio/yolo_x_layout", "yolox_l0.05_quantized.onnx"),
}
# unstructured_inference/models/tables.py DEFAULT_MODEL (table structure -> text_as_html); it also needs
# timm, which this project does not install (see pyproject.toml).
_TABLE_MODEL = ("microsoft/table-transformer-structure-recognition", "config.json")

_KIND_BY_CATEGORY: dict[str, ElementKind] = {
    "Title": "title",
    "NarrativeText": "text",
    "Text": "text",
    "UncategorizedText": "text",
    "Address": "text",
    "EmailAddress": "text",
    "ListItem": "list_item",
    "List-item": "list_item",
    "Table": "table",
    "Image": "figure",
    "Figure": "figure",
    "Picture": "figure",
    "Header": "header",
    "PageHeader": "header",
    "Footer": "footer",
    "PageFooter": "footer",
    "PageNumber": "footer",
    "FormKeysValues": "key_value",
}
_SKIPPED_CATEGORIES = frozenset({"PageBreak"})


class UnstructuredError(RuntimeError):
    """unstructured failed on a file; the message names the file and says what to do."""


class UnstructuredTimeoutError(UnstructuredError):
    """unstructured did not finish within ``timeout_s``."""


# --------------------------------------------------------------------------------------------------
# hi_res availability (never downloads)


def _hf_cached(repo_id: str, filename: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        found = try_to_load_from_cache(repo_id=repo_id, filename=filename)
    except Exception:  # a malformed cache entry counts as absent
        return False
    return isinstance(found, str) and os.path.isfile(found)


def unstructured_available_hi_res() -> bool:
    """True only if unstructured-inference is installed and its layout model is in the local HF cache.

    Reads the cache (``huggingface_hub.try_to_load_from_cache``); makes no network call. The model is
    the one hi_res would load: env ``UNSTRUCTURED_HI_RES_MODEL_NAME`` (default ``yolox``). Other model
    families (detectron2) are reported unavailable.
    """
    import importlib.util

    if importlib.util.find_spec("unstructured_inference") is None:
        return False
    model = os.environ.get("UNSTRUCTURED_HI_RES_MODEL_NAME") or "yolox"
    if model not in _YOLOX_MODELS:
        return False
    return _hf_cached(*_YOLOX_MODELS[model])


def _table_structure_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("timm") is not None and _hf_cached(*_TABLE_MODEL)


# --------------------------------------------------------------------------------------------------
# offline spaCy pipeline for unstructured's text heuristics

OFFLINE_TAGGER_NAME = "docroute_penn_verb_tagger"
OFFLINE_PIPELINE = "offline-rules"
SPACY_MODEL = "en_core_web_sm"

# Closed classes: auxiliaries and modals carry most verbs of real prose.
_AUX_TAGS: dict[str, str] = {
    "be": "VB", "am": "VBP", "are": "VBP", "is": "VBZ", "was": "VBD", "were": "VBD", "been": "VBN",
    "being": "VBG", "'m": "VBP", "'re": "VBP", "’m": "VBP", "’re": "VBP",
    "have": "VBP", "has": "VBZ", "had": "VBD", "having": "VBG", "'ve": "VBP", "’ve": "VBP",
    "do": "VBP", "does": "VBZ", "did": "VBD", "doing": "VBG", "done": "VBN",
    "isn": "VBZ", "aren": "VBP", "wasn": "VBD", "weren": "VBD", "hasn": "VBZ", "haven": "VBP",
    "hadn": "VBD", "doesn": "VBZ", "didn": "VBD",
}
# "ca"/"wo" are how spaCy's tokenizer splits "can't"/"won't".
_MODALS = frozenset(
    {"can", "could", "may", "might", "must", "shall", "should", "will", "would", "ought", "ca", "wo",
     "'ll", "’ll", "'d", "’d", "cannot"}
)
_NOUN_HOMOGRAPH_MODALS = frozenset({"can", "may", "might", "must", "will"})
# Irregular past tenses and participles that are (almost) never nouns or adjectives.
_IRREGULAR_VBD = frozenset(
    "arose ate awoke became began bit blew broke brought built bought caught chose came crept dealt "
    "did drew drank drove dug fell fed felt fought found fled flew forbade forgot forgave froze got "
    "gave went grew hung heard hid held kept knelt knew laid led leapt learnt lent lay lost made "
    "meant met mistook overcame paid proved quit ran rang rose said sat saw sought sold sent set shook "
    "shone shot showed shrank shut sang sank slept slid spoke spent spun spread sprang stood stole "
    "stuck stung struck strove swore swept swam swung took taught tore told thought threw understood "
    "undertook upheld wore won withdrew wound wrote".split()
)
_IRREGULAR_VBN = frozenset(
    "arisen awoken begun bitten blown broken chosen drawn drunk driven eaten fallen forbidden "
    "forgotten forgiven frozen gotten given gone grown hidden known lain mistaken overcome overseen "
    "proven ridden risen seen shaken shown shrunk sung sunk spoken stolen stridden striven sworn "
    "swum taken thrown torn undertaken withdrawn woken worn written".split()
)
# Frequent verbs that are rarely nouns; their 3rd-person -s forms are generated below.
_COMMON_VERBS = frozenset(
    "accept achieve affect agree allow appear apply argue arrive ask become begin believe belong "
    "bring choose come consider consist contain continue create decide define depend describe "
    "determine develop enable ensure establish exist expect explain find follow get give go happen "
    "help identify include indicate involve keep know leave let live make mean obtain occur "
    "perform prevent provide receive reduce refer remain represent require say see seem send show "
    "suggest take tell thank think understand want write".split()
)


def _third_person(verb: str) -> str:
    if verb.endswith(("s", "sh", "ch", "x", "z", "o")):
        return verb + "es"
    if verb.endswith("y") and verb[-2:-1] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


_COMMON_VBZ = frozenset(_third_person(v) for v in _COMMON_VERBS)
# Words ending in -ed / -ing that are not verb forms, or are mostly nouns in documents.
_ED_NOT_VERB = frozenset(
    "bed red shed sled seed speed feed weed reed deed creed greed breed need hundred sacred naked "
    "wicked kindred rugged ragged jagged beloved learned wretched crooked dogged hatred".split()
)
_ING_NOT_VERB = frozenset(
    "thing something anything nothing everything king ring spring string wing sing sting swing "
    "bring cling fling sling ceiling morning evening during pudding wedding sibling darling herring "
    "shilling awning inning lightning building meeting funding training accounting marketing "
    "engineering housing planning banking processing reporting financing pricing spending lending "
    "shipping billing rating heading setting opening ending clothing parking offering filing listing "
    "painting drawing recording warning learning printing landing railing lining hearing ruling "
    "proceeding earning holding spelling booking mapping packaging outstanding".split()
)
# Words that start a noun phrase: the word after one is not a verb ("the use", "a report").
_NOUN_PHRASE_STARTERS = frozenset(
    "the a an these those its their his her our my your each every no another".split()
)
# Words that can start the object after a verb ("holds that", "includes all").
_DETERMINERS = _NOUN_PHRASE_STARTERS | frozenset(
    "this that some all any either neither such what which whose".split()
)
_SUBJECT_PRONOUNS_3SG = frozenset({"he", "she", "it", "who", "that", "which", "this"})
_SUBJECT_PRONOUNS_PLURAL = frozenset({"i", "we", "you", "they"})
_PRONOUNS_BEFORE_S = frozenset(
    {"it", "he", "she", "that", "there", "what", "who", "where", "here", "how", "this", "let"}
)
# Function words that can follow a modal / "to" / a subject pronoun without being the verb.
_FUNCTION_WORDS = _DETERMINERS | frozenset(
    "and or but nor so yet if then than as at by for from in into of on onto off out over under up "
    "down with within without about above across after against along among around before behind "
    "below beneath beside between beyond despite except inside near past per since through "
    "throughout toward towards until upon via i me we us you he him she it they them who whom "
    "there here also not n't never always only just still even already often again now".split()
)
_ADVERBS = frozenset(
    "not n't never always only just still even already often also then now usually sometimes "
    "really all both".split()
)


def _tag_for(doc: Doc, i: int, tags: list[str]) -> str:
    tok = doc[i]
    low = tok.lower_
    if not tok.is_alpha:
        if low in ("'s", "’s"):
            prev = doc[i - 1].lower_ if i else ""
            return "VBZ" if prev in _PRONOUNS_BEFORE_S else "POS"
        if low in _AUX_TAGS:
            return _AUX_TAGS[low]
        if low in _MODALS:
            return "MD"
        return ""
    prev_i = i - 1
    while prev_i >= 0 and (doc[prev_i].lower_ in _ADVERBS or doc[prev_i].lower_.endswith("ly")):
        prev_i -= 1  # "will not apply", "it also provides", "to quickly read"
    prev_low = doc[prev_i].lower_ if prev_i >= 0 else ""
    if prev_low == "i" and doc[prev_i].text != "I":
        prev_low = ""  # "IBM i security": only the capital I is the pronoun
    prev_tag = tags[prev_i] if prev_i >= 0 else ""
    after_det = i > 0 and doc[i - 1].lower_ in _NOUN_PHRASE_STARTERS
    lower_case = tok.text.islower()
    imperative = tok.is_sent_start and tok.text[:1].isupper() and tok.text[1:].islower()
    if low in _AUX_TAGS:
        return _AUX_TAGS[low]
    if low in _MODALS:
        if low in _NOUN_HOMOGRAPH_MODALS and (after_det or not lower_case):
            return ""  # "the will", "a can", "May 2021"
        return "MD"
    if low == "to":
        return "TO"
    if low in _IRREGULAR_VBN:
        return "VBN"
    if low in _IRREGULAR_VBD:
        return "VBN" if prev_low in ("have", "has", "had", "having", "been", "be", "is", "are",
                                     "was", "were") else "VBD"
    if after_det:
        return ""  # a determiner starts a noun phrase: "the use", "a report", "the findings"
    if low in _COMMON_VERBS and (lower_case or imperative):  # "Provide the form."
        return "VB" if imperative or prev_tag in ("MD", "TO") else "VBP"
    if low in _COMMON_VBZ and lower_case:
        return "VBZ"
    if not lower_case or low in _FUNCTION_WORDS:
        return ""
    # Context: the word after a modal or infinitival "to" is a base-form verb; after a subject
    # pronoun it is a present-tense verb.
    if prev_tag in ("MD", "TO") and not low.endswith(("ed", "ing")):
        return "VB"
    if prev_low in _SUBJECT_PRONOUNS_PLURAL and not low.endswith(("s", "ed", "ing")):
        return "VBP"
    if prev_low in _SUBJECT_PRONOUNS_3SG and low.endswith("s") and not low.endswith(("ss", "us", "is")):
        return "VBZ"
    # Morphology (not on a sentence's first word: "Related work", "Building permits" are headings).
    if not tok.is_sent_start:
        if len(low) >= 4 and low.endswith("ed") and low not in _ED_NOT_VERB:
            return "VBN" if prev_tag in ("VB", "VBP", "VBZ", "VBD", "VBN", "VBG") else "VBD"
        if len(low) >= 5 and low.endswith("ing") and low not in _ING_NOT_VERB:
            return "VBG"
        # "The court holds that ...", "Table 3-1 summarizes these": a -s word between a noun (or a
        # number) and a determiner.
        if (
            len(low) >= 4 and low.endswith("s") and not low.endswith(("ss", "us", "is", "ics"))
            and i + 1 < len(doc) and doc[i + 1].lower_ in _DETERMINERS
            and i > 0 and (doc[i - 1].is_alpha or doc[i - 1].like_num)
            and doc[i - 1].lower_ not in _FUNCTION_WORDS
        ):
            return "VBZ"
    return ""


def tag_verbs_penn(doc: Doc) -> Doc:
    """spaCy component: assign Penn Treebank verb tags by rule, leave other tokens' ``tag_`` empty.

    It stands in for ``en_core_web_sm``'s statistical tagger only for what unstructured reads
    (``contains_verb``: any of VB, VBD, VBG, VBN, VBP, VBZ). Rules, in order:

    1. closed classes: forms of *be*, *have*, *do* (VB*), modals (MD), infinitival *to* (TO),
       and *'s* (VBZ after a pronoun such as *it*/*that*/*there*, else POS);
    2. a word list of irregular past tenses and participles (VBD/VBN);
    3. after a determiner nothing else is a verb (*the use*, *a report*);
    4. a short list of frequent verbs that are rarely nouns, and their -s forms (VB/VBP/VBZ); a
       capitalised base form counts only as a sentence's first word (imperative: *Provide the form.*);
    5. context: a base form after a modal or *to* (VB), a present form after a subject pronoun
       (VBP/VBZ), skipping adverbs (*will not apply*, *it also provides*);
    6. morphology, never on a sentence's first word: -ed (VBD, or VBN after a verb), -ing (VBG),
       each with a list of common non-verbs (*hundred*, *morning*, *building*, *accounting*, ...),
       and an -s word between a noun and a determiner (*the court holds that*: VBZ).

    Apart from that imperative case only lower-case words are tagged by rules 4-6, so Title Case
    headings stay verbless (unstructured lower-cases all-caps text before tagging, but all-caps text
    never reaches the verb check: its capital ratio already rules out NarrativeText). It is deliberately conservative:
    a missed verb turns a one-sentence paragraph into a Title, a spurious one turns a heading
    into NarrativeText.
    """
    tags: list[str] = []
    for i in range(len(doc)):
        tag = _tag_for(doc, i, tags)
        tags.append(tag)
        if tag:
            doc[i].tag_ = tag
    return doc


def build_offline_nlp() -> Language:
    """``spacy.blank("en")`` + ``sentencizer`` + :func:`tag_verbs_penn`: nothing to download."""
    import spacy
    from spacy.language import Language

    if not Language.has_factory(OFFLINE_TAGGER_NAME):
        Language.component(OFFLINE_TAGGER_NAME, func=tag_verbs_penn)
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.add_pipe(OFFLINE_TAGGER_NAME)
    return nlp


_nlp_lock = threading.Lock()
_original_get_nlp: Callable[[], Any] | None = None
_warned_offline = False


def _clear_tokenize_caches(tokenize: Any) -> None:
    for name in ("_process_cached", "word_tokenize", "pos_tag", "_tokenize_for_cache"):
        cached = getattr(tokenize, name, None)
        if cached is not None and hasattr(cached, "cache_clear"):
            cached.cache_clear()


def ensure_nlp_pipeline() -> str:
    """Make unstructured's text heuristics work offline; return which pipeline they use.

    Returns ``"en_core_web_sm"`` when that model is installed (unstructured's own loader is kept, or
    put back), else installs :func:`build_offline_nlp` as ``unstructured.nlp.tokenize._get_nlp`` and
    returns ``"offline-rules"``. Idempotent and thread-safe; warns once per process when the offline
    pipeline is installed.
    """
    global _original_get_nlp, _warned_offline
    _prepare_unstructured_env()
    import spacy.util
    import unstructured.nlp.tokenize as tokenize

    with _nlp_lock:
        current = tokenize._get_nlp
        ours = getattr(current, "_docroute_offline", False)
        if spacy.util.is_package(SPACY_MODEL):
            if ours and _original_get_nlp is not None:
                tokenize._get_nlp = _original_get_nlp
                _clear_tokenize_caches(tokenize)
            return SPACY_MODEL
        if ours:
            return OFFLINE_PIPELINE
        nlp = build_offline_nlp()

        def _get_offline_nlp() -> Language:
            return nlp

        _get_offline_nlp._docroute_offline = True  # type: ignore[attr-defined]
        _get_offline_nlp.cache_clear = lambda: None  # type: ignore[attr-defined]  # like the lru_cache'd original
        _original_get_nlp = current
        tokenize._get_nlp = _get_offline_nlp
        _clear_tokenize_caches(tokenize)
        if not _warned_offline:
            _warned_offline = True
            logger.warning(
                "spaCy model %s is not installed: unstructured's NarrativeText/Title heuristics use an "
                "offline rule-based verb tagger (spacy.blank('en') + sentencizer + %s) instead; "
                "classification of one-sentence elements is approximate. Install the official model "
                "(python -m spacy download %s) for unstructured's reference behaviour.",
                SPACY_MODEL, OFFLINE_TAGGER_NAME, SPACY_MODEL,
            )
        return OFFLINE_PIPELINE


def _prepare_unstructured_env() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("UNSTRUCTURED_DISABLE_NOTICE", "1")
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")


# --------------------------------------------------------------------------------------------------
# coordinates


@dataclass(frozen=True)
class _PdfFrame:
    """Where a PDF page's cropbox lies in pdfminer's (rotated mediabox, top-left) space."""

    layout_w: float
    layout_h: float
    crop: tuple[float, float, float, float]  # x0, y0, x1, y1 in that space


def _pdfminer_frames(path: Path) -> dict[int, _PdfFrame]:
    """Per page (1-based): the cropbox in the space unstructured's ``fast`` coordinates use.

    pdfminer maps user space to device space with a ctm built from the mediabox and /Rotate
    (``PDFPageInterpreter.process_page``); unstructured then flips y with the layout height.
    """
    from pdfminer.pdfpage import PDFPage

    frames: dict[int, _PdfFrame] = {}
    with open(path, "rb") as fp:
        for number, page in enumerate(PDFPage.get_pages(fp), start=1):
            mx0, my0, mx1, my1 = (float(v) for v in page.mediabox)
            mx0, mx1 = min(mx0, mx1), max(mx0, mx1)
            my0, my1 = min(my0, my1), max(my0, my1)
            cx0, cy0, cx1, cy1 = (float(v) for v in page.cropbox)
            cx0, cx1 = sorted((cx0, cx1))
            cy0, cy1 = sorted((cy0, cy1))
            # PyMuPDF (our page sizes) uses the cropbox clipped to the mediabox.
            cx0, cy0, cx1, cy1 = max(cx0, mx0), max(cy0, my0), min(cx1, mx1), min(cy1, my1)
            if cx1 <= cx0 or cy1 <= cy0:
                cx0, cy0, cx1, cy1 = mx0, my0, mx1, my1
            rotate = page.rotate
            if rotate == 90:
                ctm = (0.0, -1.0, 1.0, 0.0, -my0, mx1)
            elif rotate == 180:
                ctm = (-1.0, 0.0, 0.0, -1.0, mx1, my1)
            elif rotate == 270:
                ctm = (0.0, 1.0, -1.0, 0.0, my1, -mx0)
            else:
                ctm = (1.0, 0.0, 0.0, 1.0, -mx0, -my0)
            a, b, c, d, e, f = ctm

            def device(x: float, y: float, a=a, b=b, c=c, d=d, e=e, f=f) -> tuple[float, float]:
                return a * x + c * y + e, b * x + d * y + f

            (dx0, dy0), (dx1, dy1) = device(mx0, my0), device(mx1, my1)
            layout_w, layout_h = abs(dx1 - dx0), abs(dy1 - dy0)
            corners = [device(x, y) for x in (cx0, cx1) for y in (cy0, cy1)]
            xs = [x for x, _ in corners]
            ys = [layout_h - y for _, y in corners]  # unstructured's rect_to_bbox flips y
            frames[number] = _PdfFrame(layout_w, layout_h, (min(xs), min(ys), max(xs), max(ys)))
    return frames


def _element_bbox(
    element: Any, page_w: float, page_h: float, frame: _PdfFrame | None
) -> BBox:
    coords = getattr(element.metadata, "coordinates", None)
    if coords is None or not coords.points or coords.system is None:
        return BBox(x0=0.0, y0=0.0, x1=page_w, y1=page_h)  # no position given: the whole page
    system = coords.system
    # Relative coordinates are bottom-left based (unstructured's RelativeCoordinateSystem);
    # this handles PixelSpace (top-left) and PointSpace (bottom-left) alike.
    rel = [system.convert_to_relative(x, y) for x, y in coords.points]
    sys_w, sys_h = float(system.width), float(system.height)
    xs = [rx * sys_w for rx, _ in rel]
    ys = [(1.0 - ry) * sys_h for _, ry in rel]  # top-left, in the system's units
    if (
        frame is not None
        and abs(frame.layout_w - sys_w) < 1.0
        and abs(frame.layout_h - sys_h) < 1.0
    ):
        fx0, fy0, fx1, fy1 = frame.crop
    else:
        fx0, fy0, fx1, fy1 = 0.0, 0.0, sys_w, sys_h
    sx, sy = page_w / (fx1 - fx0), page_h / (fy1 - fy0)

    def clamp(v: float, hi: float) -> float:
        return min(max(v, 0.0), hi)

    x0, x1 = clamp((min(xs) - fx0) * sx, page_w), clamp((max(xs) - fx0) * sx, page_w)
    y0, y1 = clamp((min(ys) - fy0) * sy, page_h), clamp((max(ys) - fy0) * sy, page_h)
    return BBox(x0=x0, y0=y0, x1=x1, y1=y1)


# --------------------------------------------------------------------------------------------------
# timeout


class _Deadline(BaseException):
    """Raised from SIGALRM; a BaseException so unstructured's ``except Exception`` cannot swallow it."""


_warned_timeout_thread = False


@contextmanager
def _time_limit(timeout_s: float | None) -> Iterator[None]:
    """Interrupt the block after ``timeout_s`` with SIGALRM (POSIX, main thread only).

    The pipeline runs engines in worker processes' main threads. From another thread a signal
    cannot be used; the limit is then not enforced and a warning is logged once. A tesseract
    subprocess running when the alarm fires is left to finish on its own.
    """
    global _warned_timeout_thread
    if not timeout_s or timeout_s <= 0:
        yield
        return
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        if not _warned_timeout_thread:
            _warned_timeout_thread = True
            logger.warning("unstructured timeout_s is only enforced in the main thread; running unbounded")
        yield
        return

    def _on_alarm(signum: int, frame: Any) -> None:
        raise _Deadline()

    previous_handler = signal.signal(signal.SIGALRM, _on_alarm)
    previous_delay, previous_interval = signal.setitimer(signal.ITIMER_REAL, timeout_s)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler)
        if previous_delay > 0:  # re-arm an outer timer with what is left of it
            left = max(previous_delay - (time.monotonic() - started), 0.001)
            signal.setitimer(signal.ITIMER_REAL, left, previous_interval)


# --------------------------------------------------------------------------------------------------
# partitioning


def _hint(strategy: str, languages: tuple[str, ...]) -> str:
    if strategy == "fast":
        return (
            "check that the PDF opens and has a text layer; for details set "
            "logging.getLogger('unstructured').setLevel(logging.DEBUG); or use the pymupdf engine"
        )
    if strategy == "ocr_only":
        return (
            f"check that tesseract and its language data ({'+'.join(languages)}) are installed "
            "(tesseract --list-langs) and that the file renders (pdftoppm); or use the pymupdf engine"
        )
    return "check the hi_res model cache (HF_HOME) and unstructured-inference; or use the pymupdf engine"


def _call(path: Path, strategy: str, languages: tuple[str, ...], fn: Callable[[], list[Any]]) -> list[Any]:
    try:
        return fn()
    except (UnstructuredError, _Deadline):
        raise
    except Exception as exc:
        raise UnstructuredError(
            f"{path.name}: unstructured ({strategy}) failed: {type(exc).__name__}: {exc}. "
            f"What to do: {_hint(strategy, languages)}."
        ) from exc


def _partition_fast(path: Path, languages: tuple[str, ...]) -> list[Any] | None:
    """``fast`` elements; ``None`` when unstructured refuses the PDF as too complex for pdfminer."""
    from unstructured.partition.pdf import partition_pdf

    elements = _call(
        path, "fast", languages,
        lambda: partition_pdf(filename=str(path), strategy="fast", languages=list(languages)),
    )
    if elements:
        return elements
    # unstructured's fast path catches every exception of its pdfminer pass and returns nothing.
    # Tell a real failure from a genuinely empty result.
    from unstructured.partition.pdf import extractable_elements, is_pdf_too_complex

    if _call(path, "fast", languages, lambda: is_pdf_too_complex(filename=str(path))):
        # A heuristic (many vector-graphics operators, or content streams over its CVE caps) under
        # which unstructured never runs pdfminer; its own "auto" strategy then goes to hi_res.
        return None
    # Re-running the pdfminer pass outside unstructured's try/except lets its exception surface.
    pages = _call(
        path, "fast", languages,
        lambda: extractable_elements(filename=str(path), languages=list(languages)),
    )
    if any(el.text.strip() for page in pages for el in page):
        raise UnstructuredError(
            f"{path.name}: unstructured's fast strategy returned no elements although pdfminer reads "
            f"text. What to do: {_hint('fast', languages)}."
        )
    return []


def _partition_pdf_ocr(path: Path, pages: list[int], n_pages: int, languages: tuple[str, ...]) -> list[Any]:
    """ocr_only over ``pages`` (1-based); other pages are left out of a temporary copy first."""
    from unstructured.partition.pdf import partition_pdf

    def run(filename: str) -> list[Any]:
        return partition_pdf(filename=filename, strategy="ocr_only", languages=list(languages))

    if pages == list(range(1, n_pages + 1)):
        return _call(path, "ocr_only", languages, lambda: run(str(path)))

    def run_subset() -> list[Any]:
        from pypdf import PdfReader, PdfWriter

        writer = PdfWriter()
        reader = PdfReader(str(path))
        for number in pages:
            writer.add_page(reader.pages[number - 1])
        with tempfile.TemporaryDirectory(prefix="docroute-unstructured-") as tmp:
            subset = os.path.join(tmp, "scanned-pages.pdf")
            with open(subset, "wb") as fh:
                writer.write(fh)
            elements = run(subset)
        for el in elements:  # back to the original page numbers
            el.metadata.page_number = pages[(el.metadata.page_number or 1) - 1]
        return elements

    return _call(path, "ocr_only", languages, run_subset)


def _partition_image(path: Path, strategy: str, languages: tuple[str, ...]) -> list[Any]:
    from unstructured.partition.image import partition_image

    def run(**source: Any) -> list[Any]:
        return partition_image(strategy=strategy, languages=list(languages), **source)

    if strategy == "hi_res":  # hi_res reads every frame itself
        return _call(path, strategy, languages, lambda: run(filename=str(path)))

    def run_frames() -> list[Any]:
        from PIL import Image, ImageSequence

        with Image.open(path) as image:
            n_frames = getattr(image, "n_frames", 1)
            if n_frames <= 1:
                return run(filename=str(path))
            elements: list[Any] = []
            for number, frame in enumerate(ImageSequence.Iterator(image), start=1):
                buffer = io.BytesIO()
                # Lossless and in the frame's own mode (as unstructured would read a one-frame
                # file); PNG cannot hold CMYK/YCbCr/float frames.
                png_ready = frame if frame.mode in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16") else frame.convert("RGB")
                png_ready.save(buffer, format="PNG")
                buffer.seek(0)
                for el in run(file=buffer):
                    el.metadata.page_number = number
                    elements.append(el)
            return elements

    return _call(path, strategy, languages, run_frames)


def _to_elements(
    raw: list[Any],
    strategy: str,
    page_sizes: dict[int, tuple[float, float]],
    frames: dict[int, _PdfFrame] | None,
    keep_pages: set[int],
    out: dict[int, list[Element]],
    path: Path,
) -> None:
    counters: dict[tuple[int, str], int] = {}  # each page is filled by exactly one call
    for item in raw:
        category = getattr(item, "category", "") or ""
        if category in _SKIPPED_CATEGORIES:
            continue
        meta = item.metadata
        page = int(meta.page_number or 1)
        if page not in keep_pages:
            continue
        if page not in page_sizes:
            raise UnstructuredError(
                f"{path.name}: unstructured returned page {page} but page_sizes has only "
                f"{sorted(page_sizes)}; pass the size of every page"
            )
        text = (item.text or "").strip()
        kind = _KIND_BY_CATEGORY.get(category, "other")
        if not text and kind not in ("figure", "table"):
            continue
        page_w, page_h = page_sizes[page]
        bbox = _element_bbox(item, page_w, page_h, frames.get(page) if frames else None)
        prob = getattr(meta, "detection_class_prob", None)
        if prob is not None:
            confidence = float(prob)
        elif strategy == "fast" or getattr(meta, "detection_origin", None) == "pdfminer":
            confidence = 1.0
        else:
            confidence = OCR_CONFIDENCE
        index = counters.get((page, kind), 0) + 1
        counters[(page, kind)] = index
        out.setdefault(page, []).append(
            Element(
                element_id=f"/page/{page}/{kind}/{index}",
                page_number=page,
                kind=kind,
                text=text,
                bbox=bbox,
                confidence=min(max(confidence, 0.0), 1.0),
                source=f"{NAME}:{strategy}",
                table_html=(getattr(meta, "text_as_html", None) or None) if kind == "table" else None,
            )
        )


def partition_elements(
    path: Path,
    mime_type: str,
    page_sizes: dict[int, tuple[float, float]],
    text_layer_pages: set[int],
    languages: tuple[str, ...] = ("eng",),
    timeout_s: float | None = None,
) -> dict[int, list[Element]]:
    """Partition one document with unstructured; elements per page, bboxes in PDF points, top-left.

    ``page_sizes``: 1-based page number -> (width, height) in points as PyMuPDF reports them (for
    images: pixels * 72 / dpi). ``text_layer_pages``: the pages with a usable text layer (PDFs).
    Every page of ``page_sizes`` is a key of the result, possibly with no elements. Element ids are
    ``/page/{n}/{kind}/{i}``, counted per kind and page in unstructured's reading order.

    Raises ``UnstructuredError`` (with the file name and what to do) when unstructured fails,
    ``UnstructuredTimeoutError`` when ``timeout_s`` runs out, ``ValueError`` for an unsupported type.
    """
    path = Path(path)
    mime = (mime_type or "").lower()
    if mime != PDF_MIME and mime not in IMAGE_MIMES:
        raise ValueError(f"{path.name}: the unstructured engine reads PDFs and images, not {mime_type!r}")
    languages = tuple(languages) or ("eng",)
    out: dict[int, list[Element]] = {page: [] for page in sorted(page_sizes)}
    all_pages = set(page_sizes)
    # Imports and the spaCy pipeline are set up before the clock starts (an interrupted import can
    # leave half-initialised modules behind), so timeout_s bounds the document's own work.
    _load_unstructured(path, image=mime != PDF_MIME)
    hi_res = unstructured_available_hi_res()
    started = time.monotonic()
    strategy = "hi_res" if hi_res else ("ocr_only" if mime != PDF_MIME else "fast")
    try:
        with _time_limit(timeout_s):
            if mime != PDF_MIME:
                _to_elements(_partition_image(path, strategy, languages), strategy, page_sizes, None,
                             all_pages, out, path)
            elif hi_res:
                from unstructured.partition.pdf import partition_pdf

                raw = _call(path, strategy, languages, lambda: partition_pdf(
                    filename=str(path), strategy="hi_res", languages=list(languages),
                    infer_table_structure=_table_structure_available(),
                ))
                _to_elements(raw, strategy, page_sizes, None, all_pages, out, path)
            else:
                text_pages = all_pages & set(text_layer_pages)
                scanned = sorted(all_pages - text_pages)
                strategy = "fast" if text_pages else "ocr_only"
                frames = _call(path, strategy, languages, lambda: _pdfminer_frames(path))
                if text_pages:
                    raw = _partition_fast(path, languages)
                    if raw is None:
                        logger.warning(
                            "%s: unstructured judges the PDF too complex for fast text extraction "
                            "(vector drawings or oversized content streams); OCRing all its pages",
                            path.name,
                        )
                        scanned = sorted(all_pages)
                    else:
                        _to_elements(raw, strategy, page_sizes, frames, text_pages, out, path)
                if scanned:
                    strategy = "ocr_only"
                    raw = _partition_pdf_ocr(path, scanned, len(frames), languages)
                    _to_elements(raw, strategy, page_sizes, None, set(scanned), out, path)
    except _Deadline:
        raise UnstructuredTimeoutError(
            f"{path.name}: unstructured ({strategy}) did not finish within {timeout_s:g} s "
            f"({time.monotonic() - started:.1f} s elapsed). What to do: raise timeout_s, or use the "
            "pymupdf engine for this file."
        ) from None
    return out


def _load_unstructured(path: Path, image: bool) -> None:
    """Import unstructured's partitioners with the offline spaCy pipeline in place, or fail clearly."""
    _prepare_unstructured_env()
    try:
        ensure_nlp_pipeline()
        import unstructured.nlp.tokenize as tokenize

        # Load it now: inside partition_pdf(fast) a failure here is swallowed and yields no elements.
        tokenize._get_nlp()
    except Exception as exc:
        raise UnstructuredError(
            f"{path.name}: unstructured's spaCy pipeline could not be loaded: "
            f"{type(exc).__name__}: {exc}. What to do: install the official {SPACY_MODEL} wheel, or "
            "uninstall a broken copy so that the offline pipeline is used."
        ) from exc
    try:
        if image:
            import unstructured.partition.image  # noqa: F401
        else:
            import unstructured.partition.pdf  # noqa: F401
    except Exception as exc:
        raise UnstructuredError(
            f"{path.name}: unstructured's PDF/image partitioner could not be imported: "
            f"{type(exc).__name__}: {exc}. What to do: reinstall the project's environment "
            "(unstructured, unstructured-inference, pdfminer.six, pikepdf, pi-heif)."
        ) from exc
