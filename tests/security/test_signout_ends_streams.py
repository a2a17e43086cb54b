"""Ending a session or an account ends its open websockets, for real: sign-out over HTTP, and
password change, deactivation and role removal made by another process (``manage.py shell``,
as an administrator would), which reach the server through the Redis channel layer."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from websockets.sync.client import ClientConnection

from clinic_app.answers.consumers import (
    CLOSE_FORBIDDEN,
    CLOSE_SESSION_ENDED,
    ROLE_LOST,
    SESSION_ENDED,
)
from tests.live import Server
from tests.security.ws_stack import (
    clinicians_create,
    close_code,
    closed_after,
    csrf_post,
    get,
    open_socket,
    pending_answers_create,
    recv,
    send,
    shell,
    sign_in,
    ws_stack,
)

USERS = ("so-logout", "so-password", "so-inactive", "so-role", "so-flushed")


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with ws_stack("sec-signout") as live:
        clinicians_create(live, *USERS)
        yield live


def following_an_answer(server: Server, username: str, cookies: dict[str, str]) -> ClientConnection:
    """A socket subscribed to one of the user's unfinished answers: a stream in progress."""
    (answer_id,) = pending_answers_create(server, username, 1)
    ws = open_socket(server, cookies)
    send(ws, action="follow", answer_id=answer_id)
    assert recv(ws, timeout=10)["type"] == "snapshot"
    return ws


def change_elsewhere(server: Server, username: str, change: str) -> float:
    """Apply ``change`` to ``user`` in another process; the wall-clock time just before it."""
    return float(
        shell(
            server,
            "import json, time\n"
            "from django.contrib.auth.models import Group, User\n"
            f"user = User.objects.get(username={username!r})\n"
            "before = time.time()\n"
            f"{change}\n"
            "print(json.dumps(before))",
        )
    )


def assert_ended(ws: ClientConnection, since_wall: float, code: int, message: str) -> None:
    events, closed_mono = closed_after(ws, timeout=15)
    elapsed = time.time() - (time.monotonic() - closed_mono) - since_wall
    assert close_code(ws) == code, (close_code(ws), events)
    assert events and events[-1] == {"type": "error", "message": message}, events
    assert elapsed < 2.0, f"the socket closed {elapsed:.2f} s after the change"


def test_signing_out_closes_the_sessions_open_socket_within_two_seconds(server: Server) -> None:
    cookies = sign_in(server, "so-logout")
    other_workstation = sign_in(server, "so-logout")
    ws = following_an_answer(server, "so-logout", cookies)
    other = open_socket(server, other_workstation)
    with ws, other:
        started = time.time()
        response = csrf_post(server, cookies, "/logout/")
        assert response.status_code == 302, response.status_code
        assert_ended(ws, started, CLOSE_SESSION_ENDED, SESSION_ENDED)
        # The same clinician's session elsewhere was not signed out: its socket goes on.
        send(other, action="dance")
        assert recv(other, timeout=10)["message"] == "Unknown action."


def test_password_change_closes_open_sockets_within_two_seconds(server: Server) -> None:
    ws = following_an_answer(server, "so-password", sign_in(server, "so-password"))
    with ws:
        changed = change_elsewhere(
            server, "so-password", "user.set_password('another-password-456')\nuser.save()"
        )
        assert_ended(ws, changed, CLOSE_SESSION_ENDED, SESSION_ENDED)


def test_deactivation_closes_open_sockets_within_two_seconds(server: Server) -> None:
    cookies = sign_in(server, "so-inactive")
    ws = following_an_answer(server, "so-inactive", cookies)
    with ws:
        changed = change_elsewhere(server, "so-inactive", "user.is_active = False\nuser.save()")
        assert_ended(ws, changed, CLOSE_SESSION_ENDED, SESSION_ENDED)
    assert get(server, cookies, "/ask/").status_code == 302  # and the page is gone too


def test_role_removal_closes_open_sockets_within_two_seconds(server: Server) -> None:
    ws = following_an_answer(server, "so-role", sign_in(server, "so-role"))
    with ws:
        changed = change_elsewhere(
            server, "so-role", "user.groups.remove(Group.objects.get(name='clinician'))"
        )
        assert_ended(ws, changed, CLOSE_FORBIDDEN, ROLE_LOST)


def test_socket_whose_session_was_deleted_server_side_is_refused_on_next_message(
    server: Server,
) -> None:
    cookies = sign_in(server, "so-flushed")
    ws = following_an_answer(server, "so-flushed", cookies)
    with ws:
        # A bulk delete sends no signal: only the per-message check can notice.
        deleted = shell(
            server,
            "import json\nfrom django.contrib.sessions.models import Session\n"
            f"print(json.dumps(Session.objects.filter(pk={cookies['sessionid']!r}).delete()[0]))",
        )
        assert deleted == 1
        send(ws, action="ask", question="Which patients with atrial fibrillation need DOACs?")
        events, _ = closed_after(ws, timeout=10)
        assert events == [{"type": "error", "message": SESSION_ENDED}], events
        assert close_code(ws) == CLOSE_SESSION_ENDED
    assert not shell(
        server,
        "import json\nfrom clinic_app.models import Question\n"
        "print(json.dumps(Question.objects.filter(user__username='so-flushed')"
        ".exclude(text__startswith='Pending').exists()))",
    ), "the question of a dead session was recorded"
