"""Feedback on answers and the admins' review queue, history search, per-user question limits,
and identifiers recorded (by kind only) when a clinician sends them anyway."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings
from django.utils import timezone

from clinic_app.answers import selectors, services
from clinic_app.answers.feedback import (
    FeedbackNotFound,
    FeedbackRejected,
    feedback_review,
    feedback_submit,
)
from clinic_app.models import (
    FEEDBACK_COMMENT_MAX_CHARS,
    Answer,
    AnswerStatus,
    AuditEvent,
    Citation,
    Feedback,
    Passage,
    Question,
)
from tests.conftest import OFF_TOPIC_QUESTION

pytestmark = pytest.mark.django_db

UNLIMITED = {"QUESTION_MAX_CONCURRENT": 0, "QUESTION_RATE_PER_MINUTE": 0}


def finished(user: User, question: str = OFF_TOPIC_QUESTION, **fields: Any) -> Answer:
    """An answer in a final state, without running retrieval or the model."""
    with override_settings(**UNLIMITED):
        answer = services.question_ask(user=user, text=question)
    values = {"status": AnswerStatus.REFUSED, "message": "No sufficiently relevant passage."}
    values.update(fields)
    Answer.objects.filter(pk=answer.pk).update(finished_at=timezone.now(), **values)
    answer.refresh_from_db()
    return answer


def client_for(user: User, **kwargs: Any) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def other_clinician(clinician: User) -> User:
    other = User.objects.create_user("other-clinician", password="x")
    other.groups.add(*clinician.groups.all())
    return other


def last_event(action: str) -> AuditEvent:
    event = AuditEvent.objects.filter(action=action).order_by("-seq").first()
    assert event is not None, f"no {action} event"
    return event


# ---------------------------------------------------------------------------- limits


def test_a_third_answer_in_flight_is_refused_with_a_clear_message(clinician: User) -> None:
    services.question_ask(user=clinician, text="What is the target INR on warfarin?")
    services.question_ask(user=clinician, text="When is apixaban dose reduced?")
    with pytest.raises(services.QuestionRejected) as caught:
        services.question_ask(user=clinician, text="What BP target in CKD?")
    assert str(caught.value) == (
        "You already have 2 answers in progress; wait for one to finish or cancel it."
    )
    assert Question.objects.filter(user=clinician).count() == 2, "nothing saved"


def test_a_finished_or_cancelled_answer_frees_its_slot(clinician: User) -> None:
    first = services.question_ask(user=clinician, text="What is the target INR on warfarin?")
    second = services.question_ask(user=clinician, text="When is apixaban dose reduced?")
    assert services.answer_cancel(user=clinician, answer_id=first.pk)
    services.question_ask(user=clinician, text="What BP target in CKD?")
    Answer.objects.filter(pk=second.pk).update(status=AnswerStatus.COMPLETE)
    services.question_ask(user=clinician, text="Statins in CKD?")


@override_settings(QUESTION_MAX_CONCURRENT=1)
def test_streaming_answers_count_as_in_flight_too(clinician: User) -> None:
    answer = services.question_ask(user=clinician, text="What is the target INR on warfarin?")
    Answer.objects.filter(pk=answer.pk).update(status=AnswerStatus.STREAMING)
    with pytest.raises(services.QuestionRejected, match="You already have 1 answer in progress"):
        services.question_ask(user=clinician, text="When is apixaban dose reduced?")


@override_settings(QUESTION_MAX_CONCURRENT=1)
def test_an_answer_stuck_longer_than_a_task_may_run_does_not_lock_the_clinician_out(
    clinician: User, settings: Any
) -> None:
    answer = services.question_ask(user=clinician, text="What is the target INR on warfarin?")
    lost = timezone.now() - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 1)
    Question.objects.filter(pk=answer.question_id).update(created_at=lost)
    services.question_ask(user=clinician, text="When is apixaban dose reduced?")


@override_settings(QUESTION_MAX_CONCURRENT=0, QUESTION_RATE_PER_MINUTE=3)
def test_the_rate_limit_counts_questions_of_the_last_minute_in_the_database(
    clinician: User,
) -> None:
    for n in range(3):
        services.question_ask(user=clinician, text=f"Question number {n} about warfarin?")
    with pytest.raises(services.QuestionRejected) as caught:
        services.question_ask(user=clinician, text="One too many?")
    message = str(caught.value)
    assert message.startswith("You can ask up to 3 questions a minute; please wait ")
    assert message.endswith(" seconds before asking another.")
    wait = int(message.split("please wait ")[1].split()[0])
    assert 1 <= wait <= 60
    # Another process sees the same rows; once the oldest is over a minute old, one more fits.
    Question.objects.filter(user=clinician).filter(
        pk=Question.objects.filter(user=clinician).order_by("created_at").first().pk  # type: ignore[union-attr]
    ).update(created_at=timezone.now() - timedelta(seconds=61))
    services.question_ask(user=clinician, text="Now allowed?")
    with pytest.raises(services.QuestionRejected, match="up to 3 questions a minute"):
        services.question_ask(user=clinician, text="But not another?")


@override_settings(QUESTION_MAX_CONCURRENT=1, QUESTION_RATE_PER_MINUTE=1)
def test_limits_are_per_clinician(clinician: User) -> None:
    services.question_ask(user=clinician, text="What is the target INR on warfarin?")
    services.question_ask(user=other_clinician(clinician), text="When is apixaban reduced?")


@override_settings(**UNLIMITED)
def test_zero_turns_a_limit_off(clinician: User) -> None:
    for n in range(12):
        services.question_ask(user=clinician, text=f"Question number {n}?")


def test_batch_tools_can_ask_without_the_limits(clinician: User) -> None:
    for n in range(12):
        services.question_ask(user=clinician, text=f"Question number {n}?", enforce_limits=False)


@pytest.mark.usefixtures("seeded_db")
@pytest.mark.asyncio
async def test_the_websocket_answers_a_limited_question_with_the_message() -> None:
    from channels.db import database_sync_to_async
    from channels.testing import WebsocketCommunicator

    from clinic_app.asgi import application

    def two_in_flight() -> User:
        user = User.objects.get(username="clinician")
        services.question_ask(user=user, text="What is the target INR on warfarin?")
        services.question_ask(user=user, text="When is apixaban dose reduced?")
        return user

    from tests.clinic_app.test_ask_consumer import session_cookie

    user = await database_sync_to_async(two_in_flight)()
    cookie = await database_sync_to_async(session_cookie)(user)
    ws = WebsocketCommunicator(
        application,
        "/ws/ask/",
        headers=[
            (b"origin", b"http://127.0.0.1:8000"),
            (b"host", b"127.0.0.1:8000"),
            (b"cookie", cookie),
        ],
    )
    connected, _ = await ws.connect(timeout=10)
    assert connected
    await ws.send_json_to({"action": "ask", "question": "What BP target in CKD?"})
    event = await ws.receive_json_from(timeout=10)
    assert event == {
        "type": "error",
        "message": "You already have 2 answers in progress; wait for one to finish or cancel it.",
    }
    await ws.disconnect()


# ----------------------------------------------------------------------- identifiers


def test_identifiers_sent_anyway_are_audited_by_kind_never_by_value(clinician: User) -> None:
    text = "MRN 1234567, phone 555-123-4567, DOB 01/02/1960: anticoagulate?"
    answer = services.question_ask(user=clinician, text=text)
    event = last_event("question.asked")
    assert event.object_id == str(answer.pk)
    assert event.details["identifiers_found"] == ["dob", "mrn", "phone"]
    recorded = json.dumps(event.details)
    for value in ("1234567", "555-123-4567", "01/02/1960"):
        assert value not in recorded


def test_a_question_without_identifiers_records_none(clinician: User) -> None:
    services.question_ask(user=clinician, text="CHA2DS2-VASc 2 with eGFR 45: apixaban dose?")
    assert "identifiers_found" not in last_event("question.asked").details


def test_the_ask_page_gives_the_browser_the_servers_patterns(clinician: User) -> None:
    from clinic_app.answers.identifiers import browser_config

    html = client_for(clinician).get("/ask/").content.decode()
    assert 'id="identifier-config"' in html
    start = html.index('id="identifier-config"')
    body = html[html.index(">", start) + 1 : html.index("</script>", start)]
    assert json.loads(body) == browser_config()
    assert 'id="identifier-warning"' in html and "Remove them" in html and "Send anyway" in html


# -------------------------------------------------------------------- feedback service


def test_feedback_on_a_refusal_is_recorded_and_audited_without_the_comment(
    clinician: User,
) -> None:
    answer = finished(clinician)
    feedback = feedback_submit(
        user=clinician,
        answer_id=answer.pk,
        helpful=False,
        category="unsupported",
        comment="The AF guideline covers this; it should not refuse.",
        source_ip="10.0.0.7",
    )
    assert (feedback.helpful, feedback.category, feedback.user) == (False, "unsupported", clinician)
    event = last_event("feedback.submitted")
    assert (event.actor, event.object_type, event.object_id, event.source_ip) == (
        "clinician",
        "answer",
        str(answer.pk),
        "10.0.0.7",
    )
    assert event.details == {
        "answer_id": answer.pk,
        "feedback_id": feedback.pk,
        "helpful": False,
        "category": "unsupported",
        "comment_chars": len("The AF guideline covers this; it should not refuse."),
        "updated": False,
    }


def test_feedback_is_one_per_answer_and_a_change_returns_it_to_the_queue(
    clinician: User, guideline_admin: User
) -> None:
    answer = finished(clinician)
    first = feedback_submit(user=clinician, answer_id=answer.pk, helpful=False, category="outdated")
    assert feedback_review(user=guideline_admin, feedback_id=first.pk)
    # The same verdict again changes nothing, so it stays reviewed.
    feedback_submit(user=clinician, answer_id=answer.pk, helpful=False, category="outdated")
    assert Feedback.objects.get().reviewed_at is not None
    feedback_submit(user=clinician, answer_id=answer.pk, helpful=False, category="unsafe")
    feedback = Feedback.objects.get()
    assert (feedback.pk, feedback.category, feedback.reviewed_at) == (first.pk, "unsafe", None)
    feedback_submit(user=clinician, answer_id=answer.pk, helpful=True)
    feedback = Feedback.objects.get()
    assert feedback.helpful and feedback.category == ""
    assert last_event("feedback.submitted").details["updated"] is True


@pytest.mark.parametrize(
    ("helpful", "category", "comment", "message"),
    [
        (False, "", "", "Choose what was wrong"),
        (True, "unsafe", "", "leave it empty for a helpful answer"),
        (False, "boring", "", "Unknown category 'boring'; use one of: outdated, unsupported"),
        (
            False,
            "other",
            "x" * (FEEDBACK_COMMENT_MAX_CHARS + 1),
            f"limited to {FEEDBACK_COMMENT_MAX_CHARS} characters; this one has "
            f"{FEEDBACK_COMMENT_MAX_CHARS + 1}",
        ),
    ],
)
def test_invalid_feedback_is_rejected_with_a_reason(
    clinician: User, helpful: bool, category: str, comment: str, message: str
) -> None:
    answer = finished(clinician)
    with pytest.raises(FeedbackRejected, match=message.replace("(", r"\(")):
        feedback_submit(
            user=clinician, answer_id=answer.pk, helpful=helpful, category=category, comment=comment
        )
    assert not Feedback.objects.exists()


def test_feedback_waits_until_the_answer_has_finished(clinician: User) -> None:
    answer = services.question_ask(user=clinician, text="What is the target INR on warfarin?")
    with pytest.raises(FeedbackRejected, match="once the answer has finished"):
        feedback_submit(user=clinician, answer_id=answer.pk, helpful=True)


def test_only_the_answers_own_clinician_can_give_feedback(clinician: User) -> None:
    answer = finished(clinician)
    with pytest.raises(FeedbackNotFound):
        feedback_submit(user=other_clinician(clinician), answer_id=answer.pk, helpful=True)
    assert not Feedback.objects.exists()
    event = last_event("feedback.submitted")
    assert (event.actor, event.outcome, event.object_id) == (
        "other-clinician",
        "failure",
        str(answer.pk),
    )


# ------------------------------------------------------------------------ feedback API


def test_clinician_posts_feedback_as_json_and_sees_it_when_reopening_the_answer(
    clinician: User,
) -> None:
    answer = finished(clinician)
    client = client_for(clinician)
    response = client.post(
        f"/api/answers/{answer.pk}/feedback/",
        data=json.dumps({"helpful": False, "category": "wrong_citation", "comment": "S2 is CKD"}),
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["message"] == "Thanks — recorded"
    reopened = client.get(f"/api/answers/{answer.pk}/").json()
    assert reopened["feedback"]["helpful"] is False
    assert reopened["feedback"]["category"] == "wrong_citation"
    assert reopened["feedback"]["comment"] == "S2 is CKD"


def test_a_form_post_works_too(clinician: User) -> None:
    answer = finished(clinician)
    response = client_for(clinician).post(
        f"/api/answers/{answer.pk}/feedback/", {"helpful": "yes", "comment": "clear"}
    )
    assert response.status_code == 200
    assert Feedback.objects.get().helpful is True


def test_an_answer_without_feedback_says_so(clinician: User) -> None:
    answer = finished(clinician)
    assert client_for(clinician).get(f"/api/answers/{answer.pk}/").json()["feedback"] is None


def test_the_feedback_endpoint_requires_the_csrf_token(clinician: User) -> None:
    answer = finished(clinician)
    client = client_for(clinician, enforce_csrf_checks=True)
    url = f"/api/answers/{answer.pk}/feedback/"
    body = json.dumps({"helpful": True})
    assert client.post(url, body, content_type="application/json").status_code == 403
    client.get("/ask/")  # the page sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    response = client.post(url, body, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        ("{not json", "application/json", "not valid JSON"),
        ("[1, 2]", "application/json", "Send a JSON object"),
        ("{}", "application/json", "helpful must be true or false"),
        ('{"helpful": "perhaps"}', "application/json", "helpful must be true or false"),
        ('{"helpful": false, "category": 3}', "application/json", "must be text"),
        ('{"helpful": false}', "application/json", "Choose what was wrong"),
    ],
)
def test_bad_feedback_requests_get_a_400_with_the_reason(
    clinician: User, body: str, content_type: str, message: str
) -> None:
    answer = finished(clinician)
    response = client_for(clinician).post(
        f"/api/answers/{answer.pk}/feedback/", body, content_type=content_type
    )
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_feedback_on_someone_elses_answer_is_not_found(clinician: User) -> None:
    answer = finished(clinician)
    response = client_for(other_clinician(clinician)).post(
        f"/api/answers/{answer.pk}/feedback/", {"helpful": "true"}
    )
    assert response.status_code == 404
    assert response.json() == {"error": "Answer not found."}


# ---------------------------------------------------------------------- review queue


def unhelpful(clinician: User, text: str, category: str, comment: str = "") -> Feedback:
    passage = Passage.objects.select_related("guideline").order_by("pk").first()
    assert passage is not None
    answer = finished(
        clinician,
        text,
        status=AnswerStatus.COMPLETE,
        text="Anticoagulate when CHA2DS2-VASc is 2 or more [S1].",
        message="",
    )
    Citation.objects.create(answer=answer, number=1, passage=passage, score=0.71, cited=True)
    return feedback_submit(
        user=clinician, answer_id=answer.pk, helpful=False, category=category, comment=comment
    )


def test_admins_see_unhelpful_feedback_newest_first_with_its_answer_and_sources(
    clinician: User, guideline_admin: User
) -> None:
    older = unhelpful(clinician, "Older question about warfarin?", "outdated", "Uses 2019 advice")
    newer = unhelpful(clinician, "Newer question about apixaban?", "unsafe", "Dose too high")
    feedback_submit(user=clinician, answer_id=finished(clinician).pk, helpful=True)
    response = client_for(guideline_admin).get("/guidelines/feedback/")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.index("Newer question about apixaban?") < html.index("Older question about")
    assert html.count('class="feedback-item"') == 2, "helpful feedback is not queued"
    assert "Unsafe" in html and "Dose too high" in html and "Outdated guidance" in html
    assert "Anticoagulate when CHA2DS2-VASc is 2 or more [S1]." in html
    title = Citation.objects.get(answer=newer.answer).passage.guideline.title
    assert title in html
    event = last_event("feedback.queue_viewed")
    assert event.actor == "guideline-admin"
    assert event.details["feedback_ids"] == [newer.pk, older.pk]


def test_marking_feedback_reviewed_takes_it_off_the_queue_and_is_audited(
    clinician: User, guideline_admin: User
) -> None:
    feedback = unhelpful(clinician, "Question about rate control?", "other")
    client = client_for(guideline_admin)
    response = client.post(f"/guidelines/feedback/{feedback.pk}/review/")
    assert response.status_code == 302 and response["Location"] == "/guidelines/feedback/"
    feedback.refresh_from_db()
    assert feedback.reviewed_by == guideline_admin and feedback.reviewed_at is not None
    event = last_event("feedback.reviewed")
    assert (event.actor, event.object_type, event.object_id) == (
        "guideline-admin",
        "feedback",
        str(feedback.pk),
    )
    assert (
        "Question about rate control?" not in client.get("/guidelines/feedback/").content.decode()
    )
    shown = client.get("/guidelines/feedback/?reviewed=1").content.decode()
    assert "Question about rate control?" in shown and "reviewed by guideline-admin" in shown
    # Twice is harmless and not audited again.
    assert not feedback_review(user=guideline_admin, feedback_id=feedback.pk)
    assert AuditEvent.objects.filter(action="feedback.reviewed").count() == 1


def test_helpful_feedback_cannot_be_marked_reviewed(clinician: User, guideline_admin: User) -> None:
    feedback = feedback_submit(user=clinician, answer_id=finished(clinician).pk, helpful=True)
    response = client_for(guideline_admin).post(f"/guidelines/feedback/{feedback.pk}/review/")
    assert response.status_code == 404


# ------------------------------------------------------------------------ history search


def test_history_search_matches_every_word_in_questions_and_answers(clinician: User) -> None:
    finished(clinician, "Warfarin target INR for a mechanical valve?")
    finished(
        clinician,
        "Anticoagulation in atrial fibrillation?",
        status=AnswerStatus.COMPLETE,
        text="Offer apixaban when CHA2DS2-VASc is 2 or more.",
        message="",
    )
    finished(clinician, "Statins in CKD?")
    finished(other_clinician(clinician), "Apixaban dose in warfarin-naive AF?")

    def search(query: str) -> list[str]:
        return [t.question for t in selectors.thread_list_for_user(user=clinician, query=query)]

    assert search("WARFARIN") == ["Warfarin target INR for a mechanical valve?"]
    assert search("apixaban") == ["Anticoagulation in atrial fibrillation?"], "answer text"
    assert search("atrial  apixaban") == ["Anticoagulation in atrial fibrillation?"]
    assert search("atrial statins") == []
    # Refusal messages are searched too.
    assert search("relevant passage") == [
        "Statins in CKD?",
        "Warfarin target INR for a mechanical valve?",
    ]
    assert len(search("")) == 3


def test_history_search_endpoint_and_page_filter_the_clinicians_own_history(
    clinician: User,
) -> None:
    answer = finished(clinician, "Warfarin target INR for a mechanical valve?")
    finished(clinician, "Statins in CKD?")
    client = client_for(clinician)
    data = client.get("/api/history/", {"q": "warfarin"}).json()
    assert data["query"] == "warfarin"
    assert data["results"] == [
        {
            "answer_id": answer.pk,
            "thread_id": answer.question.pk,
            "question": "Warfarin target INR for a mechanical valve?",
            "turns": 1,
            "status": "refused",
            "asked_at": answer.question.created_at.isoformat(),
        }
    ]
    html = client.get("/ask/", {"q": "warfarin"}).content.decode()
    assert "Warfarin target INR" in html and "Statins in CKD?" not in html
    assert "1 match for" in html
    assert "Nothing matches." in client.get("/ask/", {"q": "zebra"}).content.decode()
