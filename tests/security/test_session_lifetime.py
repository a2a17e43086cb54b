"""Session lifetime, attacked for real on the live server: a planted session key must not survive
sign-in, and a session past its idle or absolute limit must lose the pages and its socket.

The server runs with short limits (idle 3 s, absolute 8 s) so that the clocks run out in-test."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from clinic_app.answers.consumers import CLOSE_SESSION_ENDED, SESSION_ENDED
from tests.live import Server
from tests.security.ws_stack import (
    PASSWORD,
    audit_events,
    clinicians_create,
    close_code,
    closed_after,
    get,
    open_socket,
    recv,
    send,
    sign_in,
    ws_stack,
)

IDLE_S = 3
ABSOLUTE_S = 8


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with ws_stack(
        "sec-sessions",
        SESSION_IDLE_SECONDS=str(IDLE_S),
        SESSION_ABSOLUTE_SECONDS=str(ABSOLUTE_S),
    ) as live:
        clinicians_create(live, "ses-victim", "ses-idle", "ses-absolute")
        yield live


def sign_in_with(server: Server, planted: str, username: str) -> httpx.Response:
    """The real login form, submitted by a browser that carries a session key someone planted."""
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        client.cookies.set("sessionid", planted)
        page = client.get("/login/")
        match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert match, "the login form has a CSRF token"
        response = client.post(
            "/login/",
            data={"username": username, "password": PASSWORD, "csrfmiddlewaretoken": match[1]},
            headers={"Referer": f"{server.base_url}/login/"},
        )
        assert response.status_code == 302, response.status_code
        return response


def test_sign_in_does_not_keep_a_planted_session_key(server: Server) -> None:
    """Session fixation: an attacker plants their own valid session key (or an invented one) in
    the victim's browser; after the victim signs in, the key in use must be a new one, and the
    planted key must not lead into the victim's account."""
    attacker = sign_in(server, "clinician")["sessionid"]
    for planted in (attacker, "x" * 32):
        response = sign_in_with(server, planted, "ses-victim")
        victim_key = response.cookies.get("sessionid")
        assert victim_key and victim_key != planted, "the key before sign-in was kept"
        assert get(server, {"sessionid": victim_key}, "/ask/").status_code == 200
        planted_page = get(server, {"sessionid": planted}, "/ask/")
        assert planted_page.status_code == 302, "the planted key reaches a signed-in page"


def test_idle_session_loses_its_pages_and_its_socket(server: Server) -> None:
    signed_in = time.monotonic()
    with_socket = sign_in(server, "ses-idle")
    without = sign_in(server, "ses-idle")  # a second session, used over HTTP only
    assert get(server, without, "/ask/").status_code == 200
    ws = open_socket(server, with_socket)
    with ws:
        send(ws, action="dance")
        assert recv(ws, timeout=10)["message"] == "Unknown action."
        quiet_from = time.monotonic()
        # Silent from here: the server closes the socket itself once the idle limit passes
        # (counted from its last recorded activity, somewhere between sign-in and now).
        events, closed = closed_after(ws, timeout=IDLE_S + 5)
        assert events == [{"type": "error", "message": SESSION_ENDED}], events
        assert close_code(ws) == CLOSE_SESSION_ENDED
        assert closed - signed_in >= IDLE_S - 0.2 and closed - quiet_from <= IDLE_S + 2
    assert get(server, with_socket, "/ask/").status_code == 302
    time.sleep(max(0.0, IDLE_S + 0.5 - (time.monotonic() - quiet_from)))
    response = get(server, without, "/ask/")
    assert response.status_code == 302 and "/login/" in response.headers["Location"]
    reasons = [
        e["details"]["reason"]
        for e in audit_events(server, "auth.session_expired")
        if e["actor"] == "ses-idle"
    ]
    assert reasons == ["idle", "idle"], reasons


def test_active_session_still_ends_at_its_absolute_lifetime(server: Server) -> None:
    signed_in = time.monotonic()
    cookies = sign_in(server, "ses-absolute")
    ws = open_socket(server, cookies)
    alive: list[float] = []
    ended_at = None
    with ws:
        # Busy well past the idle limit: every second a page and a websocket message.
        while (elapsed := time.monotonic() - signed_in) < ABSOLUTE_S + 4:
            if get(server, cookies, "/ask/").status_code != 200:
                ended_at = elapsed
                break
            try:
                send(ws, action="dance")
                reply = recv(ws, timeout=10)
            except ConnectionClosed:
                ended_at = elapsed
                break
            if reply["message"] != "Unknown action.":
                assert reply["message"] == SESSION_ENDED, reply
                ended_at = elapsed
                break
            alive.append(elapsed)
            time.sleep(1.0)
        closed_after(ws, timeout=5)
        assert close_code(ws) == CLOSE_SESSION_ENDED
    assert alive and max(alive) > IDLE_S + 1, "activity kept it past the idle limit"
    assert ended_at is not None and ABSOLUTE_S - 0.2 <= ended_at <= ABSOLUTE_S + 3, ended_at
    assert get(server, cookies, "/ask/").status_code == 302
    reasons = [
        e["details"]["reason"]
        for e in audit_events(server, "auth.session_expired")
        if e["actor"] == "ses-absolute"
    ]
    assert reasons == ["absolute"], reasons
