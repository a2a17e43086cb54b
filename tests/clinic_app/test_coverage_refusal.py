"""Answerability beyond one cosine: what the library does not cover is refused, and named."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import override_settings

from clinic_app.answers import services
from clinic_app.answers.selectors import answer_payload
from clinic_app.answers.streaming import CollectingSink
from clinic_app.core import runtime
from clinic_app.models import Answer, AnswerStatus, AuditEvent

pytestmark = pytest.mark.django_db

# On topic for the test library (atrial fibrillation), about a drug no guideline mentions.
ABSENT_DRUG = "In atrial fibrillation, what is the inclisiran starting dose?"


def ask(user: User, text: str) -> tuple[Answer, CollectingSink]:
    answer = services.question_ask(user=user, text=text)
    sink = CollectingSink()
    return services.answer_generate(answer_id=answer.pk, sink=sink), sink


class NoModel:
    def __getattr__(self, name: str) -> object:
        raise AssertionError("a question the library does not cover must not reach the model")


def test_a_drug_no_guideline_mentions_is_refused_by_name_without_the_model(
    clinician: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "get_backend", lambda: NoModel())
    answer, sink = ask(clinician, ABSENT_DRUG)
    assert answer.status == AnswerStatus.REFUSED
    # The topic matched (the cosine rule alone would have answered) ...
    assert answer.top_score >= 0.40
    # ... but the refusal names what the library does not cover.
    assert answer.message.startswith("The guidelines in the library do not cover inclisiran")
    assert "generic or full name" in answer.message
    assert answer.backend == "" and answer.prompt_sha256 == "" and answer.evidence == []
    assert sink.chunks == [] and sink.final is not None
    assert {"kind": "not_covered", "detail": "inclisiran"} in sink.final["flags"]
    assert "inclisiran" in answer_payload(answer)["message"]
    event = AuditEvent.objects.get(action="answer.refused", object_id=str(answer.pk))
    assert event.details["reason"] == "not_covered"
    assert event.details["missing_terms"] == ["inclisiran"]
    assert event.details["missing_populations"] == []
    assert event.details["passage_ids"]


def test_a_population_no_retrieved_passage_addresses_is_refused(
    clinician: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "get_backend", lambda: NoModel())
    answer, sink = ask(
        clinician, "Burns fluid resuscitation with the Parkland formula in a breastfeeding mother?"
    )
    assert answer.status == AnswerStatus.REFUSED
    assert "do not address breastfeeding" in answer.message
    assert sink.final is not None
    assert {"kind": "not_covered", "detail": "breastfeeding"} in sink.final["flags"]
    event = AuditEvent.objects.get(action="answer.refused", object_id=str(answer.pk))
    assert event.details["missing_populations"] == ["breastfeeding"]


def test_a_typo_or_a_library_word_in_another_form_is_not_refused(clinician: User) -> None:
    answer, _ = ask(
        clinician, "When should apixiban be reduced to 2.5 mg twice daily in atrial fibrillation?"
    )
    assert answer.status == AnswerStatus.COMPLETE, answer.message
    assert not any(f["kind"] == "not_covered" for f in answer.flags)


def test_the_check_can_be_switched_off(clinician: User) -> None:
    with override_settings(COVERAGE_CHECK="off"):
        answer, _ = ask(clinician, ABSENT_DRUG)
    assert answer.status == AnswerStatus.COMPLETE, answer.message
    assert not any(f["kind"] == "not_covered" for f in answer.flags)


def test_the_library_vocabulary_follows_the_live_index_version() -> None:
    retriever = runtime.get_retriever()
    vocabulary = retriever.vocabulary()
    assert vocabulary is not None and vocabulary.knows("apixaban")
    assert not vocabulary.knows("inclisiran")
    # Built once per loaded version, not per question.
    assert retriever.vocabulary() is vocabulary
