"""The multilingual label lexicon and fuzzy label matching on rows.

Each field has label phrases in English, German, French and Dutch with a weight: how surely the label
names that field ("invoice number" 1.0, a bare "invoice" 0.6, "order id" 0.45). ``OTHER`` labels name
fields we do not extract; they matter because a value ends where the next label starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from rapidfuzz import fuzz, process

from docroute.schemas.values import BBox, Word

from .lines import Row, fold

OTHER = "_other"
SHIP_TO = "_ship_to"  # not extracted, but its address block is nobody's vendor address
PAYEE = "_payee"  # not extracted: the account holder's name confirms or corrects the vendor

# field -> ((label, weight), ...). Labels are compared accent-free and case-free.
LEXICON: dict[str, tuple[tuple[str, float], ...]] = {
    "invoice_number": (
        ("invoice number", 1.0), ("invoice no", 1.0), ("invoice #", 1.0), ("invoice nr", 1.0),
        ("invoice num", 1.0), ("invoice id", 1.0), ("inv no", 0.9), ("inv #", 0.9), ("invoice ref", 0.9),
        ("bill no", 0.8), ("bill number", 0.8), ("tax invoice no", 1.0), ("document no", 0.7),
        ("rechnungsnummer", 1.0), ("rechnungsnr", 1.0), ("rechnung nr", 1.0), ("rechnungs nr", 1.0),
        ("rechnung no", 1.0), ("belegnummer", 0.8), ("facture n°", 1.0), ("facture no", 1.0),
        ("facture nº", 1.0), ("numero de facture", 1.0), ("n° de facture", 1.0), ("n° facture", 1.0),
        ("factuurnummer", 1.0), ("factuur nr", 1.0), ("factuurnr", 1.0), ("factuur nummer", 1.0),
        ("invoice", 0.6), ("facture", 0.6), ("rechnung", 0.6), ("factuur", 0.6), ("#", 0.55),
        ("order id", 0.45), ("order number", 0.45), ("order no", 0.45), ("booking id", 0.45),
        ("receipt no", 0.6), ("receipt number", 0.6), ("receipt #", 0.6), ("bestellnummer", 0.4),
    ),
    "invoice_date": (
        ("invoice date", 1.0), ("date of invoice", 1.0), ("date of issue", 1.0), ("issue date", 1.0),
        ("date issued", 1.0), ("invoice dt", 0.9), ("tax point", 0.8),
        ("rechnungsdatum", 1.0), ("datum der rechnung", 1.0), ("belegdatum", 0.9),
        ("date de facture", 1.0), ("date de facturation", 1.0), ("date d'emission", 1.0),
        ("date facture", 1.0), ("factuurdatum", 1.0), ("factuur datum", 1.0),
        ("date", 0.8), ("datum", 0.8), ("dated", 0.8),
    ),
    "due_date": (
        ("due date", 1.0), ("payment due", 1.0), ("date due", 1.0), ("due by", 1.0), ("due on", 0.9),
        ("pay by", 0.9), ("payment due date", 1.0), ("due", 0.8), ("payable by", 0.9),
        ("fallig", 1.0), ("fallig am", 1.0), ("falligkeitsdatum", 1.0), ("falligkeit", 1.0),
        ("zahlungsziel", 0.9), ("zahlbar bis", 1.0), ("echeance", 1.0), ("date d'echeance", 1.0),
        ("date limite de paiement", 1.0), ("a payer avant le", 1.0), ("vervaldatum", 1.0),
        ("vervaldag", 1.0), ("uiterste betaaldatum", 1.0), ("te betalen voor", 0.9),
    ),
    "total": (  # the grand total, tax included (before prepayments and credits)
        ("total", 0.8), ("grand total", 1.0), ("total amount", 0.95), ("invoice total", 1.0),
        ("total incl. vat", 1.0), ("total inc vat", 1.0), ("total incl. tax", 1.0),
        ("gesamtbetrag", 1.0), ("rechnungsbetrag", 1.0), ("endbetrag", 1.0), ("gesamtsumme", 1.0),
        ("gesamt", 0.7), ("summe", 0.6), ("bruttobetrag", 0.9), ("gesamt brutto", 1.0),
        ("total ttc", 1.0), ("montant ttc", 1.0), ("montant total", 0.9), ("total facture", 0.9),
        ("montant eur ttc", 0.9), ("totaal", 0.85), ("totaalbedrag", 1.0), ("totaal bedrag", 1.0),
        ("factuur totaal", 1.0), ("totaal incl. btw", 1.0), ("factuurbedrag", 1.0),
    ),
    "amount_due": (  # what is still to pay: the grand total less prepayments and credits
        ("amount due", 1.0), ("balance due", 1.0), ("total due", 1.0), ("total amount due", 1.0),
        ("amount payable", 1.0), ("total payable", 1.0), ("total to pay", 1.0), ("amount to pay", 1.0),
        ("please pay", 0.9), ("balance", 0.6), ("outstanding", 0.8), ("amount outstanding", 1.0),
        ("zahlbetrag", 1.0), ("zu zahlen", 1.0), ("zu zahlender betrag", 1.0), ("noch zu zahlen", 1.0),
        ("offener betrag", 1.0), ("restbetrag", 1.0), ("forderungsbetrag", 1.0),
        ("net a payer", 1.0), ("reste a payer", 1.0), ("montant a payer", 1.0), ("somme a payer", 1.0),
        ("total a payer", 1.0), ("solde du", 1.0), ("montant du", 1.0),
        ("te betalen", 1.0), ("totaal te betalen", 1.0), ("openstaand bedrag", 1.0), ("nog te betalen", 1.0),
    ),
    "paid": (  # a prepayment or credit already deducted: the amount due is then not the total
        ("amount paid", 1.0), ("paid", 0.8), ("payment received", 1.0), ("prepayment", 1.0), ("prepaid", 1.0),
        ("deposit paid", 1.0), ("credit applied", 1.0), ("less payment", 1.0), ("payments/credits", 1.0),
        ("bezahlt", 1.0), ("anzahlung", 1.0), ("vorauszahlung", 1.0), ("abschlagszahlung", 1.0),
        ("gutschrift", 0.9), ("bereits bezahlt", 1.0), ("acompte", 1.0), ("deja paye", 1.0), ("avoir", 0.8),
        ("deja regle", 1.0), ("betaald", 1.0), ("aanbetaling", 1.0), ("vooruitbetaling", 1.0), ("reeds betaald", 1.0),
    ),
    "subtotal": (
        ("subtotal", 1.0), ("sub total", 1.0), ("sub-total", 1.0), ("net amount", 0.9), ("net total", 0.9),
        ("total net", 0.9), ("net", 0.6), ("total excl. vat", 1.0), ("total excl vat", 1.0),
        ("total before tax", 1.0), ("amount before tax", 1.0), ("taxable amount", 0.8),
        ("zwischensumme", 1.0), ("nettobetrag", 1.0), ("netto", 0.7), ("summe netto", 1.0),
        ("gesamt netto", 1.0), ("total ht", 1.0), ("montant ht", 0.9), ("sous-total", 1.0),
        ("sous total", 1.0), ("total hors taxes", 1.0), ("montant eur ht", 0.9),
        ("subtotaal", 1.0), ("exclusief btw", 1.0), ("excl. btw", 1.0), ("totaal excl. btw", 1.0),
        ("grondslag", 0.8), ("netto bedrag", 1.0),
    ),
    "tax_total": (
        ("tax", 0.85), ("vat", 0.85), ("tva", 0.85), ("mwst", 0.85), ("ust", 0.8), ("btw", 0.85),
        ("gst", 0.85), ("sales tax", 1.0), ("tax total", 1.0), ("total tax", 1.0), ("vat amount", 1.0),
        ("tax amount", 1.0), ("umsatzsteuer", 1.0), ("mehrwertsteuer", 1.0), ("montant tva", 1.0),
        ("total tva", 1.0), ("btw bedrag", 1.0), ("igst", 0.8), ("cgst", 0.7), ("sgst", 0.7),
        ("hst", 0.8), ("taxes", 0.8),
    ),
    "customer": (
        ("bill to", 1.0), ("billed to", 1.0), ("sold to", 1.0),
        ("invoice to", 1.0), ("customer", 0.7), ("client", 0.7), ("buyer", 0.8), ("billing address", 0.9),
        ("rechnungsempfanger", 1.0), ("rechnungsadresse", 0.9), ("kunde", 0.7), ("empfanger", 0.7),
        ("facture a", 1.0), ("facture au nom de", 1.0), ("adresse de facturation", 0.9),
        ("factuuradres", 0.9), ("klant", 0.7),
    ),
    "vendor": (
        ("sold by", 1.0), ("seller", 0.9), ("supplier", 0.9), ("vendor", 0.9), ("from", 0.5),
        ("issued by", 0.9), ("verkaufer", 0.9), ("lieferant", 0.9),
        ("fournisseur", 0.9), ("vendeur", 0.9), ("leverancier", 0.9), ("verkoper", 0.9),
    ),
    OTHER: (
        ("order date", 1.0), ("orderdatum", 1.0), ("bestelldatum", 1.0), ("date de commande", 1.0),
        ("delivery date", 1.0), ("lieferdatum", 1.0), ("date de livraison", 1.0), ("leverdatum", 1.0),
        ("customer no", 1.0),
        ("customer number", 1.0), ("customer id", 1.0), ("account number", 1.0), ("account no", 1.0),
        ("klantnummer", 1.0), ("kundennr", 1.0), ("kundennummer", 1.0), ("numero client", 1.0),
        ("id.client", 1.0), ("phone", 1.0), ("tel", 1.0), ("telefon", 1.0), ("telephone", 1.0),
        ("fax", 1.0), ("email", 1.0), ("e-mail", 1.0), ("page", 1.0), ("seite", 1.0), ("reference", 1.0),
        ("ref", 1.0), ("po number", 1.0), ("purchase order", 1.0), ("payment terms", 1.0),
        ("terms", 0.8), ("zahlungsbedingungen", 1.0), ("iban", 1.0), ("bic", 1.0),
        ("swift", 1.0), ("vat id", 1.0), ("vat no", 1.0), ("vat reg. no", 1.0), ("vat number", 1.0),
        ("ustid", 1.0), ("ust-idnr", 1.0), ("steuer-nr", 1.0), ("tax id", 1.0), ("siret", 1.0),
        ("siren", 1.0), ("kvk", 1.0), ("btw nummer", 1.0), ("btw nr", 1.0), ("vat/tin", 1.0),
        ("service tax #", 1.0), ("gstin", 1.0), ("cin", 1.0), ("pan", 1.0),
        ("guest name", 1.0), ("check in", 1.0), ("check out", 1.0), ("payment mode", 1.0),
        ("payment method", 1.0), ("ordered through", 1.0), ("period", 0.8),
        ("numero de dossier", 1.0), ("numero de ligne", 1.0),
        ("modes de reglement", 1.0), ("discount", 1.0), ("rabatt", 1.0), ("remise", 1.0),
        ("korting", 1.0), ("shipping", 0.8), ("attn", 1.0), ("t.a.v", 1.0), ("z.hd", 1.0),
        ("bank account", 1.0), ("bank name", 1.0), ("account", 0.8),
        ("name", 0.8), ("nom", 0.8), ("naam", 0.8), ("address", 0.8), ("adresse", 0.8), ("adres", 0.8),
        ("notes", 0.8), ("note", 0.8), ("remarks", 0.8), ("hotel details", 1.0), ("booking details", 1.0),
    ),
    PAYEE: (  # the bank account's holder: who is paid, the vendor
        ("account holder", 1.0), ("account name", 0.9), ("beneficiary", 0.9), ("payee", 0.9),
        ("kontoinhaber", 1.0), ("zahlungsempfanger", 1.0), ("titulaire du compte", 1.0), ("beneficiaire", 0.9),
        ("rekeninghouder", 1.0), ("ten name van", 0.9), ("begunstigde", 0.9),
    ),
    SHIP_TO: (
        ("ship to", 1.0), ("shipping address", 1.0), ("delivery address", 1.0), ("deliver to", 1.0),
        ("afleveradres", 1.0), ("lieferadresse", 1.0), ("lieferanschrift", 1.0), ("adresse de livraison", 1.0),
        ("livre a", 1.0),
    ),
}

# Labels of four characters or fewer must match exactly; longer ones may differ by OCR noise.
_EXACT_MAX_LEN = 4
_FUZZY_CUTOFF = 88.0
_PUNCT = ".:;,()[]*\"'`´’|"


def norm_token(text: str) -> str:
    return fold(text).strip(_PUNCT)


@dataclass(frozen=True)
class Lexicon:
    """A label lexicon ready for matching: n tokens -> label text -> [(field, weight)]."""

    by_length: dict[int, dict[str, list[tuple[str, float]]]]
    cutoff: float = _FUZZY_CUTOFF  # least fuzzy similarity (0..100) of a label longer than four characters

    @classmethod
    def of(cls, lexicon: dict[str, Sequence[tuple[str, float]]], cutoff: float = _FUZZY_CUTOFF) -> Lexicon:
        out: dict[int, dict[str, list[tuple[str, float]]]] = {}
        for field, labels in lexicon.items():
            for label, weight in labels:
                key = " ".join(norm_token(t) for t in label.split())
                if key:
                    out.setdefault(len(key.split()), {}).setdefault(key, []).append((field, weight))
        return cls(out, cutoff)

    @cached_property
    def max_tokens(self) -> int:
        return max(self.by_length, default=0)


INVOICE_LEXICON = Lexicon.of(LEXICON)  # built once from constants; never mutated


@dataclass(frozen=True)
class LabelHit:
    field: str
    weight: float
    match: float  # fuzzy similarity 0..1
    row: Row
    phrase: int  # index of the phrase in the row
    start: int  # first word of the label in the phrase
    end: int  # one past the last word (trailing ":" and "#" included)

    @cached_property
    def words(self) -> tuple[Word, ...]:
        return self.row.phrases[self.phrase].words[self.start:self.end]

    @cached_property
    def bbox(self) -> BBox:
        return BBox.enclosing([w.bbox for w in self.words])

    @property
    def score(self) -> float:
        """How surely this is a label of ``field``: weight x similarity, less when mid-phrase."""
        position = 1.0 if self.start == 0 else 0.85
        return self.weight * self.match * position

    @property
    def page_number(self) -> int:
        return self.row.page_number


def _lookup(candidate: str, n: int, lexicon: Lexicon) -> tuple[str, float] | None:
    table = lexicon.by_length.get(n)
    if not table:
        return None
    if candidate in table:
        return candidate, 1.0
    if len(candidate) <= _EXACT_MAX_LEN:
        return None
    squashed = candidate.replace(" ", "")
    best = process.extractOne(candidate, table.keys(), scorer=fuzz.ratio, score_cutoff=lexicon.cutoff)
    best2 = process.extractOne(squashed, table.keys(), scorer=fuzz.ratio, score_cutoff=lexicon.cutoff)
    if best2 and (not best or best2[1] > best[1]):
        best = best2
    if not best or len(best[0]) <= _EXACT_MAX_LEN:
        return None
    return best[0], best[1] / 100.0


def _phrase_hits(row: Row, p_idx: int, lexicon: Lexicon) -> list[LabelHit]:
    words = row.phrases[p_idx].words
    tokens = [(i, norm_token(w.text)) for i, w in enumerate(words)]
    tokens = [(i, t) for i, t in tokens if t]
    found: list[LabelHit] = []
    for k in range(len(tokens)):
        for n in range(1, min(lexicon.max_tokens, len(tokens) - k) + 1):
            if any(c.isdigit() for c in tokens[k + n - 1][1]):
                break  # labels hold no digits; a number is where the value starts
            candidate = " ".join(t for _, t in tokens[k:k + n])
            hit = _lookup(candidate, n, lexicon)
            if hit is None:
                continue
            key, similarity = hit
            first, last = tokens[k][0], tokens[k + n - 1][0]
            for field, weight in lexicon.by_length[n][key]:
                found.append(LabelHit(field, weight, similarity, row, p_idx, first, last + 1))
    # longest label first, then best; keep those that do not overlap an accepted one
    found.sort(key=lambda h: (-(h.end - h.start), -h.weight * h.match))
    taken: list[LabelHit] = []
    used: set[int] = set()
    for h in found:
        span = set(range(h.start, h.end))
        if span & used:
            if any(t.start == h.start and t.end == h.end for t in taken):
                taken.append(h)  # the same words can name two fields ("Rechnung" the title, the number)
            continue
        taken.append(h)
        used |= span
    taken.sort(key=lambda h: h.start)
    return _absorb(taken, words)


def _absorb(hits: list[LabelHit], words: Sequence[Word]) -> list[LabelHit]:
    """Extend labels over trailing punctuation words and merge a label with a same-field label after it."""
    out: list[LabelHit] = []
    for h in hits:
        end = h.end
        while end < len(words) and not norm_token(words[end].text):
            end += 1
        h = LabelHit(h.field, h.weight, h.match, h.row, h.phrase, h.start, end)
        prev = [o for o in out if o.end == h.start and o.field == h.field]
        if prev:
            p = prev[0]
            out[out.index(p)] = LabelHit(p.field, max(p.weight, h.weight), max(p.match, h.match), p.row,
                                         p.phrase, p.start, h.end)
            continue
        out.append(h)
    return out


def find_labels(rows: Sequence[Row], lexicon: Lexicon = INVOICE_LEXICON) -> list[LabelHit]:
    """Every label of ``lexicon`` (by default the invoice lexicon) on the given rows."""
    return [h for row in rows for p_idx in range(len(row.phrases)) for h in _phrase_hits(row, p_idx, lexicon)]


def hits_by_row(hits: Sequence[LabelHit]) -> dict[tuple[int, int], list[LabelHit]]:
    out: dict[tuple[int, int], list[LabelHit]] = {}
    for h in hits:
        out.setdefault((h.page_number, h.row.index), []).append(h)
    return out
