"""Websocket authorisation, attacked for real: one clinician reaching another's answers over the
live ASGI server (uvicorn, Redis channel layer, embedded model), and the per-socket caps."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from websockets.sync.client import ClientConnection

from clinic_app.answers.consumers import NOT_YOURS
from tests.conftest import ANSWERABLE_QUESTION, OFF_TOPIC_QUESTION
from tests.live import Server
from tests.security.ws_stack import (
    audit_events,
    clinicians_create,
    open_socket,
    pending_answers_create,
    received_within,
    recv,
    send,
    shell,
    sign_in,
    until,
    ws_stack,
)

GROUP_CAP = 3


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with ws_stack(
        "sec-ws-authz",
        guidelines=("acc_aha_af_2023",),  # answers ANSWERABLE_QUESTION (atrial fibrillation)
        WS_MAX_GROUPS_PER_SOCKET=str(GROUP_CAP),
    ) as live:
        # "clinician" (A) is the demo account; B attacks; C fills its group cap.
        clinicians_create(live, "clinician-b", "clinician-c")
        yield live


def ask(ws: ClientConnection, question: str) -> int:
    send(ws, action="ask", question=question)
    accepted = recv(ws, timeout=30)
    assert accepted["type"] == "accepted", accepted
    return int(accepted["answer_id"])


def first_chunk(ws: ClientConnection) -> None:
    events = until(ws, "chunk", timeout=180)
    assert events[-1]["type"] == "chunk", events


def about(events: list[dict[str, object]], answer_id: int) -> list[dict[str, object]]:
    """The events that carry ``answer_id``'s content (quotes, chunks, snapshot, done)."""
    found = []
    for e in events:
        answer = e.get("answer")
        if e.get("type") in ("evidence", "chunk", "done", "snapshot") and (
            e.get("answer_id") == answer_id
            or (isinstance(answer, dict) and answer.get("id") == answer_id)
        ):
            found.append(e)
    return found


def test_clinician_cannot_follow_another_clinicians_streaming_answer(server: Server) -> None:
    a = open_socket(server, sign_in(server, "clinician"))
    b = open_socket(server, sign_in(server, "clinician-b"))
    with a, b:
        answer_id = ask(a, ANSWERABLE_QUESTION)
        first_chunk(a)
        send(b, action="follow", answer_id=answer_id)
        refusal = recv(b, timeout=10)
        assert refusal == {"type": "error", "message": NOT_YOURS, "answer_id": answer_id}
        done = until(a, "done", timeout=180)[-1]
        assert done["answer"]["status"] == "complete", done
        # A's answer has finished streaming: anything B was sent of it has arrived by now.
        leaked = about(received_within(b, 1.0), answer_id)
        assert leaked == [], f"B received A's answer: {leaked}"
    denied = [
        e for e in audit_events(server, "answer.access_denied") if e["actor"] == "clinician-b"
    ]
    assert {
        "actor": "clinician-b",
        "object_type": "answer",
        "object_id": str(answer_id),
        "outcome": "failure",
        "source_ip": "127.0.0.1",
        "details": {"request": "follow", "via": "websocket"},
    } in denied


def test_clinician_cannot_subscribe_to_an_answer_not_yet_asked(server: Server) -> None:
    next_id = shell(
        server,
        "import json\nfrom django.db.models import Max\nfrom clinic_app.models import Answer\n"
        "print(json.dumps((Answer.objects.aggregate(m=Max('pk'))['m'] or 0) + 1))",
    )
    a = open_socket(server, sign_in(server, "clinician"))
    b = open_socket(server, sign_in(server, "clinician-b"))
    with a, b:
        send(b, action="follow", answer_id=next_id)
        assert recv(b, timeout=10)["message"] == NOT_YOURS
        # A refusal is quick and still publishes its final event to the answer's group.
        assert ask(a, OFF_TOPIC_QUESTION) == next_id
        done = until(a, "done", timeout=120)[-1]
        assert done["answer"]["status"] == "refused"
        leaked = about(received_within(b, 1.0), next_id)
        assert leaked == [], f"B received A's new answer: {leaked}"


def test_clinician_cannot_cancel_another_clinicians_answer(server: Server) -> None:
    a = open_socket(server, sign_in(server, "clinician"))
    b = open_socket(server, sign_in(server, "clinician-b"))
    with a, b:
        answer_id = ask(a, ANSWERABLE_QUESTION)
        first_chunk(a)
        send(b, action="cancel", answer_id=answer_id)
        assert recv(b, timeout=10) == {
            "type": "error",
            "message": NOT_YOURS,
            "answer_id": answer_id,
        }
        done = until(a, "done", timeout=180)[-1]
        assert done["answer"]["status"] == "complete", "B's cancel stopped A's answer"
        # A's own cancel of a finished answer keeps its own message.
        send(a, action="cancel", answer_id=answer_id)
        assert recv(a, timeout=10)["message"] == "That answer is not running."
    denied = audit_events(server, "answer.access_denied")
    assert any(
        e["object_id"] == str(answer_id) and e["details"]["request"] == "cancel" for e in denied
    )
    assert not [e for e in audit_events(server, "answer.cancel_requested")]


def test_refusal_does_not_reveal_whether_an_answer_exists(server: Server) -> None:
    (existing,) = pending_answers_create(server, "clinician-c", 1)  # someone else's answer
    b = open_socket(server, sign_in(server, "clinician-b"))
    with b:
        replies = []
        for action in ("follow", "cancel"):
            for answer_id in (existing, 10**9):
                send(b, action=action, answer_id=answer_id)
                reply = recv(b, timeout=10)
                replies.append({k: v for k, v in reply.items() if k != "answer_id"})
    assert replies == [{"type": "error", "message": NOT_YOURS}] * 4


def test_one_socket_cannot_join_answer_groups_without_limit(server: Server) -> None:
    answers = pending_answers_create(server, "clinician-c", GROUP_CAP + 1)
    c = open_socket(server, sign_in(server, "clinician-c"))
    with c:
        for answer_id in answers[:GROUP_CAP]:
            send(c, action="follow", answer_id=answer_id)
            snapshot = recv(c, timeout=10)
            assert snapshot["type"] == "snapshot" and snapshot["answer"]["status"] == "pending"
        send(c, action="follow", answer_id=answers[GROUP_CAP])
        refused = recv(c, timeout=10)
        assert (
            refused["type"] == "error" and f"follows {GROUP_CAP} unfinished" in refused["message"]
        )
        send(c, action="ask", question=ANSWERABLE_QUESTION)
        refused = recv(c, timeout=10)
        assert (
            refused["type"] == "error" and f"follows {GROUP_CAP} unfinished" in refused["message"]
        )
        # Following one it already follows is no new group, and the socket is still open.
        send(c, action="follow", answer_id=answers[0])
        assert recv(c, timeout=10)["type"] == "snapshot"


def test_one_socket_cannot_flood_the_server_with_messages(server: Server) -> None:
    b = open_socket(server, sign_in(server, "clinician-b"))
    with b:
        burst = 25
        for _ in range(burst):
            send(b, action="dance")
        replies = [recv(b, timeout=10) for _ in range(burst)]
        handled = [r for r in replies if r["message"] == "Unknown action."]
        dropped = [r for r in replies if r["message"].startswith("Too many messages")]
        assert len(handled) + len(dropped) == burst, replies
        # The default: 10 per second. The burst is sent well within a second of its first.
        assert 10 <= len(handled) < burst and dropped, replies
        assert "at most 10 per second" in dropped[0]["message"]
        time.sleep(1.1)
        send(b, action="dance")
        assert recv(b, timeout=10)["message"] == "Unknown action.", "the socket stays usable"
