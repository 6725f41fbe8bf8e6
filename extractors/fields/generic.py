"""The schema-driven field extractor: any ``TargetSchema`` on the layout path, no templates, no GPU.

``extract_fields(schema, pages)`` reads words and their geometry (text layer or OCR) and returns one
``FieldValue`` per schema field it found, with the invoice path's building blocks: rows and phrases
(``lines``), fuzzy label matching (``labels.Lexicon``) on labels taken from the model itself
(``schema_labels``: field names, aliases, ``labels``, short descriptions, synonyms from
``synonyms.toml``), the value right of the label, below it, or in the same phrase/box (``regions``),
parsed by the field's type with the document's own number and date conventions (``values``, which
uses ``dates``/``amounts``), and ``list[Model]`` fields read from tables (``tables``).

The invoice lexicon's labels that name no field of the schema ("Phone", "IBAN", "Page"...) still end a
value: a value runs from its label to the next label on the row.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass

from pydantic import BaseModel

from docroute.schemas.values import FieldValue, ParsedPage

from .amounts import NumberStyle
from .common import FALLBACK, Candidate, order_of, to_field
from .conventions import infer_style
from .labels import LEXICON, OTHER, LabelHit, Lexicon, find_labels, hits_by_row
from .lines import Row, fold, page_rows, words_source
from .regions import Region, below, right_of
from .schema_labels import BOOL, TABLE, TEXT, FieldSpec, field_specs, lexicon_entries
from .tables import TABLE_END, read_list
from .values import mark, read_value

# A schema's labels are long and specific ("Delivery note number"), and OCR misreads umlauts ("Packstücke"
# -> "Packstiicke", 86): a little more tolerance than the invoice lexicon's 88.
LABEL_CUTOFF = 85.0


TOTALS = ("total", "subtotal", "tax_total", "amount_due")


def lexicon_for(specs: Sequence[FieldSpec]) -> Lexicon:
    """The schema's labels, plus the invoice lexicon's other labels as value stoppers (``OTHER``; its
    totals labels as ``TABLE_END``: they also end a table)."""
    entries = lexicon_entries(s for s in specs if s.kind != TABLE)
    own = {label for labels in entries.values() for label, _ in labels}

    def stoppers(fields) -> list[tuple[str, float]]:
        return [(label, w) for f in fields for label, w in LEXICON[f] if " ".join(label.split()).lower() not in own]

    return Lexicon.of({**entries, OTHER: stoppers(f for f in LEXICON if f not in TOTALS),
                       TABLE_END: stoppers(TOTALS)}, cutoff=LABEL_CUTOFF)


def _value_start(hit: LabelHit) -> tuple[int, int]:
    phrase = hit.row.phrases[hit.phrase]
    return (hit.phrase, hit.end) if hit.end < len(phrase.words) else (hit.phrase + 1, 0)


def _regions(hit: LabelHit, rows_at: dict[int, tuple[Row, ...]], hits_at) -> list[Region]:
    """Right of the label and below it; below first when the label has no colon and its value box is
    left-aligned under it (labels above values, as in boxed forms)."""
    row_hits = hits_at.get((hit.page_number, hit.row.index), ())
    start = _value_start(hit)
    # a stopper label right where the value starts, close to the label, is the value ("Terms: Net 30"),
    # not the next label ("Supplier:            Ship To:" is two labels)
    near = start[0] == hit.phrase or (start[0] < len(hit.row.phrases) and hit.row.phrases[start[0]].bbox.x0
                                      - hit.bbox.x1 < 3 * max(hit.bbox.height, 1.0))
    stops = [h for h in row_hits if not (near and h.field in (OTHER, TABLE_END) and (h.phrase, h.start) == start)]
    right = right_of(hit, stops)
    down = below(hit, rows_at[hit.page_number], hits_at)
    colon = hit.words[-1].text.rstrip().endswith((":", "#")) if hit.words else False
    if down is not None and (right is None or right.position < 1.0) and not colon:
        height = max(hit.bbox.height, 1.0)
        if abs(down.words[0].bbox.x0 - hit.bbox.x0) < 1.5 * height:
            return [down] + ([right] if right else [])
    return [r for r in (right, down) if r is not None]


def _bool_candidate(hit: LabelHit, row_words) -> Candidate:
    """A check box beside its label: a mark just left of the label (or right of it); no mark = unchecked."""
    height = max(hit.bbox.height, 1.0)
    left = [w for w in row_words if w.bbox.x1 <= hit.bbox.x0 + 1 and hit.bbox.x0 - w.bbox.x1 < 3 * height]
    right = [w for w in row_words if w.bbox.x0 >= hit.bbox.x1 - 1 and w.bbox.x0 - hit.bbox.x1 < 3 * height]
    for words in (left[-1:], right[:1]):
        found = mark(words)
        if found is not None:
            return Candidate(found, tuple(words), hit.score, hit.page_number, order_of(words, hit.page_number))
    return Candidate(False, hit.words, 0.7 * hit.score, hit.page_number, order_of(hit.words, hit.page_number))


LATER_PAGE = 0.95  # a value found on a page after the first is a little less likely the document's own


def candidates(spec: FieldSpec, hits: Sequence[LabelHit], regions: Callable[[LabelHit], Iterable[Region]],
               style: NumberStyle, skip: Container[tuple[int, int]] = (), first_page: int | None = None
               ) -> list[Candidate]:
    """Per label of ``spec`` (not on a ``skip`` row): the value of its kind in the first of ``regions(hit)``
    that holds one, scored label strength x placement x parse cleanliness (x ``LATER_PAGE``). Used by the
    invoice rules (its dates) and for every field of any other schema."""
    out = []
    for hit in hits:
        if hit.field != spec.name or (hit.page_number, hit.row.index) in skip:
            continue
        if spec.kind == BOOL:
            out.append(_bool_candidate(hit, hit.row.words))
            continue
        for region in regions(hit):
            got = read_value(spec, region.words, style)
            if got is None:
                continue
            value, words, clean = got
            page_factor = 1.0 if first_page is None or region.page_number == first_page else LATER_PAGE
            out.append(Candidate(value, tuple(words), hit.score * region.position * clean * page_factor,
                                 region.page_number, order_of(words, region.page_number)))
            break
    return out


_RULE_CHARS = "|_¦"


def _without_rules(page: ParsedPage) -> ParsedPage:
    """OCR reads box and table borders as "|" or "__" glued to words or alone; a tall "|" would join
    a box's label and value into one row. Strip them (the invoice path reads pages as they are)."""
    words = []
    for w in page.words:
        text = w.text.strip(_RULE_CHARS)
        if text:
            words.append(w if text == w.text else w.model_copy(update={"text": text}))
    return page if len(words) == len(page.words) and all(a is b for a, b in zip(words, page.words, strict=True)) \
        else page.model_copy(update={"words": tuple(words)})


@dataclass(frozen=True)
class DocumentView:
    """A document as every field extractor reads it: pages, rows, the labels found, the conventions."""

    pages: tuple[ParsedPage, ...]
    rows: tuple[tuple[Row, ...], ...]
    rows_at: dict[int, tuple[Row, ...]]
    hits: tuple[LabelHit, ...]
    hits_at: dict[tuple[int, int], list[LabelHit]]
    style: NumberStyle


# Function words of the languages that write dates day first; a handful of them on the page tells an
# undecided "03/05/2024" to read day first (English documents without a "$" read month first).
_NON_ENGLISH = frozenset({"der", "die", "das", "und", "mit", "von", "für", "ihre", "de", "le", "la", "les", "du", "des",
                          "et", "pour", "avec", "votre", "het", "een", "van", "voor", "uw", "el", "los", "las",
                          "y", "con", "por", "su", "il", "della", "di", "per"})


def _not_english(pages: Sequence[ParsedPage]) -> bool:
    return sum(fold(w.text).strip(".,:;") in _NON_ENGLISH for p in pages for w in p.words) >= 3


def read_document(pages: Sequence[ParsedPage], lexicon: Lexicon, languages: tuple[str, ...],
                  strip_rules: bool = False) -> DocumentView | None:
    """Pages -> rows -> label hits (``lexicon``) -> number/date conventions; None without words.
    The first half of both the invoice rules and the schema-driven extractor (``strip_rules``: OCR'd box
    borders removed, and the page's own language words count for the date order)."""
    pages = tuple(sorted(pages, key=lambda p: p.page_number))
    if strip_rules:
        pages = tuple(_without_rules(p) for p in pages)
    if not pages or not any(p.words for p in pages):
        return None
    rows = tuple(page_rows(p) for p in pages)
    hits = tuple(find_labels([r for page in rows for r in page], lexicon))
    foreign = 0 if "en" in languages and not (strip_rules and _not_english(pages)) else 1
    style = infer_style((w for p in pages for w in p.words), tuple(languages), foreign_labels=foreign)
    return DocumentView(pages, rows, {p.page_number: r for p, r in zip(pages, rows, strict=True)}, hits,
                        hits_by_row(hits), style)


def extract_fields(schema: type[BaseModel], pages: Sequence[ParsedPage], *,
                   languages: tuple[str, ...] = ("en", "de", "fr", "nl")) -> dict[str, FieldValue]:
    """The schema's fields found on the pages, each with confidence, source, page, bbox and printed text."""
    specs = field_specs(schema)
    view = read_document(pages, lexicon_for(specs), languages, strip_rules=True)
    if view is None:
        return {}
    rows, rows_at, hits, hits_at, style = view.rows, view.rows_at, view.hits, view.hits_at, view.style
    out: dict[str, FieldValue] = {}
    table_rows: set[tuple[int, int]] = set()
    own_hits = {k: [h for h in v if h.field != OTHER] for k, v in hits_at.items()}  # schema labels, totals
    for spec in specs:
        if spec.kind == TABLE and spec.columns:
            found, used = read_list(spec, rows, own_hits, style)
            table_rows |= used
            if found is not None:
                out[spec.name] = found
    # every candidate of every field, best first; a word read as one field's value is no other's
    pool = [(c, s) for s in specs if s.kind != TABLE
            for c in candidates(s, hits, lambda h: _regions(h, rows_at, hits_at), style, table_rows,
                                view.pages[0].page_number)]
    pool.sort(key=lambda cs: (-cs[0].quality, cs[0].order))
    taken: set[int] = set()
    for cand, spec in pool:
        ids = {id(w) for w in cand.words}
        if spec.name in out or (ids & taken and spec.kind != BOOL):
            continue
        out[spec.name] = to_field(spec.name, cand)
        taken |= ids
    cur = next((s for s in specs if s.name not in out and s.name.split("_")[-1] == "currency"), None)
    if cur is not None and style.currency and (cur.kind == TEXT or any(p == style.currency for p, _ in cur.choices)):
        # no currency label: the document's currency, from the symbols and codes beside its amounts
        value = next((v for p, v in cur.choices if p == style.currency), style.currency)
        out[cur.name] = to_field(cur.name, Candidate(value, (), FALLBACK, view.pages[0].page_number, (0, 0.0)),
                                 source=words_source(w for p in view.pages for w in p.words))
    return {s.name: out[s.name] for s in specs if s.name in out}
