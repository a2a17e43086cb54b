"""The per-sentence support check: rules on small cases, and its quality on the labelled set."""

from __future__ import annotations

import numpy as np
import pytest

from bench.support_check import cached, evaluate, load_items, texts_to_embed
from inference.support import (
    DOSE_MISSING,
    DRUG_MISSING,
    LOW_OVERLAP,
    NEGATION_MISMATCH,
    NO_CITATION,
    NO_CLAIM,
    NUMBER_MISSING,
    SUPPORTED,
    UNKNOWN_SOURCE,
    CitedSentence,
    Embed,
    SentenceSupport,
    check_answer_support,
    check_support,
    cited_sentences,
)

AF = (
    "Offer an anticoagulant to men with atrial fibrillation and a CHA2DS2-VASc score of 2 or "
    "more. Apixaban 5 mg twice daily is preferred over warfarin. Do not offer aspirin alone "
    "for stroke prevention."
)
BURNS = "Start intravenous fluids in adults when burns cover more than 15% of the body surface."


def one(sentence: str, *passages: str) -> SentenceSupport:
    """The lexical verdict on one sentence; the passages default to [S1] = AF."""
    (result,) = check_answer_support(sentence, list(passages or (AF,)))
    return result


def test_a_faithful_paraphrase_with_the_same_dose_is_supported() -> None:
    result = one("Apixaban 5 mg twice a day is preferred to warfarin [S1].")

    assert result.supported
    assert result.kind == SUPPORTED
    assert result.reason == "supported by [S1]"
    assert result.lexical is not None and result.lexical > 0.8


def test_a_dose_the_cited_passage_does_not_contain_is_named_in_the_reason() -> None:
    result = one("Apixaban 10 mg twice daily is preferred over warfarin [S1].")

    assert not result.supported
    assert result.kind == DOSE_MISSING
    assert result.reason == "dose 10 mg not found in [S1]"


def test_the_same_number_with_another_unit_is_a_different_dose() -> None:
    passage = "Give 0.5 mL of the 1 mg/mL adrenaline solution intramuscularly."

    assert one("Give 0.5 mL of adrenaline intramuscularly [S1].", passage).supported
    wrong = one("Give 1 mg of adrenaline intramuscularly [S1].", passage)
    assert wrong.kind == DOSE_MISSING, "1 mg/mL is a concentration, not a 1 mg dose"


def test_a_number_the_passage_does_not_contain_is_flagged() -> None:
    result = one(
        "Adults need intravenous fluids when burns cover more than 10% of the body [S1].", BURNS
    )

    assert result.kind == NUMBER_MISSING
    assert result.reason == "10% not found in [S1]"


def test_a_dose_range_gives_its_unit_to_both_ends() -> None:
    passage = "The usual dose is 75 to 100 mg once a day."

    assert one("The usual dose is 75 mg once daily [S1].", passage).supported


def test_a_flipped_negation_is_flagged() -> None:
    result = one("Offer aspirin alone for stroke prevention [S1].")

    assert result.kind == NEGATION_MISMATCH
    assert "[S1]" in result.reason


def test_a_negation_that_the_passage_shares_is_supported() -> None:
    assert one("Aspirin alone should not be offered for stroke prevention [S1].").supported


def test_negation_in_a_condition_does_not_leak_into_the_main_clause() -> None:
    passage = "Repeat the dose after 5 minutes if there is no improvement."

    assert one(
        "If the patient does not improve, repeat the dose after 5 minutes [S1].", passage
    ).supported


def test_a_parenthetical_aside_does_not_hide_the_negation() -> None:
    passage = (
        "Bleeding risk scores (such as HAS-BLED) should not be used alone to decide on treatment."
    )

    result = one("Bleeding risk scores should be used alone to decide on treatment [S1].", passage)

    assert result.kind == NEGATION_MISMATCH


def test_a_population_prefixed_with_non_is_not_its_opposite() -> None:
    passage = "For non-pregnant women with cystitis, offer nitrofurantoin for 3 days."

    result = one("For pregnant women with cystitis, offer nitrofurantoin for 3 days [S1].", passage)

    assert result.kind == NEGATION_MISMATCH


def test_a_drug_the_passage_does_not_name_is_flagged() -> None:
    result = one("Rivaroxaban is preferred over warfarin [S1].")

    assert result.kind == DRUG_MISSING
    assert result.reason == "rivaroxaban not found in [S1]"


def test_a_drug_class_is_not_taken_for_a_missing_drug() -> None:
    passage = "Offer atorvastatin 20 mg for primary prevention."

    assert one(
        "A statin such as atorvastatin 20 mg is offered for primary prevention [S1].", passage
    ).supported


def test_a_sentence_unrelated_to_its_source_has_low_overlap() -> None:
    result = one("Lactate should be measured and repeated in septic shock [S1].")

    assert result.kind == LOW_OVERLAP
    assert result.reason == "low overlap with [S1]"
    assert result.score < 0.5


def test_a_sentence_is_judged_only_against_the_sources_it_cites() -> None:
    (result,) = check_answer_support("Apixaban 5 mg twice daily is preferred [S2].", [AF, BURNS])

    assert not result.supported
    assert result.cited == (2,)


def test_a_sentence_without_a_citation_is_flagged() -> None:
    result = one("Apixaban 5 mg twice daily is preferred over warfarin.")

    assert (result.kind, result.reason) == (NO_CITATION, "no citation")


def test_citing_a_source_that_was_not_given_is_flagged() -> None:
    result = one("Apixaban is preferred over warfarin [S3].")

    assert (result.kind, result.reason) == (UNKNOWN_SOURCE, "cites [S3], a source not given")


def test_saying_the_sources_do_not_answer_needs_no_citation() -> None:
    result = one("The provided guidelines do not answer this question.")

    assert result.supported
    assert result.kind == NO_CLAIM


def test_a_citation_after_the_full_stop_belongs_to_the_sentence_before_it() -> None:
    sentences = cited_sentences("Offer apixaban. [S1] Avoid aspirin alone [S1, S2]. Done.")

    assert [s.cited for s in sentences] == [(1,), (1, 2), ()]
    assert sentences[0].text == "Offer apixaban. [S1]"


def test_an_answer_that_cites_first_keeps_each_citation_with_its_own_sentence() -> None:
    sentences = cited_sentences("[S1] Offer apixaban. [S2] Start fluids above 15%.")

    assert [s.cited for s in sentences] == [(1,), (2,)]


def test_each_sentence_of_an_answer_gets_a_verdict() -> None:
    answer = (
        "Men with a CHA2DS2-VASc score of 2 or more should get an anticoagulant [S1]. "
        "Apixaban 10 mg is preferred [S1]. Fluids start above 15% of the body surface [S2]."
    )

    results = check_answer_support(answer, [AF, BURNS])

    assert [r.supported for r in results] == [True, False, True]


def bag_of_words_embed(calls: list[int]) -> Embed:
    """A stand-in embedder: hashed word counts, unit rows (enough to test the plumbing)."""

    def embed(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        rows = np.zeros((len(texts), 64), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().split():
                rows[i, hash(word.strip(".,[]")) % 64] += 1
        return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-9)

    return embed


def test_semantic_scores_take_one_embedding_call_for_the_whole_answer() -> None:
    calls: list[int] = []
    sentences = [
        CitedSentence("Apixaban is preferred over warfarin [S1].", (1,)),
        CitedSentence("Fluids start above 15% [S2].", (2,)),
        CitedSentence("No citation here at all.", ()),
    ]

    results = check_support(sentences, [AF, BURNS], embed=bag_of_words_embed(calls))

    assert len(calls) == 1
    assert [r.semantic is not None for r in results] == [True, True, False]
    assert all(0.0 <= r.score <= 1.0 for r in results)


def test_semantic_modes_need_an_embedder() -> None:
    with pytest.raises(ValueError, match="embed"):
        check_support([CitedSentence("x [S1]", (1,))], [AF], mode="combined")


@pytest.fixture(scope="module")
def minilm() -> Embed:
    from retrieval.embedder import Embedder

    embedder = Embedder("bundled", dtype="float32")
    return cached(embedder.encode, texts_to_embed(load_items()))


def test_on_the_labelled_set_every_mode_beats_the_trivial_baselines(minilm: Embed) -> None:
    table, _ = evaluate(load_items(), minilm)

    trivial = max(
        table["always_supported"]["macro_f1"] or 0, table["citation_present"]["macro_f1"] or 0
    )
    for mode in ("lexical", "combined"):
        assert (table[mode]["macro_f1"] or 0) > trivial, (mode, table)
        assert (table[mode]["unsupported_recall"] or 0) > (
            table["citation_present"]["unsupported_recall"] or 0
        ), (mode, table)
