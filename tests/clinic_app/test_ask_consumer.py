"""The websocket protocol, in-process (embedded default): real consumer, layer and model."""

from __future__ import annotations

from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User

from clinic_app.answers.consumers import CLOSE_FORBIDDEN, MAX_MESSAGE_BYTES
from clinic_app.asgi import application
from tests.conftest import ANSWERABLE_QUESTION, OFF_TOPIC_QUESTION

pytestmark = [pytest.mark.usefixtures("seeded_db"), pytest.mark.asyncio]


def session_cookie(user: User) -> bytes:
    """A real signed-in session: the consumer re-checks it on every message."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def connect(user: User | None) -> tuple[WebsocketCommunicator, bool, Any]:
    from channels.db import database_sync_to_async

    headers = [(b"origin", b"http://127.0.0.1:8000"), (b"host", b"127.0.0.1:8000")]
    if user is not None:
        headers.append((b"cookie", await database_sync_to_async(session_cookie)(user)))
    communicator = WebsocketCommunicator(application, "/ws/ask/", headers=headers)
    connected, code = await communicator.connect(timeout=10)
    return communicator, connected, code


async def receive_until_done(
    ws: WebsocketCommunicator, timeout: float = 180
) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while True:
        event = await ws.receive_json_from(timeout=timeout)
        events.append(event)
        if event["type"] in ("done", "error"):
            return events


async def users() -> dict[str, User]:
    from channels.db import database_sync_to_async

    return await database_sync_to_async(lambda: {u.username: u for u in User.objects.all()})()


async def test_anonymous_and_non_clinicians_cannot_open_the_socket() -> None:
    all_users = await users()
    for user in (None, all_users["auditor"], all_users["guideline-admin"]):
        ws, connected, code = await connect(user)
        assert not connected and code == CLOSE_FORBIDDEN
        await ws.disconnect()


async def test_open_websockets_are_counted_for_the_metrics() -> None:
    from prometheus_client import REGISTRY

    def gauge() -> float:
        return REGISTRY.get_sample_value("clinic_websockets_open") or 0.0

    all_users = await users()
    before = gauge()
    ws, connected, _ = await connect(all_users["clinician"])
    assert connected and gauge() == before + 1
    refused, connected_too, _ = await connect(all_users["auditor"])
    assert not connected_too and gauge() == before + 1  # a refused socket is not counted
    await refused.disconnect()
    await ws.disconnect()
    assert gauge() == before


async def test_foreign_origin_is_rejected() -> None:
    all_users = await users()
    ws = WebsocketCommunicator(
        application, "/ws/ask/", headers=[(b"origin", b"http://evil.example")]
    )
    ws.scope["user"] = all_users["clinician"]
    connected, _ = await ws.connect(timeout=10)
    assert not connected
    await ws.disconnect()


async def test_answer_streams_in_ordered_chunks_then_done_with_the_persisted_answer() -> None:
    ws, connected, _ = await connect((await users())["clinician"])
    assert connected
    await ws.send_json_to({"action": "ask", "question": ANSWERABLE_QUESTION})
    events = await receive_until_done(ws)
    assert events[0]["type"] == "accepted"
    chunks = [e for e in events if e["type"] == "chunk"]
    assert len(chunks) >= 2, "text arrives in several increments"
    assert [c["seq"] for c in chunks] == list(range(1, len(chunks) + 1))
    done = events[-1]
    assert done["type"] == "done" and done["answer"]["status"] == "complete"
    assert done["seq"] == len(chunks)
    streamed = "".join(c["text"] for c in chunks)
    assert done["answer"]["text"].strip() and streamed.strip()
    assert done["answer"]["citations"][0]["passage"]["guideline"]["title"]
    # Evidence first: the sources' own sentences arrive before the model's first text.
    kinds = [e["type"] for e in events]
    assert "evidence" in kinds and kinds.index("evidence") < kinds.index("chunk")
    evidence = events[kinds.index("evidence")]["evidence"]
    assert evidence and evidence == done["answer"]["evidence"]
    assert all(e["guideline"]["title"] and e["text"] for e in evidence)
    await ws.disconnect()


async def test_off_topic_question_gets_a_refusal_event() -> None:
    ws, _, _ = await connect((await users())["clinician"])
    await ws.send_json_to({"action": "ask", "question": OFF_TOPIC_QUESTION})
    events = await receive_until_done(ws)
    assert events[-1]["answer"]["status"] == "refused"
    assert not [e for e in events if e["type"] == "chunk"]
    await ws.disconnect()


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("{not json", "Malformed message."),
        ('{"action": "dance"}', "Unknown action."),
        ('{"action": "ask", "question": "' + "x" * 1200 + '"}', "limited to 1000 characters"),
        (
            '{"action": "ask", "question": "' + "x" * (MAX_MESSAGE_BYTES + 1) + '"}',
            "Message too large",
        ),
        ('{"action": "cancel", "answer_id": "7"}', "Malformed cancel request."),
        ('{"action": "follow", "answer_id": 999999}', "No such answer of yours."),
    ],
)
async def test_bad_messages_get_a_clear_error_and_the_socket_stays_open(
    message: str, expected: str
) -> None:
    ws, _, _ = await connect((await users())["clinician"])
    await ws.send_to(text_data=message)
    event = await ws.receive_json_from(timeout=10)
    assert event["type"] == "error" and expected in event["message"]
    await ws.send_to(text_data='{"action": "dance"}')
    assert (await ws.receive_json_from(timeout=10))["type"] == "error"
    await ws.disconnect()


async def test_following_an_answer_whose_task_was_lost_ends_it_with_a_clear_failure() -> None:
    """An answer left streaming past the task time limit plus the broker's redelivery window
    (its task was lost, e.g. while the database was down) is failed when the page resumes it,
    instead of leaving the clinician waiting; a fresh one is left alone."""
    from datetime import timedelta

    from channels.db import database_sync_to_async
    from django.utils import timezone

    from clinic_app.answers import services
    from clinic_app.models import Answer, AnswerStatus, AuditEvent

    clinician = (await users())["clinician"]

    def streaming_answer(age: timedelta) -> int:
        answer = services.question_ask(user=clinician, text=ANSWERABLE_QUESTION)
        Answer.objects.filter(pk=answer.pk).update(
            status=AnswerStatus.STREAMING,
            attempts=1,
            text="The first part",
            started_at=timezone.now() - age,
        )
        return answer.pk

    from prometheus_client import REGISTRY

    def expired() -> float:
        return REGISTRY.get_sample_value("clinic_answers_total", {"outcome": "expired"}) or 0.0

    expired_before = expired()
    limit = services.answer_stale_after()
    lost = await database_sync_to_async(streaming_answer)(limit + timedelta(seconds=5))
    fresh = await database_sync_to_async(streaming_answer)(limit - timedelta(seconds=60))
    ws, connected, _ = await connect(clinician)
    assert connected
    await ws.send_json_to({"action": "follow", "answer_id": lost})
    snapshot = await ws.receive_json_from(timeout=10)
    assert snapshot["type"] == "snapshot"
    assert snapshot["answer"]["status"] == "failed"
    assert snapshot["answer"]["message"] == services.STALE_MESSAGE
    assert snapshot["answer"]["text"] == "The first part"  # what was saved is kept
    assert expired() == expired_before + 1  # counted as expired, not as an ordinary failure
    await ws.send_json_to({"action": "follow", "answer_id": fresh})
    snapshot = await ws.receive_json_from(timeout=10)
    assert snapshot["answer"]["status"] == "streaming"
    await ws.disconnect()
    audited = await database_sync_to_async(
        lambda: list(AuditEvent.objects.filter(action="answer.failed").values_list("object_id"))
    )()
    assert audited == [(str(lost),)]


async def test_a_follow_up_continues_only_the_askers_own_conversation() -> None:
    """Issue 16: ``follow_up_of`` over the socket; a second clinician's attempt on the first
    one's answer gets the same reply as any answer not theirs, and nothing is asked."""
    from channels.db import database_sync_to_async

    from clinic_app.models import AuditEvent, Question

    def second_clinician() -> User:
        clinician = User.objects.get(username="clinician")
        user, _ = User.objects.get_or_create(username="ws-second-clinician")
        user.groups.add(*clinician.groups.all())
        return user

    owner = (await users())["clinician"]
    other = await database_sync_to_async(second_clinician)()
    ws, _, _ = await connect(owner)
    await ws.send_json_to({"action": "ask", "question": OFF_TOPIC_QUESTION})
    first = (await receive_until_done(ws))[-1]["answer"]
    assert first["turn"] == 1 and first["thread_id"]

    intruder, connected, _ = await connect(other)
    assert connected
    before = await database_sync_to_async(Question.objects.filter(user=other).count)()
    await intruder.send_json_to(
        {"action": "ask", "question": "And in pregnancy?", "follow_up_of": first["id"]}
    )
    refused = await intruder.receive_json_from(timeout=10)
    assert refused == {
        "type": "error",
        "message": "No such answer of yours.",
        "answer_id": first["id"],
    }
    assert await database_sync_to_async(Question.objects.filter(user=other).count)() == before
    assert await database_sync_to_async(
        AuditEvent.objects.filter(
            action="answer.access_denied", actor=other.username, object_id=str(first["id"])
        ).exists
    )()
    await intruder.send_json_to({"action": "ask", "question": "And?", "follow_up_of": "7"})
    malformed = await intruder.receive_json_from(timeout=10)
    assert "Malformed follow-up" in malformed["message"]
    await intruder.disconnect()

    await ws.send_json_to(
        {"action": "ask", "question": "And who won in 2014?", "follow_up_of": first["id"]}
    )
    events = await receive_until_done(ws)
    accepted = events[0]
    assert accepted["type"] == "accepted" and accepted["follow_up_of"] == first["id"]
    assert accepted["turn"] == 2 and accepted["thread_id"] == first["thread_id"]
    done = events[-1]["answer"]
    assert done["follow_up_of"] == first["id"] and done["thread_id"] == first["thread_id"]
    await ws.disconnect()
