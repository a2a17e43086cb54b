"""Patient identifiers are found in questions; clinical numbers are not mistaken for them.

The cases live in data/identifier_cases.json so that the browser test
(tests/e2e/test_feedback_history_identifiers.py) runs the page's detector on the same ones.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from clinic_app.answers.identifiers import (
    PATTERNS,
    PLACEHOLDERS,
    Found,
    browser_config,
    find_identifiers,
    identifier_kinds,
    nhs_checksum_ok,
    redact,
)

CASES_FILE = Path(__file__).parent / "data" / "identifier_cases.json"


def load_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads(CASES_FILE.read_text())["cases"]
    return cases


CASES = load_cases()
POSITIVE = [c for c in CASES if c["found"]]
NEGATIVE = [c for c in CASES if not c["found"]]


@pytest.mark.parametrize("case", POSITIVE, ids=[c["text"][:40] for c in POSITIVE])
def test_identifiers_are_found_with_their_kind(case: dict[str, Any]) -> None:
    found = find_identifiers(case["text"])
    assert [[f.kind, f.text] for f in found] == case["found"]
    for f in found:
        assert case["text"][f.start : f.end] == f.text


@pytest.mark.parametrize("case", NEGATIVE, ids=[c["text"][:40] for c in NEGATIVE])
def test_clinical_text_does_not_trigger_the_warning(case: dict[str, Any]) -> None:
    assert find_identifiers(case["text"]) == []


def test_the_case_file_covers_every_kind_and_the_required_clinical_negatives() -> None:
    kinds = {kind for c in POSITIVE for kind, _ in c["found"]}
    assert kinds == set(PLACEHOLDERS)
    negatives = " | ".join(c["text"] for c in NEGATIVE)
    for required in ("CHA2DS2-VASc 2", "eGFR 45 ml/min/1.73m2", "BP 140/90", "INR 2-3", "500 mg"):
        assert required in negatives
    assert re.search(r"\b2023\b", negatives) and "acc_aha_af_2023" in negatives


def test_a_label_stays_and_only_the_value_is_replaced() -> None:
    text = "MRN: 12-345-67, DOB 01/02/1960, phone 555-123-4567; CHA2DS2-VASc 2?"
    assert redact(text) == (
        "MRN: [record number], DOB [date of birth], phone [phone]; CHA2DS2-VASc 2?"
    )
    assert find_identifiers(redact(text)) == []


def test_redact_leaves_text_without_identifiers_unchanged() -> None:
    text = "eGFR 45 ml/min/1.73m2: reduce the apixaban dose?"
    assert redact(text) == text


def test_kinds_are_sorted_and_listed_once() -> None:
    text = "phone 555-123-4567 or 020 7946 0958, MRN 1234567"
    assert identifier_kinds(text) == ["mrn", "phone"]


def test_a_labelled_value_is_named_by_its_label_not_also_by_another_pattern() -> None:
    found = find_identifiers("NHS number 943 476 5919")
    assert found == [Found("nhs", 11, 23, "943 476 5919")]


def test_nhs_checksum() -> None:
    assert nhs_checksum_ok("9434765919")
    assert not nhs_checksum_ok("9434765918")
    assert not nhs_checksum_ok("943476591")
    # An unlabelled ten-digit number with a wrong check digit is still flagged, as a phone.
    assert [f.kind for f in find_identifiers("called 9434765918")] == ["phone"]


def test_the_browser_gets_every_pattern_with_the_same_source() -> None:
    config = browser_config()
    assert [p["source"] for p in config["patterns"]] == [p.source for p in PATTERNS]
    assert config["placeholders"] == PLACEHOLDERS
    assert set(config["labels"]) == set(PLACEHOLDERS)
    json.dumps(config)  # rendered with json_script


def test_patterns_stay_in_the_syntax_python_and_javascript_share() -> None:
    # \w and \s mean different things in the two engines; named groups are written differently.
    for p in PATTERNS:
        assert not re.search(r"\\[wWsS]|\(\?P?<[A-Za-z]", p.source), p.source
