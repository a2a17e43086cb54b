"""Evidence first: verbatim units of the retrieved passages, and the choice of the best ones."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from retrieval.embedder import Embedder
from retrieval.evidence import (
    EXCERPT_GAP,
    MAX_CHARS,
    MIN_CHARS,
    RankedUnit,
    evidence_rank,
    evidence_select,
    evidence_units,
    passage_excerpts,
)

PASSAGE = """## Dose reduction

Apixaban 5 mg twice daily is the usual dose. Reduce to 2.5 mg twice daily when two of the
following apply: age 80 years or more, body weight 60 kg or less, serum creatinine 1.5 mg/dL or
more (e.g. in frail older patients). Check renal function at least yearly.

- Warfarin: keep the INR between 2.0 and 3.0.
- Short.

| Drug | Dose |
|---|---|
| Dabigatran | 150 mg twice daily |
"""


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder("bundled", dtype="float32")


def test_units_are_verbatim_sentences_list_items_and_table_rows() -> None:
    units = evidence_units(PASSAGE)
    assert units == [
        "Apixaban 5 mg twice daily is the usual dose.",
        "Reduce to 2.5 mg twice daily when two of the following apply: age 80 years or more, "
        "body weight 60 kg or less, serum creatinine 1.5 mg/dL or more (e.g. in frail older "
        "patients).",
        "Check renal function at least yearly.",
        "Warfarin: keep the INR between 2.0 and 3.0.",
        "Dabigatran | 150 mg twice daily",
    ]
    joined = " ".join(PASSAGE.split())
    for unit in units[:4]:
        assert unit in joined, "sentences and list items are quoted word for word"


def test_headings_table_rules_and_fragments_are_not_units() -> None:
    units = evidence_units("# Title\n\n|a|b|\n|---|---|\n\nOk.\n\nSee below.")
    assert units == []


def test_an_overlong_unit_is_cut_at_a_clause_boundary() -> None:
    long = "Give the first dose promptly, " * 40 + "then reassess."
    units = evidence_units(long)
    assert len(units) > 1
    assert all(len(unit) <= MAX_CHARS + MIN_CHARS for unit in units)
    assert " ".join(units).split() == long.split()


def test_the_sentence_that_answers_is_chosen_with_its_source_number_in_reading_order(
    embedder: Embedder,
) -> None:
    other = "Start antihypertensive treatment when blood pressure stays above 140/90 mmHg."
    items = evidence_select(
        "When should the apixaban dose be reduced to 2.5 mg?",
        [other, PASSAGE],
        embed=embedder.encode,
    )
    assert 2 <= len(items) <= 3
    answering = [i for i in items if "Reduce to 2.5 mg twice daily" in i.text]
    assert answering and answering[0].source == 2
    assert [(i.source, PASSAGE.find(i.text[:30])) for i in items] == sorted(
        (i.source, PASSAGE.find(i.text[:30])) for i in items
    ), "shown in reading order"


def test_rare_question_terms_count_beside_the_embedding(embedder: Embedder) -> None:
    items = evidence_select(
        "What INR should warfarin keep?", [PASSAGE], embed=embedder.encode, max_items=1
    )
    assert items[0].text == "Warfarin: keep the INR between 2.0 and 3.0."


def test_duplicates_are_shown_once_and_nothing_comes_from_nothing(embedder: Embedder) -> None:
    same = "Offer oral anticoagulation to people with a CHA2DS2-VASc score of 2 or more."
    items = evidence_select("Who gets anticoagulation?", [same, same], embed=embedder.encode)
    assert [i.text for i in items] == [same]
    assert evidence_select("anything", [], embed=embedder.encode) == []
    assert evidence_select("anything", ["# Heading only"], embed=embedder.encode) == []


def test_embed_is_called_once_question_first_then_units_then_units_in_context() -> None:
    calls: list[list[str]] = []

    def embed(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        vectors = np.eye(len(texts), 8, dtype=np.float32)
        vectors[:, 0] = 1.0
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    evidence_select("apixaban dose", [PASSAGE], embed=embed)
    assert len(calls) == 1
    assert calls[0][0] == "apixaban dose"
    units = evidence_units(PASSAGE)
    assert calls[0][1 : 1 + len(units)] == units
    # then each unit after the one before it, for context
    assert calls[0][1 + len(units) :] == [f"{a} {b}" for a, b in itertools.pairwise(units)]


def _words(text: str) -> int:
    return len(text.split())


def test_excerpts_keep_the_best_units_verbatim_in_reading_order_within_the_budget(
    embedder: Embedder,
) -> None:
    other = "Start antihypertensive treatment when blood pressure stays above 140/90 mmHg."
    ranked = evidence_rank(
        "When should the apixaban dose be reduced to 2.5 mg?",
        [PASSAGE, other],
        embed=embedder.encode,
    )
    assert [u.score for u in ranked] == sorted((u.score for u in ranked), reverse=True)
    excerpts = passage_excerpts(ranked, sources=2, budget_tokens=45, count_tokens=_words)
    assert len(excerpts) == 2
    lines = excerpts[0].split("\n")
    units = evidence_units(PASSAGE)
    kept = [line for line in lines if line != EXCERPT_GAP]
    assert any(line.startswith("Reduce to 2.5 mg twice daily") for line in kept)
    assert all(line in units for line in kept), "units are quoted word for word"
    assert [units.index(line) for line in kept] == sorted(units.index(line) for line in kept)
    chosen = kept + [line for line in excerpts[1].split("\n") if line and line != EXCERPT_GAP]
    assert sum(_words(line) + 1 for line in chosen) <= 45
    assert len(kept) < len(units), "the budget left units out"


def test_an_excerpt_marks_where_units_were_left_out_between_kept_ones() -> None:
    ranked = [
        RankedUnit(score=0.9, source=1, position=3, text="Fourth sentence here."),
        RankedUnit(score=0.8, source=1, position=0, text="First sentence here."),
        RankedUnit(score=0.7, source=1, position=1, text="Second sentence here."),
        RankedUnit(score=0.6, source=2, position=0, text="Other passage sentence."),
        RankedUnit(score=0.5, source=1, position=2, text="Third sentence, too long " * 9),
    ]
    excerpts = passage_excerpts(ranked, sources=3, budget_tokens=16, count_tokens=_words)
    assert excerpts[0] == "\n".join(
        ["First sentence here.", "Second sentence here.", EXCERPT_GAP, "Fourth sentence here."]
    )
    assert excerpts[1] == "Other passage sentence."
    assert excerpts[2] == "", "a passage with nothing chosen gets an empty excerpt"


def test_the_best_unit_is_kept_even_over_budget_and_nothing_comes_from_nothing() -> None:
    ranked = [RankedUnit(score=0.9, source=1, position=0, text="word " * 50)]
    assert passage_excerpts(ranked, sources=1, budget_tokens=10, count_tokens=_words) == [
        ("word " * 50)
    ]
    assert passage_excerpts([], sources=2, budget_tokens=10, count_tokens=_words) == ["", ""]
