"""Evidence first: the sources' own sentences are chosen, stored, audited and sent before the
model's first token (scripted backend: this is about the service, not the model)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User

from clinic_app.answers import services
from clinic_app.answers.selectors import answer_payload
from clinic_app.answers.streaming import CollectingSink
from clinic_app.core import runtime
from clinic_app.models import AnswerStatus, AuditEvent
from inference.testing import ScriptedBackend
from tests.conftest import ANSWERABLE_QUESTION, OFF_TOPIC_QUESTION

pytestmark = pytest.mark.django_db

SUMMARY = "Offer oral anticoagulation when the stroke risk is high [S1]."


def ask(user: User, text: str) -> tuple[Any, list[tuple[str, Any]]]:
    order: list[tuple[str, Any]] = []
    sink = CollectingSink(
        echo=lambda delta: order.append(("text", delta)),
        on_evidence=lambda items: order.append(("evidence", items)),
    )
    answer = services.question_ask(user=user, text=text)
    return services.answer_generate(answer_id=answer.pk, sink=sink), order


@pytest.fixture(autouse=True)
def scripted(monkeypatch: pytest.MonkeyPatch) -> ScriptedBackend:
    backend = ScriptedBackend(SUMMARY)
    monkeypatch.setattr(runtime, "get_backend", lambda: backend)
    return backend


def words(text: str) -> str:
    return " ".join(re.sub(r"[*_`#>|-]", " ", text).split())


def test_evidence_is_sent_before_the_first_token_and_stored_with_the_answer(
    clinician: User,
) -> None:
    answer, order = ask(clinician, ANSWERABLE_QUESTION)
    assert answer.status == AnswerStatus.COMPLETE
    assert order[0][0] == "evidence", "the quotes come before any generated text"
    assert any(kind == "text" for kind, _ in order[1:])
    evidence = order[0][1]
    assert 1 <= len(evidence) <= 3
    assert evidence == answer.evidence == answer_payload(answer)["evidence"]


def test_each_quote_is_verbatim_from_its_numbered_source_with_its_guideline(
    clinician: User,
) -> None:
    answer, _ = ask(clinician, ANSWERABLE_QUESTION)
    citations = {c.number: c for c in answer.citations.select_related("passage__guideline")}
    for item in answer.evidence:
        citation = citations[item["source"]]
        assert item["passage_id"] == citation.passage_id
        assert words(item["text"]) in words(citation.passage.text)
        guideline = citation.passage.guideline
        assert item["guideline"] == {
            "key": guideline.key,
            "title": guideline.title,
            "organisation": guideline.organisation,
            "year": guideline.year,
        }
        assert item["section"] == citation.passage.section


def test_the_audit_record_keeps_the_quotes_the_clinician_saw(clinician: User) -> None:
    answer, _ = ask(clinician, ANSWERABLE_QUESTION)
    event = AuditEvent.objects.get(action="answer.complete", object_id=str(answer.pk))
    assert event.details["evidence"] == [
        {"source": e["source"], "text": e["text"]} for e in answer.evidence
    ]


def test_a_refused_question_has_no_evidence_and_sends_none(clinician: User) -> None:
    answer, order = ask(clinician, OFF_TOPIC_QUESTION)
    assert answer.status == AnswerStatus.REFUSED
    assert answer.evidence == []
    assert not [kind for kind, _ in order if kind == "evidence"]


def test_the_quotes_stay_when_the_model_fails(
    clinician: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inference.errors import BackendUnavailable

    class Down(ScriptedBackend):
        def stream(self, request, cancel=None):  # type: ignore[no-untyped-def]
            raise BackendUnavailable("model server down")
            yield ""  # pragma: no cover - makes this a generator

    down = Down(SUMMARY)
    monkeypatch.setattr(runtime, "get_backend", lambda: down)
    answer, order = ask(clinician, ANSWERABLE_QUESTION)
    assert answer.status == AnswerStatus.FAILED
    assert answer.evidence and order[0][0] == "evidence"
    assert answer_payload(answer)["evidence"] == answer.evidence


def test_a_summary_the_checks_reject_is_withheld_and_counted(
    clinician: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dose invented by the model (12.5 mg where no source says so), and no citation at all."""
    invented = ScriptedBackend(
        "Start levothyroxine at 12.5 mg daily. Double the dose every week until the TSH is normal."
    )
    monkeypatch.setattr(runtime, "get_backend", lambda: invented)
    answer, _ = ask(clinician, ANSWERABLE_QUESTION)
    assert answer.status == AnswerStatus.COMPLETE
    withheld = [f for f in answer.flags if f["kind"] == "summary_withheld"]
    assert withheld and "2 of 2 sentences" in withheld[0]["detail"]
    assert answer.evidence, "the quotes are what the clinician relies on instead"


def test_a_supported_summary_is_not_withheld(
    clinician: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    def quote_first_source(prompt: str) -> str:
        """The first sentence of [S1], cited: as supported as a summary can be."""
        body = prompt.split('<source id="S1"', 1)[1].split(">", 1)[1].split("</source>", 1)[0]
        first = re.split(r"(?<=[.!?])\s", " ".join(body.split()), maxsplit=1)[0]
        return f"{first.rstrip('.')} [S1]."

    monkeypatch.setattr(runtime, "get_backend", lambda: ScriptedBackend(quote_first_source))
    answer, _ = ask(clinician, ANSWERABLE_QUESTION)
    assert answer.status == AnswerStatus.COMPLETE
    assert all(f["kind"] != "summary_withheld" for f in answer.flags), answer.flags
