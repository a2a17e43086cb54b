"""Per-sentence support check: does each sentence of an answer follow from the sources it cites?

The UI marks weakly supported sentences with the ``reason`` given here. Two signals, used alone
or together:

- lexical (always available): the share of the sentence's content words found in its cited
  passages, plus hard rules a clinician would apply first: every number, and every dose with its
  unit, must appear in a cited passage; every drug the sentence names must too; and the sentence
  must not flip the negation of the passage clause it matches best;
- semantic (when ``embed`` is given): the cosine similarity between the sentence and the closest
  sentence window of its cited passages. ``embed`` maps ``list[str]`` to an array of shape
  ``(n, dim)`` with rows of norm 1, e.g. ``retrieval.embedder.Embedder().encode``.

Wrong doses, flipped negations and swapped drugs barely move an embedding, so the hard rules
apply in the lexical and combined modes; the similarity catches paraphrases the word overlap
misses and topical sentences that share words with a passage but not its claim.

Plain Python and numpy: no Django, and no model unless ``embed`` is given.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from inference.citations import CitedSentence, cited_sentences
from inference.markers import markers_remove
from retrieval.sentences import PASSAGE, sentences_split

if TYPE_CHECKING:
    from numpy.typing import NDArray

Embed = Callable[[list[str]], "NDArray[np.float32]"]
Mode = Literal["lexical", "semantic", "combined"]

# Defaults chosen from first principles, not fitted to the labelled set: a sentence should share
# at least half of its content words with what it cites; all-MiniLM-L6-v2 puts paraphrases of
# one statement above ~0.6 and sentences that merely share a topic around 0.3-0.5.
MIN_OVERLAP = 0.5
MIN_SIMILARITY = 0.6

# Machine-readable outcomes (``SentenceSupport.kind``).
SUPPORTED = "supported"
NO_CLAIM = "no_claim"
NO_CITATION = "no_citation"
UNKNOWN_SOURCE = "unknown_source"
DOSE_MISSING = "dose_missing"
NUMBER_MISSING = "number_missing"
DRUG_MISSING = "drug_missing"
NEGATION_MISMATCH = "negation_mismatch"
LOW_OVERLAP = "low_overlap"
LOW_SIMILARITY = "low_similarity"
LOW_SUPPORT = "low_support"


@dataclass(frozen=True)
class SentenceSupport:
    """The verdict on one sentence.

    ``score`` is in [0, 1]: the lexical overlap, the similarity, or their mean, by mode (0 when
    there was nothing to compare). ``reason`` is short enough for a tooltip; ``kind`` is one of
    the module's outcome constants. ``lexical``/``semantic`` are the raw signals (None when not
    computed).
    """

    sentence: str
    cited: tuple[int, ...]
    score: float
    supported: bool
    reason: str
    kind: str
    lexical: float | None = None
    semantic: float | None = None


# -- text analysis ----------------------------------------------------------------------------

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?|\d+(?:\.\d+)?")
# Negation scopes over its clause: "repeat the dose if there is no improvement" has two.
_CLAUSE_BREAK = re.compile(
    r"[;:]|,|\s[-–]\s|\b(?:but|whereas|while|although|unless|instead|if|when|until|because)\b",
    re.IGNORECASE,
)
_PARENTHETICAL = re.compile(r"\([^()]*\)")

# "one" is left out: "one option", "no one" are not quantities. "once" counts only as a
# frequency ("once a day"), not as a conjunction ("once a scan has excluded bleeding").
_NUMBER_WORDS = {
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
    "eleven": "11",
    "twelve": "12",
    "twice": "2",
    "once": "1",
}
_NUMBER_WORD = re.compile(
    r"\b(?:(" + "|".join(w for w in _NUMBER_WORDS if w != "once") + r")"
    r"|(once)(?=\s+(?:(?:a|an|per)\s+(?:day|week|month|year)|daily|weekly|monthly|every)\b))\b",
    re.IGNORECASE,
)
# A number not glued to a word ("SGLT2", "CHA2DS2-VASc", "CURB-65" are names, not quantities),
# optionally followed by a unit. "1,000" is one number; "140/90" is two.
_QUANTITY = re.compile(
    r"(?<![\w.])(?<![A-Za-z]-)(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(?![\w])"
    r"(?:\s*(%|(?:mg|mcg|µg|μg|micrograms?|milligrams?|grams?|g|kg|ml|millilitres?|milliliters?"
    r"|l|litres?|liters?|units?|iu|mmol|micromol|mmhg|hours?|hrs?|h|minutes?|mins?|days?"
    r"|weeks?|months?|years?)(?:\s*/\s*(?:kg|ml|l|day|hour|h|min|m2|1\.73\s*m2|m²))*)(?![a-z]))?",
    re.IGNORECASE,
)
_UNIT_ALIASES = {
    "µg": "mcg",
    "μg": "mcg",
    "microgram": "mcg",
    "milligram": "mg",
    "gram": "g",
    "millilitre": "ml",
    "milliliter": "ml",
    "litre": "l",
    "liter": "l",
    "hr": "hour",
    "h": "hour",
    "min": "minute",
    "mins": "minute",
}
_DOSE_UNITS = frozenset({"mg", "mcg", "g", "ml", "l", "unit", "iu", "mmol", "micromol"})
_DOSE_PER = frozenset({"kg", "day", "hour", "minute"})
_RANGE_JOIN = re.compile(r"^\s*(?:-|–|to|and|or|,)\s*$", re.IGNORECASE)

_NEGATIONS = frozenset(
    {
        "not",
        "no",
        "never",
        "none",
        "neither",
        "nor",
        "cannot",
        "without",
        "avoid",
        "avoided",
        "avoiding",
        "contraindicated",
        "contraindication",
        "withhold",
        "withheld",
    }
)


def _word_set(words: str) -> frozenset[str]:
    return frozenset(words.split())


# Function words and the filler of any recommendation: they carry no claim of their own.
_STOPWORDS = _word_set(
    """a an the and or of in on at to for from by with as is are was were be been being it its
    this that these those there their they them he she his her we our you your i do does did
    doing done has have had having can could may might must shall should will would also if
    then than so such which who whom whose what when where how any all each every some more
    most other only own same very just about into over under up down out off again further
    once per via both either s t its itself one's e g eg ie etc use used using given give
    patient patients people person persons individual individuals recommend recommended
    recommends recommendation recommendations guideline guidelines source sources advise
    advised suggest suggested consider considered option options offer offered including
    include includes based usually generally typically first line"""
)
# INN stems (WHO) that end drug names, and common drugs whose names follow no stem.
_DRUG_SUFFIXES = (
    "pril",
    "sartan",
    "olol",
    "alol",
    "dipine",
    "statin",
    "xaban",
    "gatran",
    "parin",
    "grel",
    "grelor",
    "gliflozin",
    "gliptin",
    "glutide",
    "prazole",
    "tidine",
    "cillin",
    "cycline",
    "mycin",
    "micin",
    "floxacin",
    "oxacin",
    "conazole",
    "vir",
    "mab",
    "nib",
    "teplase",
    "semide",
    "thiazide",
    "profen",
    "olone",
    "sone",
    "terol",
    "tropium",
    "barbital",
    "azepam",
    "azolam",
    "oxetine",
    "triptyline",
    "pramine",
    "tiapine",
    "peridol",
    "triptan",
    "setron",
    "caine",
    "curium",
    "dronate",
    "lukast",
    "formin",
    "glinide",
    "glitazone",
    "amycin",
    "sulfan",
    "platin",
    "taxel",
    "rubicin",
    "tecan",
)
_DRUG_NAMES = _word_set(
    """aspirin warfarin heparin insulin metformin digoxin paracetamol acetaminophen morphine
    codeine tramadol oxycodone fentanyl adrenaline epinephrine noradrenaline norepinephrine
    glucagon naloxone allopurinol colchicine methotrexate levothyroxine lithium amiodarone
    furosemide spironolactone nitrofurantoin trimethoprim clarithromycin doxycycline
    gentamicin vancomycin ceftriaxone cefalexin salbutamol albuterol ipratropium tiotropium
    prednisolone prednisone hydrocortisone dexamethasone sertraline citalopram fluoxetine
    mirtazapine amitriptyline quetiapine haloperidol diazepam lorazepam midazolam ondansetron
    metoclopramide omeprazole lansoprazole ibuprofen naproxen diclofenac clopidogrel
    ticagrelor apixaban rivaroxaban edoxaban dabigatran enoxaparin dalteparin alteplase
    tenecteplase atorvastatin simvastatin rosuvastatin ramipril lisinopril losartan
    candesartan amlodipine bisoprolol atenolol propranolol labetalol nifedipine hydralazine
    oxytocin misoprostol tranexamic nitroglycerin glyceryl oseltamivir
    aciclovir valaciclovir dapagliflozin empagliflozin semaglutide sitagliptin gliclazide"""
)
_NO_ANSWER = re.compile(
    r"\b(?:sources?|guidelines?|passages?|evidence|provided)\b.{0,60}?"
    r"\b(?:do|does|did|can)\s*(?:not|n't)\s+(?:answer|address|cover|mention|say|specify|state|"
    r"include|contain|discuss|describe|give|provide)"
    r"|\bnot\s+(?:covered|addressed|answered|mentioned|specified|stated)\s+(?:by|in)\b"
    r"|\bno\s+(?:information|guidance|recommendation|evidence)\s+(?:on|about|for|is)\b",
    re.IGNORECASE,
)


def strip_citations(text: str) -> str:
    """``text`` without its ``[S1]``-style markers: the claim the sentence makes."""
    return markers_remove(text)


def _words(text: str) -> list[str]:
    """Lower-case words and numbers; "n't" becomes "not", hyphenated words split.

    "non-" stays glued ("nonpregnant"): it negates one word, not the clause ("non-steroidal").
    """
    text = re.sub(r"n't\b", " not", text.lower().replace("’", "'"))
    text = re.sub(r"\bnon-\s*(?=[a-z])", "non", text)
    return _WORD.findall(text.replace("-", " "))


def _stem(word: str) -> str:
    """A crude stem: one common suffix off, a final "e" off, at most 6 letters.

    Enough to match "offered"/"offer", "doses"/"dosing", "hypertension"/"hypertensive".
    """
    if len(word) <= 3 or word.isdigit():
        return word
    for suffix in ("ations", "ation", "ments", "ment", "ness", "ings", "ing", "ies", "ied", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)] + ("y" if suffix in ("ies", "ied") else "")
            break
    else:
        if word.endswith("s") and not word.endswith("ss") and len(word) > 4:
            word = word[:-1]
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    return word[:6]


def _content(words: Sequence[str]) -> set[str]:
    """Stems of the words that carry meaning (no function words, negations or numbers)."""
    return {
        _stem(w)
        for w in words
        if w not in _STOPWORDS and w not in _NEGATIONS and not w[0].isdigit() and len(w) > 1
    }


def _is_drug(word: str) -> bool:
    """A drug's name: a known one, or a prefix plus an INN stem (a bare stem is a class)."""
    word = _singular(word)
    return word in _DRUG_NAMES or any(
        word.endswith(stem) and len(word) >= len(stem) + 3 for stem in _DRUG_SUFFIXES
    )


def _singular(word: str) -> str:
    return word[:-1] if word.endswith("s") and not word.endswith("ss") else word


@dataclass(frozen=True)
class _Quantity:
    value: str  # normalised: "1000", "0.5"
    unit: str  # normalised ("mg", "mg/kg", "hour", "%"); "" when the number stands alone
    shown: str  # as written, for the reason

    @property
    def is_dose(self) -> bool:
        """An amount of a drug ("5 mg", "10 mg/kg/day"), as opposed to a rate or a time."""
        base, *per = self.unit.split("/")
        return base in _DOSE_UNITS and set(per) <= _DOSE_PER


def _normalise_unit(unit: str) -> str:
    parts = []
    for part in re.sub(r"\s+", "", unit.lower()).split("/"):
        base = part[:-1] if part.endswith("s") and len(part) > 2 else part
        parts.append(_UNIT_ALIASES.get(base, base))
    return "/".join(parts)


def _normalise_number(number: str) -> str:
    number = number.replace(",", "")
    if "." in number:
        number = number.rstrip("0").rstrip(".")
    return number or "0"


def _number_word(match: re.Match[str]) -> str:
    return _NUMBER_WORDS[(match.group(1) or match.group(2)).lower()]


def _quantities(text: str) -> list[_Quantity]:
    """Numbers in ``text`` with their units; a range's first number takes the second's unit."""
    text = _NUMBER_WORD.sub(_number_word, strip_citations(text))
    found = list(_QUANTITY.finditer(text))
    quantities: list[_Quantity] = []
    for i, match in enumerate(found):
        unit = _normalise_unit(match.group(2)) if match.group(2) else ""
        if not unit and i + 1 < len(found):
            following = found[i + 1]
            if following.group(2) and _RANGE_JOIN.match(text[match.end() : following.start()]):
                unit = _normalise_unit(following.group(2))
        shown = " ".join(match.group(0).split())
        quantities.append(_Quantity(_normalise_number(match.group(1)), unit, shown))
    return quantities


def _clauses(text: str) -> list[list[str]]:
    """Words of each clause of ``text`` (split at sentence ends, punctuation and "but").

    Parenthetical asides are dropped first: "scores (such as X) should not be used" is one
    clause, and its negation belongs to "scores".
    """
    clauses = []
    text = _PARENTHETICAL.sub(" ", strip_citations(text))
    for sentence in sentences_split(text, PASSAGE):
        for clause in _CLAUSE_BREAK.split(sentence):
            if words := _words(clause):
                clauses.append(words)
    return clauses


def windows(passage: str) -> list[str]:
    """Sentences of a passage and each pair of neighbours: what the semantic signal compares
    a sentence with (the best match counts)."""
    sentences = [s for s in sentences_split(passage, PASSAGE) if len(s) > 2]
    pairs = [f"{a} {b}" for a, b in itertools.pairwise(sentences)]
    return (sentences + pairs) or [passage]


def _refs(numbers: Sequence[int]) -> str:
    return "".join(f"[S{n}]" for n in numbers)


# -- parsing an answer ------------------------------------------------------------------------


# -- the check --------------------------------------------------------------------------------


@dataclass
class _Verdict:
    kind: str
    reason: str


def _hard_rules(claim: str, cited: tuple[int, ...], evidence: str) -> _Verdict | None:
    """The lexical rules: numbers, doses, drugs and negation must match the cited sources."""
    refs = _refs(cited)
    quantities = _quantities(evidence)
    values = {q.value for q in quantities}
    pairs = {(q.value, q.unit) for q in quantities}
    for quantity in _quantities(claim):
        if quantity.is_dose and (quantity.value, quantity.unit) not in pairs:
            return _Verdict(DOSE_MISSING, f"dose {quantity.shown} not found in {refs}")
        if quantity.value not in values:
            return _Verdict(NUMBER_MISSING, f"{quantity.shown} not found in {refs}")

    evidence_words = {_singular(w) for w in _words(evidence)}
    for word in _words(claim):
        if _is_drug(word) and _singular(word) not in evidence_words:
            return _Verdict(DRUG_MISSING, f"{word} not found in {refs}")

    # "pregnant" where the source says "non-pregnant" (or the reverse) flips the population.
    for word in (_singular(w) for w in _words(claim)):
        if word.startswith("non") and len(word) > 5:
            if word[3:] in evidence_words and word not in evidence_words:
                return _Verdict(NEGATION_MISMATCH, f"{refs} says {word[3:]}, not non-{word[3:]}")
        elif f"non{word}" in evidence_words and word not in evidence_words:
            return _Verdict(NEGATION_MISMATCH, f"{refs} says non-{word}")

    # A clause of the claim must keep the polarity of the cited clause it matches best.
    evidence_clauses = [(_content(c), bool(_NEGATIONS & set(c))) for c in _clauses(evidence)]
    for words in _clauses(claim):
        content = _content(words)
        if len(content) < 2 or not evidence_clauses:
            continue
        negated = bool(_NEGATIONS & set(words))
        best = max(len(content & other) for other, _ in evidence_clauses)
        if best / len(content) < 0.5:
            continue
        polarities = {neg for other, neg in evidence_clauses if len(content & other) == best}
        if negated not in polarities:
            says = "the opposite" if negated else "not to"
            return _Verdict(NEGATION_MISMATCH, f"{refs} says {says} (negation differs)")
    return None


def _overlap(claim: str, evidence: str) -> float:
    """Share of the claim's content stems that occur in the evidence (1.0 if it has none)."""
    content = _content(_words(claim))
    if not content:
        return 1.0
    return len(content & _content(_words(evidence))) / len(content)


def check_support(
    sentences: Sequence[CitedSentence],
    passages: Sequence[str],
    *,
    embed: Embed | None = None,
    mode: Mode | None = None,
    min_overlap: float = MIN_OVERLAP,
    min_similarity: float = MIN_SIMILARITY,
) -> list[SentenceSupport]:
    """Judge each sentence against the passages it cites (``[S1]`` is ``passages[0]``).

    ``mode`` defaults to ``combined`` when ``embed`` is given, else ``lexical``:

    - ``lexical``: hard rules, then content-word overlap >= ``min_overlap``;
    - ``semantic``: best cosine similarity to a window of the cited passages >=
      ``min_similarity`` (citations are still required; no hard rules);
    - ``combined``: hard rules, then the mean of overlap and similarity >= the mean of the two
      thresholds.

    Steps: 1. sentences without a claim (nothing to check, or saying the sources do not
    answer) pass; 2. a sentence needs a citation to a given source; 3. the rules and scores
    above. One embedding call covers every sentence and window.
    """
    mode = mode or ("combined" if embed is not None else "lexical")
    if mode != "lexical" and embed is None:
        raise ValueError(f"mode {mode!r} needs an embed callable")

    # 1-2. Decide what can be decided without scores.
    results: list[SentenceSupport | None] = []
    pending: list[tuple[int, str, str, list[str]]] = []  # index, claim, evidence, compared texts
    for sentence in sentences:
        claim = strip_citations(sentence.text).strip()
        cited = sentence.cited
        unknown = [n for n in cited if not 1 <= n <= len(passages)]
        verdict: _Verdict | None = None
        if not _content(_words(claim)) or _NO_ANSWER.search(claim):
            verdict = _Verdict(NO_CLAIM, "no claim to check")
        elif not cited:
            verdict = _Verdict(NO_CITATION, "no citation")
        elif unknown:
            verdict = _Verdict(UNKNOWN_SOURCE, f"cites {_refs(unknown)}, a source not given")
        if verdict is not None:
            results.append(
                SentenceSupport(
                    sentence.text,
                    cited,
                    score=1.0 if verdict.kind == NO_CLAIM else 0.0,
                    supported=verdict.kind == NO_CLAIM,
                    reason=verdict.reason,
                    kind=verdict.kind,
                )
            )
            continue
        cited_texts = [passages[n - 1] for n in cited]
        compared = [w for text in cited_texts for w in windows(text)]
        pending.append((len(results), claim, "\n".join(cited_texts), compared))
        results.append(None)

    # 3. Score what is left; one embedding call for every claim and window.
    similarities: list[float | None] = [None] * len(pending)
    if embed is not None and mode != "lexical" and pending:
        texts = [claim for _, claim, _, _ in pending]
        spans = []
        for _, _, _, compared in pending:
            spans.append((len(texts), len(texts) + len(compared)))
            texts.extend(compared)
        vectors = np.asarray(embed(texts), dtype=np.float32)
        for k, (start, stop) in enumerate(spans):
            cosines = vectors[start:stop] @ vectors[k]
            similarities[k] = float(np.clip(cosines.max(), 0.0, 1.0)) if stop > start else 0.0

    for k, (index, claim, evidence, _) in enumerate(pending):
        sentence = sentences[index]
        refs = _refs(sentence.cited)
        semantic = similarities[k]
        lexical = _overlap(claim, evidence) if mode != "semantic" else None
        verdict = _hard_rules(claim, sentence.cited, evidence) if mode != "semantic" else None
        if mode == "lexical":
            assert lexical is not None
            score, threshold = lexical, min_overlap
            weak = _Verdict(LOW_OVERLAP, f"low overlap with {refs}")
        elif mode == "semantic":
            assert semantic is not None
            score, threshold = semantic, min_similarity
            weak = _Verdict(LOW_SIMILARITY, f"low similarity to {refs}")
        else:
            assert lexical is not None and semantic is not None
            score, threshold = (lexical + semantic) / 2, (min_overlap + min_similarity) / 2
            weak = _Verdict(LOW_SUPPORT, f"weak support from {refs}")
        if verdict is None and score < threshold:
            verdict = weak
        results[index] = SentenceSupport(
            sentence.text,
            sentence.cited,
            score=round(score, 4),
            supported=verdict is None,
            reason=verdict.reason if verdict else f"supported by {refs}",
            kind=verdict.kind if verdict else SUPPORTED,
            lexical=None if lexical is None else round(lexical, 4),
            semantic=None if semantic is None else round(semantic, 4),
        )
    return [r for r in results if r is not None]


def check_answer_support(
    text: str,
    passages: Sequence[str],
    *,
    embed: Embed | None = None,
    mode: Mode | None = None,
) -> list[SentenceSupport]:
    """Split ``text`` into cited sentences and run :func:`check_support` on them."""
    return check_support(cited_sentences(text), passages, embed=embed, mode=mode)
