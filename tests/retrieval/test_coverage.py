"""The coverage check: specialised terms the library never uses, populations no passage addresses."""

from __future__ import annotations

import pytest

from retrieval.coverage import (
    Coverage,
    LibraryVocabulary,
    coverage_check,
    key_terms,
    question_populations,
)

LIBRARY = [
    "Atrial fibrillation\nAnticoagulation\nApixaban 5 mg twice daily; reduce to 2.5 mg when two "
    "of: age >= 80 years, weight <= 60 kg, creatinine >= 1.5 mg/dL. Target INR 2.0-3.0.",
    "Sepsis\nInitial management\nStart norepinephrine when MAP < 65 mmHg after fluids; add "
    "hydrocortisone 200 mg/day for refractory shock. Measure lactate; nebulised saline.",
    "Asthma\nPregnancy\nContinue inhaled corticosteroids during pregnancy; oxygen saturation "
    "above 95%. Febrile patients need review.",
    "Urinary tract infection\nTreatment\nSeven days for men; check the hydration status.",
]


@pytest.fixture(scope="module")
def vocabulary() -> LibraryVocabulary:
    return LibraryVocabulary(LIBRARY)


def test_key_terms_are_the_specialised_words_only() -> None:
    terms = key_terms("What is the starting dose of inclisiran for my patient after an NSTEMI?")
    assert "inclisiran" in terms
    # Ordinary English and short abbreviations are not looked up.
    for word in ("starting", "dose", "patient", "what", "after", "nstemi"[:3]):
        assert word not in terms
    assert key_terms("How many days of treatment for a man?") == []
    # Each part of a hyphenated word counts; a word is listed once.
    assert key_terms("beta-hydroxybutyrate and hydroxybutyrate") == ["hydroxybutyrate"]


def test_a_lower_rarity_limit_keeps_fewer_terms() -> None:
    question = "Glaucoma drops with apixaban?"
    assert set(key_terms(question, rare_below=3.5)) >= {"glaucoma", "apixaban"}
    assert key_terms(question, rare_below=2.0) == ["apixaban"]


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("8yo with new type 1 diabetes in DKA: fluid bolus?", ["children"]),
        ("A 9-year-old girl with asthma", ["children"]),
        ("6 month old infant with fever", ["children"]),
        ("paediatric dosing of apixaban", ["children"]),
        ("28/40 with pyelonephritis, which antibiotic?", ["pregnancy"]),
        ("14 wks pregnant, asthma well controlled", ["pregnancy"]),
        ("Is apixaban safe while breastfeeding?", ["breastfeeding"]),
        ("lactating mother with mastitis", ["breastfeeding"]),
        ("septic shock, lactate 4, lactated Ringer's or saline?", []),
        ("64M with CAP, CURB-65 of 3", []),
        ("45F with pyelonephritis", []),
        ("12F with pyelonephritis", ["children"]),
        ("ICH on warfarin, INR 4.5: 4F-PCC dose?", []),
        ("stop denosumab after 4 yrs?", []),
        ("72 year old man with AF", []),
    ],
)
def test_populations_named_by_word_or_by_age(question: str, expected: list[str]) -> None:
    assert question_populations(question) == expected


@pytest.mark.parametrize(
    "term",
    [
        "apixaban",  # as written
        "anticoagulated",  # inflection of a library word
        "nebs",  # short plural of an abbreviation (nebulised)
        "sats",  # saturation
        "urosepsis",  # compound on a library word (sepsis)
        "afebrile",  # febrile
        "prehydration",  # hydration
        "apixiban",  # a typo
        "norepinephrin",  # a dropped letter
    ],
)
def test_the_library_knows_close_forms_of_its_words(
    vocabulary: LibraryVocabulary, term: str
) -> None:
    assert vocabulary.knows(term)


@pytest.mark.parametrize("term", ["inclisiran", "levothyroxine", "glaucoma", "otitis", "baclofen"])
def test_terms_the_library_never_uses_are_unknown(vocabulary: LibraryVocabulary, term: str) -> None:
    assert not vocabulary.knows(term)


def test_coverage_names_an_absent_drug(vocabulary: LibraryVocabulary) -> None:
    coverage = coverage_check(
        "AF patient on apixaban: what is the inclisiran dose?", LIBRARY[:1], vocabulary
    )
    assert not coverage.covered
    assert coverage.missing_terms == ("inclisiran",)
    assert coverage.describe() == "inclisiran"


def test_a_population_must_be_mentioned_by_a_retrieved_passage(
    vocabulary: LibraryVocabulary,
) -> None:
    question = "Inhaled corticosteroids in a pregnant woman with asthma?"
    # The asthma passage that addresses pregnancy was retrieved: covered.
    assert coverage_check(question, LIBRARY[2:3], vocabulary).covered
    # Only passages that never mention pregnancy: not covered, whatever the library holds.
    missed = coverage_check(question, LIBRARY[:2], vocabulary)
    assert missed.missing_populations == ("pregnancy",) and missed.missing_terms == ()
    assert missed.describe() == "pregnancy"


def test_a_covered_question_passes(vocabulary: LibraryVocabulary) -> None:
    coverage = coverage_check(
        "When should apixaban be reduced to 2.5 mg in AF?", LIBRARY[:1], vocabulary
    )
    assert coverage.covered and coverage == Coverage()


def test_lactated_ringers_is_not_about_breastfeeding(vocabulary: LibraryVocabulary) -> None:
    question = "Fluids for burns in a breastfeeding mother?"
    passage = "Burns\nFluid resuscitation\nGive lactated Ringer's 2-4 mL/kg per %TBSA."
    assert coverage_check(question, [passage], vocabulary).missing_populations == ("breastfeeding",)


def test_describe_lists_everything_missing() -> None:
    coverage = Coverage(missing_terms=("inclisiran", "baclofen"), missing_populations=("children",))
    assert coverage.describe() == "inclisiran, baclofen and children"


def test_terms_unmentioned_lists_the_less_common_words_no_passage_uses() -> None:
    from retrieval.coverage import terms_unmentioned

    question = "Septic shock: hydrocortisone dose, and is vasopressin or angiotensin better?"
    # "septic", "vasopressin" and "angiotensin" (Zipf < 4) are in none of these passages;
    # "hydrocortisone" is.
    assert terms_unmentioned(question, LIBRARY) == ("septic", "vasopressin", "angiotensin")
    # Matched as leniently as the library check: inflections and one-letter slips.
    assert terms_unmentioned("norepinephrin and nebulized saline?", LIBRARY) == ()
    # Common words are never counted, whatever the passages say.
    assert terms_unmentioned("What dose should the patient take?", LIBRARY) == ()


def test_terms_unmentioned_reads_only_the_passages_given() -> None:
    from retrieval.coverage import terms_unmentioned

    question = "Apixaban dose in atrial fibrillation?"
    assert terms_unmentioned(question, LIBRARY[:1]) == ()
    assert terms_unmentioned(question, LIBRARY[1:]) == ("apixaban", "atrial", "fibrillation")
