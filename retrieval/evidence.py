"""Evidence first: the few verbatim sentences of the retrieved passages that best answer a question.

The generator is a small model that may miss the point; the passages it was given usually hold the
answer. Before it writes anything, the app shows the 2-4 sentences (or list items, or table rows)
of those passages that score best against the question, word for word, each with its source
number, so a clinician reads the guideline's own words first.

Candidates come from :func:`evidence_units`; :func:`evidence_select` scores each with the embedder
(cosine to the question) plus BM25 over the candidates (the question's rare terms: drug names,
doses, scores), normalised to the best candidate, and a small bonus for the passage's retrieval
rank. No Django: the caller passes the passages and an ``embed`` function.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from retrieval.sentences import EVIDENCE, sentences_split

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

Embed = Callable[[list[str]], "NDArray[np.float32]"]

# Measured on the demo question set (bench/threshold.py reports it): see evidence_select.
LEXICAL_WEIGHT = 0.3
RANK_BONUS = 0.02
MIN_CHARS = 25
MAX_CHARS = 600

_HEADING = re.compile(r"^\s{0,3}#{1,6}\s")
_TABLE_RULE = re.compile(r"^\s*\|?[\s:|-]+\|[\s:|-]*$")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+\u2022]|\d{1,2}[.)])\s+")
_WORD = re.compile(r"[a-z0-9]+(?:[.,][0-9]+)?")
_STOP_WORDS = """a an and are as at be been by can could do does for from had has have how i if in
into is it its may might more most no not of on or should than that the their them then there
these they this those to was were what when where which who whom why will with would you your"""
_STOP = frozenset(_STOP_WORDS.split())


@dataclass(frozen=True)
class EvidenceItem:
    """One verbatim piece of a passage: ``source`` is its passage's number (1 for [S1])."""

    source: int
    text: str
    score: float


def _sentences(paragraph: str) -> list[str]:
    """Sentences of one paragraph; a fragment shorter than MIN_CHARS joins the next one.

    Split by :data:`retrieval.sentences.EVIDENCE`: never after an abbreviation or an initial.
    """
    out: list[str] = []
    for part in sentences_split(paragraph, EVIDENCE):
        if out and len(out[-1]) < MIN_CHARS:
            out[-1] = f"{out[-1]} {part}"
        else:
            out.append(part)
    return out


def _clauses(unit: str) -> list[str]:
    """``unit`` cut at clause boundaries into pieces of at most MAX_CHARS (where it can be)."""
    pieces: list[str] = []
    while len(unit) > MAX_CHARS:
        cut = max(unit.rfind("; ", 0, MAX_CHARS), unit.rfind(", ", 0, MAX_CHARS))
        if cut < MIN_CHARS:
            break
        pieces.append(unit[: cut + 1])
        unit = unit[cut + 2 :]
    if pieces and len(unit) < MIN_CHARS:  # a short tail stays with the clause before it
        return [*pieces[:-1], f"{pieces[-1]} {unit}"]
    return [*pieces, unit]


def evidence_units(passage: str) -> list[str]:
    """The sentences, list items and table rows of ``passage``, verbatim, in reading order.

    Headings, table rules and header rows are dropped; a sentence fragment shorter than
    :data:`MIN_CHARS` joins the next sentence of its paragraph; a unit longer than
    :data:`MAX_CHARS` is cut at a clause boundary; units under MIN_CHARS are dropped.
    """
    units: list[str] = []
    paragraph: list[str] = []
    table_row = 0

    def flush() -> None:
        if paragraph:
            units.extend(_sentences(" ".join(paragraph)))
            paragraph.clear()

    for raw in passage.splitlines():
        line = raw.strip()
        if not line.startswith("|"):
            table_row = 0
        if not line or _HEADING.match(raw):
            flush()
        elif line.startswith("|"):
            flush()
            table_row += 1
            if table_row > 1 and not _TABLE_RULE.match(line):  # row 1 is the header
                units.append(" | ".join(c.strip() for c in line.strip("|").split("|") if c.strip()))
        elif _LIST_ITEM.match(line):
            flush()
            units.extend(_sentences(_LIST_ITEM.sub("", line, count=1)))
        else:
            paragraph.append(line)
    flush()
    return [
        piece
        for unit in units
        for piece in _clauses(unit)
        if len(piece) >= MIN_CHARS and re.search(r"[A-Za-z]{3}", piece)
    ]


_SUFFIXES = ("ations", "ation", "ings", "ing", "ions", "ion", "ies", "ed", "es", "e", "s")


def _stem(word: str) -> str:
    """A crude suffix strip, so that reduce/reduced/reduction or dose/doses meet."""
    if word[0].isdigit():
        return word
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word


def _terms(text: str) -> list[str]:
    return [_stem(word) for word in _WORD.findall(text.lower()) if word not in _STOP]


def _bm25(question: str, units: Sequence[str], *, k1: float = 1.2, b: float = 0.3) -> list[float]:
    """BM25 of ``question`` against each unit, with ``units`` as the whole collection.

    ``b`` is low: a sentence that states a condition in full is long, and must not lose to a
    short one for its length. A number of the question (a dose, a score) found in a unit counts
    double: it is what a clinician asking for one is looking for.
    """
    docs = [Counter(_terms(unit)) for unit in units]
    if not docs:
        return []
    average = sum(sum(doc.values()) for doc in docs) / len(docs) or 1.0
    frequency = Counter(term for doc in docs for term in doc)
    scores = []
    for doc in docs:
        length = sum(doc.values())
        score = 0.0
        for term in set(_terms(question)):
            tf = doc.get(term, 0)
            if not tf:
                continue
            idf = math.log(1 + (len(docs) - frequency[term] + 0.5) / (frequency[term] + 0.5))
            weight = 2.0 if term[0].isdigit() else 1.0
            score += weight * idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / average))
        scores.append(score)
    return scores


@dataclass(frozen=True)
class RankedUnit:
    """A unit of a passage with its score for the question: ``source`` is its passage's number
    (1 for the first passage given), ``position`` its place among that passage's units."""

    score: float
    source: int
    position: int
    text: str


def evidence_rank(
    question: str,
    passages: Sequence[str],
    *,
    embed: Embed,
    lexical_weight: float = LEXICAL_WEIGHT,
    rank_bonus: float = RANK_BONUS,
) -> list[RankedUnit]:
    """Every unit of ``passages`` (in retrieval order), scored for ``question``, best first.

    Score = cosine + ``lexical_weight`` x BM25 / best BM25 + ``rank_bonus`` x (passages after
    this one). The cosine is the better of the unit alone and the unit read after the unit
    before it, so "Reduce to 2.5 mg when..." is understood as being about the drug the previous
    sentence named. One ``embed`` call for everything.
    """
    candidates = [
        (number, position, unit, units[position - 1] if position else "")
        for number, passage in enumerate(passages, start=1)
        for units in [evidence_units(passage)]
        for position, unit in enumerate(units)
    ]
    if not candidates:
        return []
    texts = [unit for _, _, unit, _ in candidates]
    windows = [f"{before} {unit}" for _, _, unit, before in candidates if before]
    vectors = embed([question, *texts, *windows])
    alone = vectors[1 : 1 + len(texts)] @ vectors[0]
    in_context = iter((vectors[1 + len(texts) :] @ vectors[0]).tolist())
    dense = [
        max(float(cosine), next(in_context)) if before else float(cosine)
        for cosine, (_, _, _, before) in zip(alone, candidates, strict=True)
    ]
    lexical = _bm25(question, texts)
    top_lexical = max(lexical) or 1.0
    return sorted(
        (
            RankedUnit(
                score=round(
                    cosine
                    + lexical_weight * bm25 / top_lexical
                    + rank_bonus * (len(passages) - number),
                    4,
                ),
                source=number,
                position=position,
                text=unit,
            )
            for cosine, bm25, (number, position, unit, _) in zip(
                dense, lexical, candidates, strict=True
            )
        ),
        key=lambda unit: -unit.score,
    )


def evidence_pick(
    ranked: Sequence[RankedUnit], *, max_items: int = 3, margin: float = 0.12
) -> list[EvidenceItem]:
    """The evidence block from ``ranked`` (best first, as :func:`evidence_rank` returns it):
    the best ``max_items`` distinct units; units scoring more than ``margin`` below the best are
    left out, but at least two are kept when there are two. In reading order: by source, then
    position."""
    if not ranked:
        return []
    best = ranked[0].score
    chosen: list[RankedUnit] = []
    seen: set[str] = set()
    for unit in ranked:
        if len(chosen) >= max_items or (len(chosen) >= 2 and unit.score < best - margin):
            break
        if unit.text.casefold() in seen:
            continue
        seen.add(unit.text.casefold())
        chosen.append(unit)
    return [
        EvidenceItem(source=unit.source, text=unit.text, score=unit.score)
        for unit in sorted(chosen, key=lambda c: (c.source, c.position))
    ]


def evidence_select(
    question: str,
    passages: Sequence[str],
    *,
    embed: Embed,
    max_items: int = 3,
    lexical_weight: float = LEXICAL_WEIGHT,
    rank_bonus: float = RANK_BONUS,
    margin: float = 0.12,
) -> list[EvidenceItem]:
    """The best ``max_items`` units of ``passages`` (in retrieval order) for ``question``:
    :func:`evidence_rank`, then :func:`evidence_pick`."""
    ranked = evidence_rank(
        question, passages, embed=embed, lexical_weight=lexical_weight, rank_bonus=rank_bonus
    )
    return evidence_pick(ranked, max_items=max_items, margin=margin)


# Between two excerpted units that are not next to each other in their passage.
EXCERPT_GAP = "\u2026"


def passage_excerpts(
    ranked: Sequence[RankedUnit],
    *,
    sources: int,
    budget_tokens: int,
    count_tokens: Callable[[str], int],
) -> list[str]:
    """Each of the ``sources`` passages cut to its units that best answer the question, for a
    prompt a slow CPU reads in seconds: ``[excerpt of passage 1, ...]`` ("" for a passage none
    of whose units made it).

    Units are taken best first (``ranked``, from :func:`evidence_rank`) while their tokens
    (``count_tokens``) fit in ``budget_tokens``; the best unit is always taken. Each excerpt
    keeps its units verbatim and in reading order, one per line, with :data:`EXCERPT_GAP`
    where units of the passage were left out between them.
    """
    chosen: dict[int, list[RankedUnit]] = {}
    used = 0
    seen: set[str] = set()
    for unit in ranked:
        if unit.text.casefold() in seen:
            continue
        cost = count_tokens(unit.text) + 1
        if chosen and used + cost > budget_tokens:
            continue  # a shorter unit further down may still fit
        seen.add(unit.text.casefold())
        chosen.setdefault(unit.source, []).append(unit)
        used += cost
    excerpts = []
    for number in range(1, sources + 1):
        lines: list[str] = []
        previous = None
        for unit in sorted(chosen.get(number, []), key=lambda u: u.position):
            if previous is not None and unit.position != previous + 1:
                lines.append(EXCERPT_GAP)
            lines.append(unit.text)
            previous = unit.position
        excerpts.append("\n".join(lines))
    return excerpts
