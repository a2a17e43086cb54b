from __future__ import annotations

from inference.citations import check_answer, split_sentences


def kinds(result: object) -> list[str]:
    return [f.kind for f in result.flags]  # type: ignore[attr-defined]


def test_valid_citations_are_kept_in_order_of_first_use() -> None:
    result = check_answer("Use a DOAC [S2]. Check renal function [S1][S2].", source_count=3)
    assert result.cited == [2, 1]
    assert result.text == "Use a DOAC [S2]. Check renal function [S1][S2]."
    assert result.flags == []


def test_citations_to_sources_not_given_are_removed_and_flagged() -> None:
    result = check_answer("Warfarin is preferred [S7]. Aspirin works [S1, S9].", source_count=2)
    assert "[S7]" not in result.text and "[S9]" not in result.text
    assert "[S1]" in result.text
    assert kinds(result).count("invalid_citation") == 2


def test_uncited_sentences_are_flagged_not_removed() -> None:
    result = check_answer(
        "Anticoagulate when the score is two or more [S1]. Also consider aspirin daily.",
        source_count=1,
    )
    assert "consider aspirin" in result.text
    assert kinds(result) == ["uncited_sentence"]


def test_a_marker_after_the_full_stop_cites_the_sentence_before_it() -> None:
    # How larger models often write: the marker after the sentence's full stop.
    result = check_answer(
        "From a CHA2DS2-VASc score of 2, anticoagulation is recommended (Class I). [S2]\n\n"
        "The INR target is 2.0-3.0 with warfarin. [S1] Review the dose every year.",
        source_count=2,
    )
    assert result.cited == [2, 1]
    assert [f.detail for f in result.flags] == ["Review the dose every year."]


def test_urls_and_markup_no_source_contained_are_stripped() -> None:
    result = check_answer(
        "See https://evil.example/x for more [S1]. <script>alert(1)</script> Done [S1].",
        source_count=1,
        source_texts=["A passage with no links."],
    )
    assert "evil.example" not in result.text and "<script>" not in result.text
    assert {"url_removed", "markup_removed"} <= set(kinds(result))


def test_urls_present_in_a_source_are_kept() -> None:
    result = check_answer(
        "Calculator at https://calc.example/a [S1].",
        source_count=1,
        source_texts=["see https://calc.example/a"],
    )
    assert "https://calc.example/a" in result.text


def test_sentence_splitting_handles_lists() -> None:
    assert split_sentences("First point [S1]. Second point [S2].\n- item one\n- item two") == [
        "First point [S1].",
        "Second point [S2].",
        "- item one",
        "- item two",
    ]
