"""Conversations (issue 16): follow-ups of the user's own answers, their search, prompt, audit,
history and the API that reopens a whole thread; a second clinician can neither see nor
continue the first one's conversation."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings
from django.utils import timezone

from clinic_app.answers import selectors, services
from clinic_app.answers.streaming import CollectingSink
from clinic_app.models import Answer, AnswerStatus, AuditEvent, Question
from inference.testing import ScriptedBackend
from tests.conftest import ANSWERABLE_QUESTION

pytestmark = pytest.mark.django_db

UNLIMITED = {"QUESTION_RATE_PER_MINUTE": 0, "QUESTION_MAX_CONCURRENT": 0}
FIRST_ANSWER = "Offer oral anticoagulation when CHA2DS2-VASc is 2 or more [S1]."
FOLLOW_UP = "And which dose of apixaban if she is 82 and weighs 55 kg?"


@pytest.fixture
def other(clinician: User) -> User:
    user = User.objects.create_user("second-clinician", password="x")
    user.groups.add(*clinician.groups.all())
    return user


def asked(user: User, text: str, follow_up_of: int | None = None) -> Answer:
    with override_settings(**UNLIMITED):
        answer = services.question_ask(user=user, text=text, follow_up_of=follow_up_of)
    return services.answer_generate(answer_id=answer.pk, sink=CollectingSink())


def finished(user: User, text: str, follow_up_of: int | None = None) -> Answer:
    """An answer in a final state without retrieval or the model."""
    with override_settings(**UNLIMITED):
        answer = services.question_ask(user=user, text=text, follow_up_of=follow_up_of)
    Answer.objects.filter(pk=answer.pk).update(
        status=AnswerStatus.COMPLETE, text=FIRST_ANSWER, finished_at=timezone.now()
    )
    answer.refresh_from_db()
    return answer


# ------------------------------------------------------------------------ asking follow-ups


def test_a_first_question_is_its_own_thread_and_a_follow_up_joins_it(clinician: User) -> None:
    first = finished(clinician, ANSWERABLE_QUESTION)
    assert first.question.thread_id == first.question.pk and first.question.turn == 1
    second = finished(clinician, FOLLOW_UP, follow_up_of=first.pk)
    assert second.question.thread_id == first.question.pk
    assert second.question.turn == 2 and second.question.follow_up_of_id == first.pk
    event = AuditEvent.objects.get(action="question.asked", object_id=str(second.pk))
    assert event.details["thread_id"] == first.question.pk
    assert event.details["turn"] == 2 and event.details["follow_up_of"] == first.pk


def test_someone_elses_answer_cannot_be_followed_up_and_the_attempt_is_audited(
    clinician: User, other: User
) -> None:
    theirs = finished(clinician, ANSWERABLE_QUESTION)
    with pytest.raises(services.FollowUpNotYours, match="No such answer of yours"):
        services.question_ask(user=other, text=FOLLOW_UP, follow_up_of=theirs.pk)
    # Nothing of the second clinician's joined the first one's conversation.
    assert not Question.objects.filter(user=other).exists()
    denied = AuditEvent.objects.get(action="answer.access_denied", object_id=str(theirs.pk))
    assert denied.actor == other.username and denied.details["request"] == "follow_up"
    # A missing answer gets the same reply as a foreign one.
    with pytest.raises(services.FollowUpNotYours, match="No such answer of yours"):
        services.question_ask(user=other, text=FOLLOW_UP, follow_up_of=10**9)


def test_a_follow_up_waits_for_its_answer_to_finish(clinician: User) -> None:
    with override_settings(**UNLIMITED):
        running = services.question_ask(user=clinician, text=ANSWERABLE_QUESTION)
        with pytest.raises(services.QuestionRejected, match="Wait for that answer to finish"):
            services.question_ask(user=clinician, text=FOLLOW_UP, follow_up_of=running.pk)


def test_a_conversation_continues_from_its_latest_answer_only(clinician: User) -> None:
    first = finished(clinician, ANSWERABLE_QUESTION)
    finished(clinician, FOLLOW_UP, follow_up_of=first.pk)
    with pytest.raises(services.QuestionRejected, match="already has a follow-up"):
        finished(clinician, "And for men?", follow_up_of=first.pk)


@override_settings(THREAD_MAX_TURNS=3)
def test_a_conversation_has_at_most_thread_max_turns_questions(clinician: User) -> None:
    answer = finished(clinician, ANSWERABLE_QUESTION)
    for text in ("And for men?", "And in CKD?"):
        answer = finished(clinician, text, follow_up_of=answer.pk)
    assert answer.question.turn == 3
    with pytest.raises(services.QuestionRejected, match=r"limit of 3 questions\. Start a new"):
        finished(clinician, "And in the elderly?", follow_up_of=answer.pk)
    assert Question.objects.filter(user=clinician).count() == 3


# ----------------------------------------------------------------- search and prompt


def test_a_follow_up_is_searched_with_the_previous_question_and_prompted_with_the_turns(
    clinician: User, scripted: Callable[[str], ScriptedBackend]
) -> None:
    backend = scripted(FIRST_ANSWER)
    first = asked(clinician, ANSWERABLE_QUESTION)
    assert first.status == AnswerStatus.COMPLETE, first.message
    backend.script = lambda _prompt: "Use 2.5 mg twice daily [S1]."
    with override_settings(FOLLOW_UP_QUERY="previous"):
        second = asked(clinician, "And how much apixaban then?", follow_up_of=first.pk)
    assert second.status == AnswerStatus.COMPLETE, second.message
    prompt = backend.prompts[-1]
    # The earlier exchange as the clinician saw it, before the current sources and question;
    # its citation markers are gone (its sources are not offered again).
    assert ANSWERABLE_QUESTION in prompt
    assert "Offer oral anticoagulation when CHA2DS2-VASc is 2 or more." in prompt
    assert prompt.index(ANSWERABLE_QUESTION) < prompt.index("Sources:")
    assert prompt.rindex("Question: And how much apixaban then?") > prompt.index("Sources:")
    assert "is 2 or more [S1]" not in prompt
    # The sources were found for the conversation: anticoagulation in AF.
    keys = [c.passage.guideline.key for c in second.citations.select_related("passage__guideline")]
    assert keys and keys[0].startswith("acc_aha_af_2023/")
    done = AuditEvent.objects.get(action="answer.complete", object_id=str(second.pk))
    assert done.details["thread_id"] == first.question.pk and done.details["turn"] == 2
    assert done.details["history_turns"] == 1


def test_searching_a_follow_up_alone_loses_what_it_refers_to(clinician: User) -> None:
    """The reason for FOLLOW_UP_QUERY: alone, "and how much then?" finds less to answer."""
    with override_settings(FOLLOW_UP_QUERY="alone"):
        alone = services.thread_search("And how much apixaban then?", [ANSWERABLE_QUESTION], k=5)
    with override_settings(FOLLOW_UP_QUERY="previous"):
        with_previous = services.thread_search(
            "And how much apixaban then?", [ANSWERABLE_QUESTION], k=5
        )
    assert with_previous.top_score > alone.top_score


def test_a_weak_follow_up_is_refused_without_calling_the_model(
    clinician: User, scripted: Callable[[str], ScriptedBackend]
) -> None:
    backend = scripted(FIRST_ANSWER)
    first = asked(clinician, ANSWERABLE_QUESTION)
    calls = len(backend.prompts)
    with override_settings(FOLLOW_UP_QUERY="alone"):
        second = asked(clinician, "Who won the football world cup in 2018?", follow_up_of=first.pk)
    assert second.status == AnswerStatus.REFUSED
    assert len(backend.prompts) == calls


# ---------------------------------------------------------------- reading conversations


def test_the_thread_api_returns_the_whole_conversation_to_its_owner_only(
    clinician: User, other: User
) -> None:
    first = finished(clinician, ANSWERABLE_QUESTION)
    second = finished(clinician, FOLLOW_UP, follow_up_of=first.pk)
    mine = Client()
    mine.force_login(clinician)
    for answer_id in (first.pk, second.pk):
        body = mine.get(f"/api/answers/{answer_id}/thread/").json()
        assert [t["id"] for t in body["turns"]] == [first.pk, second.pk]
        assert [t["turn"] for t in body["turns"]] == [1, 2]
        assert body["turns"][1]["follow_up_of"] == first.pk
    theirs = Client()
    theirs.force_login(other)
    response = theirs.get(f"/api/answers/{second.pk}/thread/")
    assert response.status_code == 404
    assert FOLLOW_UP not in response.content.decode()
    denied = AuditEvent.objects.filter(
        action="answer.viewed", outcome="failure", actor=other.username
    )
    assert denied.count() == 1


def test_history_lists_each_conversation_once_at_its_latest_answer(
    clinician: User, other: User
) -> None:
    first = finished(clinician, ANSWERABLE_QUESTION)
    second = finished(clinician, FOLLOW_UP, follow_up_of=first.pk)
    alone = finished(clinician, "Target blood pressure in CKD?")
    finished(other, "Apixaban dose for the other clinician?")
    entries = selectors.thread_list_for_user(user=clinician)
    assert [(e.answer_id, e.turns) for e in entries] == [(alone.pk, 1), (second.pk, 2)]
    assert entries[1].question == ANSWERABLE_QUESTION
    # A word of the follow-up finds its conversation.
    found = selectors.thread_list_for_user(user=clinician, query="weighs")
    assert [e.thread_id for e in found] == [first.question.pk]
    client = Client()
    client.force_login(clinician)
    results = client.get("/api/history/?q=apixaban").json()["results"]
    assert [(r["answer_id"], r["turns"]) for r in results] == [(second.pk, 2)]


def test_the_auditor_sees_the_conversation_up_to_the_answer(clinician: User, auditor: User) -> None:
    first = finished(clinician, ANSWERABLE_QUESTION)
    second = finished(clinician, FOLLOW_UP, follow_up_of=first.pk)
    finished(clinician, "And if she is on dialysis?", follow_up_of=second.pk)
    event = AuditEvent.objects.get(action="question.asked", object_id=str(second.pk))
    client = Client()
    client.force_login(auditor)
    page = client.get(f"/audit/events/{event.seq}/").content.decode()
    assert "The conversation before this question" in page
    assert ANSWERABLE_QUESTION in page and FOLLOW_UP in page
    assert "a follow-up of answer" in page
    # Only up to this answer: the later turn is not part of what was seen then.
    assert "on dialysis" not in page


def test_audit_exports_carry_the_thread_of_every_question(clinician: User, auditor: User) -> None:
    first = finished(clinician, ANSWERABLE_QUESTION)
    finished(clinician, FOLLOW_UP, follow_up_of=first.pk)
    client = Client()
    client.force_login(auditor)
    lines = b"".join(client.get("/audit/export.jsonl?action=question.asked").streaming_content)
    assert lines.count(f'"thread_id":{first.question.pk}'.encode()) == 2


# ----------------------------------------------------------------------------- evaluation


def test_follow_up_of_must_name_an_earlier_line_followed_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from clinic_app.evaluation import datasets

    def load(*lines: str) -> list[datasets.EvalQuestion]:
        path = tmp_path / "set.jsonl"
        path.write_text("\n".join(lines), encoding="utf-8")
        return datasets.questions_load(path=path)

    first = '{"id": "a", "kind": "out_of_scope", "question": "Football?"}'
    with pytest.raises(datasets.DatasetError, match="earlier line"):
        load('{"id": "b", "kind": "out_of_scope", "question": "And?", "follow_up_of": "a"}', first)
    with pytest.raises(datasets.DatasetError, match="followed up 2 times"):
        load(
            first,
            '{"id": "b", "kind": "out_of_scope", "question": "And?", "follow_up_of": "a"}',
            '{"id": "c", "kind": "out_of_scope", "question": "Or?", "follow_up_of": "a"}',
        )
    questions = load(
        first,
        '{"id": "x", "kind": "out_of_scope", "question": "Tennis?"}',
        '{"id": "b", "kind": "out_of_scope", "question": "And?", "follow_up_of": "a"}',
    )
    # Choosing a follow-up brings its first turn along, in the file's order.
    chosen = datasets.questions_select(questions, ids=["b"])
    assert [q.id for q in chosen] == ["a", "b"]


def test_the_follow_up_set_is_asked_as_conversations_and_reported_by_turn(
    clinician: User, scripted: Callable[[str], ScriptedBackend]
) -> None:
    """A subset of the project's follow-up set whose sources are in the test library."""

    from clinic_app.evaluation import datasets
    from clinic_app.evaluation.questions import questions_evaluate
    from clinic_app.evaluation.report import report_render
    from clinic_app.evaluation.run import evaluation_user

    path = datasets.EVAL_DATA / "follow_up_questions.jsonl"
    questions = datasets.questions_load(path=path)
    follow_ups = [q for q in questions if q.follow_up_of]
    assert len(follow_ups) >= 20
    slice_ = [
        q.id
        for q in follow_ups
        if all(s.split("/")[0] in {"acc_aha_af_2023", "kdigo_ckd_2024"} for s in q.expected_sources)
        and all(
            s.split("/")[0] in {"acc_aha_af_2023", "kdigo_ckd_2024"}
            for s in next(p for p in questions if p.id == q.follow_up_of).expected_sources
        )
    ]
    assert slice_, "the set has conversations over the test library's guidelines"
    chosen = datasets.questions_select(questions, ids=slice_)
    scripted("The sources answer this [S1].")
    user = evaluation_user()
    report = questions_evaluate(path=path, questions=chosen, total=len(questions), user=user)
    rows = {r["id"]: r for r in report.items}
    assert all(rows[q.id]["turn"] == (2 if q.follow_up_of else 1) for q in chosen)
    asked = Question.objects.filter(user=user, turn=2)
    assert asked.count() == len([q for q in chosen if q.follow_up_of])
    assert all(q.follow_up_of is not None for q in asked)
    by_turn = report.summary["by_turn"]
    assert sum(by_turn["follow_up"]["counts"].values()) == asked.count()
    assert "First questions and follow-ups" in report_render(report)
