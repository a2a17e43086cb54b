"""Upload-sized request bodies only from signed-in guideline admins (ASVS 12.1 / 13.1: DoS).

Django spools a request body to disk before any view runs, so the ASGI edge decides how much
to accept from the headers alone. The upload limit (hundreds of MB) must not be open to anyone
who can reach the login page: anonymous visitors, clinicians and auditors get the small limit
and a 413 before their body is read. All attacks are sent over sockets to the real server.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.live import Server
from tests.security.live_app import cookies_for, live_instance

SMALL_LIMIT = 10_000_000  # max(2 * DATA_UPLOAD_MAX_MEMORY_SIZE, 10 MB) with the defaults
REFUSED = b"HTTP/1.1 413"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    # The default upload limit (512 MB): far above what anyone but an admin may send.
    with live_instance("upload-limit") as instance:
        yield instance


def _head(server: Server, cookies: dict[str, str] | None, extra: str) -> bytes:
    cookie = "; ".join(f"{k}={v}" for k, v in (cookies or {}).items())
    return (
        "POST /guidelines/upload/ HTTP/1.1\r\n"
        f"Host: {server.host}:{server.port}\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\n"
        + (f"Cookie: {cookie}\r\n" if cookie else "")
        + extra
        + "\r\n"
    ).encode()


def _reply(sock: socket.socket, wait: float) -> bytes:
    """The status line and headers the server sends within ``wait`` seconds (b"" if none)."""
    sock.settimeout(wait)
    reply = b""
    try:
        while b"\r\n\r\n" not in reply:
            data = sock.recv(65536)
            if not data:
                break
            reply += data
    except (TimeoutError, ConnectionResetError):
        pass
    return reply


def declare(server: Server, length: int, cookies: dict[str, str] | None = None) -> bytes:
    """Send only the headers of an upload declaring ``length`` bytes; the server's answer."""
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(_head(server, cookies, f"Content-Length: {length}\r\n"))
        return _reply(sock, wait=10)


@pytest.mark.parametrize("who", ["anonymous", "clinician"])
def test_an_upload_declaring_50_gb_is_refused_at_once(server: Server, who: str) -> None:
    cookies = None if who == "anonymous" else cookies_for(server, who)
    started = time.monotonic()
    assert declare(server, 50_000_000_000, cookies).startswith(REFUSED)
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("who", ["anonymous", "clinician", "auditor"])
def test_only_a_guideline_admin_may_declare_an_upload_sized_body(server: Server, who: str) -> None:
    """100 MB is within the upload limit: refused at once for everyone but a guideline admin."""
    cookies = None if who == "anonymous" else cookies_for(server, who)
    assert declare(server, 100_000_000, cookies).startswith(REFUSED)


def test_a_forged_session_cookie_gets_the_small_limit(server: Server) -> None:
    forged = {"sessionid": "x" * 32}
    assert declare(server, 100_000_000, forged).startswith(REFUSED)


def test_a_signed_out_admin_session_gets_the_small_limit(server: Server) -> None:
    """A session cookie copied before sign-out opens nothing at the edge afterwards."""
    cookies = cookies_for(server, "guideline-admin")
    with httpx.Client(base_url=server.base_url, cookies=cookies, timeout=30) as client:
        signed_out = client.post(
            "/logout/",
            data={"csrfmiddlewaretoken": cookies["csrftoken"]},
            headers={"Referer": f"{server.base_url}/guidelines/"},
        )
    assert signed_out.status_code == 302
    assert declare(server, 100_000_000, cookies).startswith(REFUSED)


def test_a_guideline_admin_upload_of_20_mb_is_not_refused_at_the_edge(server: Server) -> None:
    """The admin's body is read; what Django then makes of it (here: no CSRF token) is not the
    edge's concern."""
    cookies = cookies_for(server, "guideline-admin")
    with httpx.Client(base_url=server.base_url, cookies=cookies, timeout=120) as client:
        response = client.post(
            "/guidelines/upload/",
            content=b"x" * 20_000_000,
            headers={"Content-Type": "application/octet-stream"},
        )
    assert response.status_code != 413, response.text[:500]
    assert "refused before it was read" not in response.text


def test_an_anonymous_chunked_body_streaming_past_10_mb_is_cut_off(server: Server) -> None:
    """No length declared: the server must stop reading soon after the small limit, not take
    the 60 MB on offer."""
    offered = 60_000_000
    piece = b"x" * 1_000_000
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    sent = 0
    reply = b""
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(_head(server, None, "Transfer-Encoding: chunked\r\n"))
        try:
            while sent < offered:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:  # the server answered before the body ended
                    break
                sock.sendall(chunk)
                sent += len(piece)
            else:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the server stopped reading: what it answered is checked below
        reply = _reply(sock, wait=10)
    assert sent < offered, f"the whole body was taken; reply {reply[:100]!r}"
    assert sent >= SMALL_LIMIT - len(piece)  # up to the limit it is read like any body
    assert reply.startswith(REFUSED), reply[:200]
