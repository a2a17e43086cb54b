"""Answerability beyond one cosine: does the library cover what the question asks about?

A dense cosine tells whether retrieved passages are *on the topic*; it cannot tell that a
question about inclisiran retrieved the lipid guideline, which never names inclisiran, or that a
question about an 8-year-old retrieved an adult guideline. Two readable checks catch these, and
each refusal can name what is missing:

* **terms the library never uses.** The question's specialised words (rare in general English,
  by ``wordfreq``'s Zipf frequency, e.g. drug names, named scores, conditions) are looked up in
  the vocabulary of the whole library. A word found nowhere in it, even allowing for inflection
  (``steroids``/``steroid``), compounds built on a known word (``urosepsis``, ``afebrile``),
  short plurals of abbreviations (``nebs``, ``sats``) and one-letter typos, is not covered.
* **populations the passages do not address.** A question about children (by word or by an age
  under 16), pregnancy or breastfeeding needs at least one retrieved passage that mentions that
  population.

Measured on the project's clinician question sets in ``bench/threshold.py`` (docs/answerability.md):
the checks add to the cosine threshold; they do not replace it. Questions whose every word is
in the library but whose *aspect* is not covered (a second-line drug, a procedure) still pass:
the evidence block and the summary checks are what contain those.

A third, milder check decides whether a *summary* is written at all (:func:`terms_unmentioned`):
when two or more of the question's less common words (Zipf below 4.0, e.g. "dexamethasone",
"prophylaxis", "extraction") appear in none of the retrieved passages, the passages are about
something near the question rather than the question itself. The app then shows the guideline's
own sentences and writes no summary, since a small model given such passages writes one anyway
(measured in ``bench/threshold.py``; docs/answerability.md).
"""

from __future__ import annotations

import bisect
import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

# Words at or above this Zipf frequency (occurrences per billion words, log10) are ordinary
# English ("dose" 4.2, "children" 5.5) and not looked up; below it they are specialised
# ("apixaban" 1.2, "glaucoma" 3.0). Chosen on the development question sets (docs/answerability.md).
RARE_ZIPF = 3.0
MIN_TERM_LENGTH = 4  # shorter tokens are mostly abbreviations with many expansions (AF, INR)
TYPO_RATIO = 0.85  # difflib similarity for one-letter slips ("apixiban")
COMPOUND_MIN = 6  # a known word of at least this length ending a term covers it ("urosepsis")
# The summary check: words below this Zipf frequency ("prophylaxis" 2.6, "extraction" 3.6,
# "elective" 3.4), more of them than SUMMARY_MAX_UNMENTIONED absent from every retrieved passage,
# mean no summary. Chosen on the development sets (docs/answerability.md).
SUMMARY_RARE_ZIPF = 4.0
SUMMARY_MAX_UNMENTIONED = 1

# Derivational endings stripped before looking for a library word with the same stem.
_SUFFIXES = ("ations", "ation", "ments", "ment", "ings", "ing", "ities", "ity", "ically", "ical")

_WORD = re.compile(r"[a-z][a-z0-9]*(?:[-'][a-z0-9]+)*")

# Each population: (how a question names it, how a passage must mention it).
POPULATIONS: dict[str, tuple[re.Pattern[str], re.Pattern[str]]] = {
    "children": (
        re.compile(
            r"\b(child|children|paediatric|pediatric|infants?|toddlers?|neonat\w*|newborns?|"
            r"preemies?|bab(?:y|ies)|kids?|adolescents?|teenagers?)\b",
            re.I,
        ),
        re.compile(
            r"child|paediatric|pediatric|infant|neonat|newborn|adolescen|preterm|bab(y|ies)"
            r"|toddler|teen|\bkids?\b|preemie|juvenile|youth",
            re.I,
        ),
    ),
    "pregnancy": (
        re.compile(
            r"\bpregnan\w*|\b\d{1,2}\s*/\s*40\b|\bgestation\w*|\btrimester\b|\bantenatal\b", re.I
        ),
        re.compile(r"pregnan|gestation|trimester|antenatal|obstetric", re.I),
    ),
    "breastfeeding": (
        # Not "lactate" or "lactated Ringer's".
        re.compile(r"breast-?feed\w*|\blactation\b|\blactating\b|\bnursing mothers?\b", re.I),
        re.compile(r"breast-?feed|breast ?milk|\blactation\b|\blactating\b", re.I),
    ),
}
# "8yo", "8 y/o", "8-year-old", "8 years old", "8 month old", "45F"/"9M" (no space, not "4F-PCC").
_AGE = re.compile(
    r"\b(\d{1,2})\s*(?:yo|y/o|y\.o\.|-?years?[- ]old|-?yrs?[- ]old)\b"
    r"|\b(\d{1,2})\s*-?months?[- ]old\b"
    r"|(?<![\w.-])(\d{1,2})[mf](?![\w-])",
    re.I,
)
CHILD_AGE = 16


def words(text: str) -> list[str]:
    """Lower-cased words of ``text``; hyphenated words are kept whole and as their parts."""
    found = _WORD.findall(text.lower())
    return found + [part for w in found if "-" in w for part in w.split("-")]


@lru_cache(maxsize=65536)
def _zipf(word: str) -> float:
    from wordfreq import zipf_frequency

    return float(zipf_frequency(word, "en"))


def key_terms(question: str, *, rare_below: float = RARE_ZIPF) -> list[str]:
    """The question's specialised words: alphabetic, 4+ letters, rare in general English."""
    terms: list[str] = []
    for word in _WORD.findall(question.lower()):
        for part in word.split("-"):
            part = part.strip("'")
            if len(part) < MIN_TERM_LENGTH or not part.isalpha() or part in terms:
                continue
            if _zipf(part) < rare_below:
                terms.append(part)
    return terms


def question_populations(question: str) -> list[str]:
    """Populations the question is about: ``children``, ``pregnancy``, ``breastfeeding``."""
    found = [name for name, (asks, _) in POPULATIONS.items() if asks.search(question)]
    for match in _AGE.finditer(question):
        years, months, short = match.groups()
        child = months is not None or any(
            v is not None and int(v) < CHILD_AGE for v in (years, short)
        )
        if child and "children" not in found:
            found.append("children")
    return found


class LibraryVocabulary:
    """Every word of a library's passages, for "does the library use this term at all"."""

    def __init__(self, texts: Iterable[str]) -> None:
        vocabulary: set[str] = set()
        for text in texts:
            vocabulary.update(words(text))
        self._words = vocabulary
        self._sorted = sorted(vocabulary)

    def __len__(self) -> int:
        return len(self._words)

    def _has_prefix(self, prefix: str) -> bool:
        i = bisect.bisect_left(self._sorted, prefix)
        return i < len(self._sorted) and self._sorted[i].startswith(prefix)

    def knows(self, term: str) -> bool:
        """Whether ``term`` (lower case) or a close form of it occurs in the library."""
        if term in self._words:
            return True
        # Inflections: "steroids", "anticoagulated", "supplementation" share a stem with a
        # library word ("steroid", "anticoagulation", "supplemented").
        if self._has_prefix(term[: max(5, len(term) - 3)]):
            return True
        for suffix in _SUFFIXES:
            stem = term.removesuffix(suffix)
            if stem != term and len(stem) >= 5 and self._has_prefix(stem):
                return True
        # Plural abbreviations: "nebs" (nebulised), "sats" (saturation).
        if term.endswith("s") and len(term) <= 5 and self._has_prefix(term[:-1]):
            return True
        # Compounds on a known word: "urosepsis", "prehydration", "afebrile".
        for start in range(1, len(term) - COMPOUND_MIN + 1):
            if term[start:] in self._words:
                return True
        # One slip of the keyboard: same first letter, near-equal length, similar spelling.
        lo = bisect.bisect_left(self._sorted, term[0])
        hi = bisect.bisect_left(self._sorted, chr(ord(term[0]) + 1))
        for word in self._sorted[lo:hi]:
            if abs(len(word) - len(term)) <= 2 and (
                difflib.SequenceMatcher(None, word, term).ratio() >= TYPO_RATIO
            ):
                return True
        return False


@dataclass(frozen=True)
class Coverage:
    """What of the question the library does not cover (empty tuples: covered)."""

    missing_terms: tuple[str, ...] = ()
    missing_populations: tuple[str, ...] = ()

    @property
    def covered(self) -> bool:
        return not self.missing_terms and not self.missing_populations

    def describe(self) -> str:
        """What is not covered, in words, for the refusal ("inclisiran", "children")."""
        parts = [*self.missing_terms, *self.missing_populations]
        if len(parts) <= 1:
            return "".join(parts)
        return ", ".join(parts[:-1]) + " and " + parts[-1]


def coverage_check(
    question: str,
    passages: Sequence[str],
    vocabulary: LibraryVocabulary,
    *,
    rare_below: float = RARE_ZIPF,
) -> Coverage:
    """Terms of ``question`` unknown to the library and populations no passage mentions.

    ``passages`` are the texts (with their guideline title and section) the answer would be
    built from; ``vocabulary`` is the whole library's.
    """
    terms = key_terms(question, rare_below=rare_below)
    missing = tuple(t for t in terms if not vocabulary.knows(t))
    joined = "\n".join(passages)
    populations = tuple(
        p for p in question_populations(question) if not POPULATIONS[p][1].search(joined)
    )
    return Coverage(missing_terms=missing, missing_populations=populations)


def terms_unmentioned(
    question: str, passages: Sequence[str], *, rare_below: float = SUMMARY_RARE_ZIPF
) -> tuple[str, ...]:
    """The question's words rarer than ``rare_below`` that none of ``passages`` uses.

    Matched as leniently as :meth:`LibraryVocabulary.knows` (inflections, compounds, one-letter
    typos), but against the retrieved passages only, not the whole library.
    """
    retrieved = LibraryVocabulary(passages)
    return tuple(t for t in key_terms(question, rare_below=rare_below) if not retrieved.knows(t))
