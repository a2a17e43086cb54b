"""The one sentence splitter (retrieval/sentences.py) and its presets."""

from __future__ import annotations

import subprocess
import sys

import pytest

from retrieval.sentences import (
    ABBREVIATIONS,
    ANSWER,
    CLAUSE,
    EVIDENCE,
    PASSAGE,
    SentenceRule,
    sentences_split,
)


@pytest.mark.parametrize("rule", [ANSWER, PASSAGE, EVIDENCE, CLAUSE])
def test_empty_and_blank_text_have_no_sentences(rule: SentenceRule) -> None:
    assert sentences_split("", rule) == []
    assert sentences_split(" \n\n\t ", rule) == []


@pytest.mark.parametrize("rule", [ANSWER, PASSAGE, EVIDENCE, CLAUSE])
def test_pieces_are_stripped_and_otherwise_verbatim(rule: SentenceRule) -> None:
    assert sentences_split("  Offer apixaban  5 mg.  Review  yearly.  ", rule) == [
        "Offer apixaban  5 mg.",
        "Review  yearly.",
    ]


# -- ANSWER -----------------------------------------------------------------------------------


def test_answer_keeps_citation_markers_and_a_marker_after_the_stop_opens_a_piece() -> None:
    assert sentences_split("Offer apixaban [S1]. Avoid aspirin [S1, S2]. Done.", ANSWER) == [
        "Offer apixaban [S1].",
        "Avoid aspirin [S1, S2].",
        "Done.",
    ]
    assert sentences_split("Offer apixaban. [S1] Review yearly. (See above.)", ANSWER) == [
        "Offer apixaban.",
        "[S1] Review yearly.",
        "(See above.)",
    ]


def test_answer_ends_a_sentence_only_before_a_capital_digit_or_bracket() -> None:
    assert sentences_split("Give 2.5 mg b.d. when needed. 3 doses! Why? Ask.", ANSWER) == [
        "Give 2.5 mg b.d. when needed.",
        "3 doses!",
        "Why?",
        "Ask.",
    ]
    # Abbreviations are not special here: "e.g. Apixaban" is cut (only EVIDENCE skips them).
    assert sentences_split("Use a DOAC, e.g. Apixaban.", ANSWER) == [
        "Use a DOAC, e.g.",
        "Apixaban.",
    ]


def test_answer_parts_paragraphs_at_blank_lines_and_list_items() -> None:
    text = "First point [S1]. Second point [S2].\n- item one\n* item two\n1. three\n2) four"
    assert sentences_split(text, ANSWER) == [
        "First point [S1].",
        "Second point [S2].",
        "- item one",
        "* item two",
        "1. three",
        "2) four",
    ]
    assert sentences_split("ends without a stop\n\nnext paragraph", ANSWER) == [
        "ends without a stop",
        "next paragraph",
    ]
    # A single line break inside a paragraph is not a boundary.
    assert sentences_split("one line\ncontinues here", ANSWER) == ["one line\ncontinues here"]


def test_answer_keeps_semicolons_and_colons_inside_a_sentence() -> None:
    assert sentences_split("Start low; titrate up: slowly.", ANSWER) == [
        "Start low; titrate up: slowly."
    ]


# -- PASSAGE ----------------------------------------------------------------------------------


def test_passage_breaks_at_every_end_punctuation_and_every_newline() -> None:
    text = "## Dosing\nGive 5 mg. then review, e.g. yearly.\n\n| a | b |\r\n- item"
    assert sentences_split(text, PASSAGE) == [
        "## Dosing",
        "Give 5 mg.",
        "then review, e.g.",
        "yearly.",
        "| a | b |",
        "- item",
    ]


def test_passage_keeps_clauses_and_numbers_together() -> None:
    assert sentences_split("Dose 2.5 mg; review: yearly [S1].", PASSAGE) == [
        "Dose 2.5 mg; review: yearly [S1]."
    ]


# -- EVIDENCE ---------------------------------------------------------------------------------


def test_evidence_never_ends_after_an_abbreviation_or_an_initial() -> None:
    text = (
        "Use a DOAC, e.g. Apixaban. Dose i.e. Twice daily. Apixaban vs. Warfarin. "
        "Aspirin etc. Are listed. Give approx. 5 mg. Ask Dr. Smith. See J. Doe. Done."
    )
    assert sentences_split(text, EVIDENCE) == [
        "Use a DOAC, e.g. Apixaban.",
        "Dose i.e. Twice daily.",
        "Apixaban vs. Warfarin.",
        "Aspirin etc. Are listed.",
        "Give approx. 5 mg.",
        "Ask Dr. Smith.",
        "See J. Doe.",
        "Done.",
    ]
    assert ABBREVIATIONS == ("e.g.", "i.e.", "vs.", "etc.", "approx.", "Dr.")


def test_evidence_needs_a_capital_digit_bracket_or_quote_next() -> None:
    text = "Stop. \u201cQuoted\u201d next. 'Single'. \"Double\". [S1] marker. (Aside.) 3 mg. lower."
    assert sentences_split(text, EVIDENCE) == [
        "Stop.",
        "\u201cQuoted\u201d next.",
        "'Single'.",
        '"Double".',
        "[S1] marker.",
        # The stop must come right before the space: ".)" ends nothing, nor does ". lower".
        "(Aside.) 3 mg. lower.",
    ]


def test_evidence_does_not_break_at_newlines_or_clauses() -> None:
    assert sentences_split("Offer rate control;\nthen review: yearly.", EVIDENCE) == [
        "Offer rate control;\nthen review: yearly."
    ]


# -- CLAUSE -----------------------------------------------------------------------------------


def test_clause_breaks_at_semicolons_colons_and_newlines_too() -> None:
    assert sentences_split("no; the trial was small: 40 patients. yes\nmaybe", CLAUSE) == [
        "no;",
        "the trial was small:",
        "40 patients.",
        "yes",
        "maybe",
    ]


def test_clause_needs_white_space_after_the_punctuation() -> None:
    assert sentences_split("ratio 1:2;3 and 2.5 mg", CLAUSE) == ["ratio 1:2;3 and 2.5 mg"]


# -- the rule itself --------------------------------------------------------------------------


def test_a_custom_rule_escapes_its_end_characters() -> None:
    rule = SentenceRule(ends="]-", starts="A-Z")
    assert sentences_split("see [S1] Then - Next - lower", rule) == [
        "see [S1]",
        "Then -",
        "Next - lower",
    ]


def test_rules_are_frozen_values() -> None:
    assert SentenceRule(newlines=True) == PASSAGE
    with pytest.raises(AttributeError):
        PASSAGE.newlines = False  # type: ignore[misc]


def test_the_module_imports_neither_django_nor_inference() -> None:
    code = (
        "import sys, retrieval.sentences; "
        "bad = [m for m in sys.modules if m.startswith(('django', 'inference'))]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
