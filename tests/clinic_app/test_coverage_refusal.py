"""Answerability beyond one cosine: what the library does not cover is refused, and named."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import override_settings

from clinic_app.answers import services
from clinic_app.answers.selectors import answer_payload
from clinic_app.answers.streaming import CollectingSink
from clinic_app.core import runtime
from clinic_app.library.index_versions import passage_embedding_text
from clinic_app.models import Answer, AnswerStatus, AuditEvent, Passage
from retrieval.coverage import terms_unmentioned

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


# On topic (burns passages are found, every word is in the library), but the passages found
# never mention two of its less common words: they are about something near the question.
NEARBY_TOPIC = "Burns patient with atrial fibrillation: tetanus prophylaxis and skin graft timing?"


class QuotesOnly:
    """The configured backend, except that it must never be asked to write."""

    def __init__(self, backend: object) -> None:
        self._backend = backend

    def __getattr__(self, name: str) -> object:
        if name == "stream":
            raise AssertionError("no summary is written when the passages miss the question")
        return getattr(self._backend, name)


def test_passages_about_a_nearby_topic_give_the_quotes_and_no_summary(
    clinician: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    guarded = QuotesOnly(runtime.get_backend())
    monkeypatch.setattr(runtime, "get_backend", lambda: guarded)
    answer, sink = ask(clinician, NEARBY_TOPIC)
    assert answer.status == AnswerStatus.COMPLETE, answer.message
    assert answer.text == "" and sink.chunks == []
    # The guideline's own sentences are shown, before and with the finished answer ...
    assert answer.evidence and sink.evidence_items == answer.evidence
    # ... and the clinician is told why there is no summary, naming the missing words.
    assert answer.message.startswith(
        "No summary was written: the guideline passages found do not mention atrial and "
        "fibrillation"
    )
    assert sink.final is not None
    assert {"kind": "summary_skipped", "detail": "atrial and fibrillation"} in sink.final["flags"]
    assert sink.final["message"] == answer.message and sink.final["evidence"] == answer.evidence
    event = AuditEvent.objects.get(action="answer.complete", object_id=str(answer.pk))
    assert event.details["summary"] == "skipped"
    assert event.details["unmentioned_terms"] == ["atrial", "fibrillation"]
    assert event.details["evidence"] and event.details["passage_ids"]
    # The record says the model was not asked.
    assert answer.backend == answer.model_name == answer.prompt_sha256 == ""
    assert "model" not in event.details and "prompt_sha256" not in event.details


def test_one_unmentioned_word_still_gets_a_summary(clinician: User) -> None:
    question = "Burns patient on warfarin: when should the skin graft be done?"
    hits = runtime.get_retriever().search(question, k=settings.RETRIEVAL_TOP_K).hits
    texts = [
        passage_embedding_text(p)
        for p in Passage.objects.filter(pk__in=[h.passage_id for h in hits])
    ]
    assert terms_unmentioned(question, texts) == ("warfarin",)
    answer, _ = ask(clinician, question)
    assert answer.status == AnswerStatus.COMPLETE, answer.message
    assert not any(f["kind"] == "summary_skipped" for f in answer.flags)
    assert answer.text and answer.message == ""


def test_the_summary_check_can_be_switched_off(clinician: User) -> None:
    with override_settings(SUMMARY_COVERAGE_CHECK="off"):
        answer, _ = ask(clinician, NEARBY_TOPIC)
    assert answer.status == AnswerStatus.COMPLETE
    assert not any(f["kind"] == "summary_skipped" for f in answer.flags)
    assert answer.text
