"""A live stack for the websocket and session tests: uvicorn (``manage.py serve``) on a seeded
SQLite copy, with the channel layer and cache on the machine's Redis as in production (tasks
run in-process, so no worker is needed). Redis matters here: ``manage.py shell`` changes
(password, deactivation, role) reach the server's sockets only through a shared layer.

Seeding is done once per test run and copied per stack: with one guideline indexed (answers
stream) for the authorisation tests, with none (seconds) where no answer is generated.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import redis
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.live import Server, app_env, login_cookies, manage, start_server

PASSWORD = os.environ.get("DEMO_PASSWORD", "test-password-123")
# A database of its own: the stacks flush it, and the cache's keys (cancel flags) carry no prefix.
REDIS_URL = os.environ.get("TEST_SECURITY_REDIS_URL", "redis://127.0.0.1:6379/12")

_templates: dict[tuple[str, ...], Path] = {}


def _template(guidelines: tuple[str, ...]) -> Path:
    """A migrated database with the demo accounts and, if any, these guidelines indexed."""
    if guidelines not in _templates:
        path = Path(tempfile.mkdtemp(prefix="clinic-sec-seed-"))
        atexit.register(shutil.rmtree, path, True)
        env = app_env(path)
        manage(env, "migrate", "--noinput", "-v0")
        if guidelines:
            manage(env, "setup_demo", "--guidelines", ",".join(guidelines))
        else:
            manage(env, "setup_demo", "--skip-corpus", "-v0")
        _templates[guidelines] = path
    return _templates[guidelines]


@contextmanager
def ws_stack(name: str, *, guidelines: tuple[str, ...] = (), **overrides: str) -> Iterator[Server]:
    """Serve a copy of a seeded database; ``guidelines``: demo guideline ids to index (answers
    need some; the fewer, the quicker the seeding)."""
    var_dir = Path(tempfile.mkdtemp(prefix=f"clinic-{name}-"))
    shutil.copytree(_template(guidelines), var_dir, dirs_exist_ok=True)
    env = app_env(
        var_dir,
        REDIS_URL=REDIS_URL,
        CELERY_BROKER_URL="",  # tasks in-process; Redis only for the channel layer and cache
        # Pub/sub ignores the database number: a prefix of its own keeps other runs' events out.
        CHANNEL_LAYER_PREFIX=f"clinic-sec-{uuid.uuid4().hex[:10]}",
        # Short answers from one passage: the tests need a stream, not a good answer.
        ANSWER_MAX_TOKENS="16",
        RETRIEVAL_TOP_K="1",
        **overrides,
    )
    redis.Redis.from_url(REDIS_URL).flushdb()
    server = start_server(env, name=name)
    try:
        yield server
    finally:
        server.process.stop()
        redis.Redis.from_url(REDIS_URL).flushdb()
        shutil.rmtree(var_dir, ignore_errors=True)


def shell(server: Server, code: str) -> Any:
    """Run ``code`` in ``manage.py shell`` on the stack's database and channel layer; its last
    printed line is JSON and is returned."""
    out = manage(server.env, "shell", "-c", code)
    return json.loads(out.strip().splitlines()[-1])


def clinicians_create(server: Server, *usernames: str) -> None:
    shell(
        server,
        "import json\n"
        "from django.contrib.auth.models import Group, User\n"
        "group = Group.objects.get(name='clinician')\n"
        f"for name in {list(usernames)!r}:\n"
        "    user = User.objects.create_user(name, password=" + repr(PASSWORD) + ")\n"
        "    user.groups.add(group)\n"
        "print(json.dumps(True))",
    )


def pending_answers_create(server: Server, username: str, count: int) -> list[int]:
    """Answers recorded but never started: they stay unfinished, so a socket keeps following."""
    return list(
        shell(
            server,
            "import json\n"
            "from django.contrib.auth.models import User\n"
            "from clinic_app.answers import services\n"
            f"user = User.objects.get(username={username!r})\n"
            "ids = [services.question_ask(user=user, text=f'Pending question {i}', "
            "enforce_limits=False).pk\n"
            f"       for i in range({count})]\n"
            "print(json.dumps(ids))",
        )
    )


def audit_events(server: Server, action: str) -> list[dict[str, Any]]:
    return list(
        shell(
            server,
            "import json\n"
            "from clinic_app.models import AuditEvent\n"
            f"rows = AuditEvent.objects.filter(action={action!r}).order_by('seq')\n"
            "print(json.dumps([dict(actor=e.actor, object_type=e.object_type, "
            "object_id=e.object_id, outcome=e.outcome, source_ip=e.source_ip, "
            "details=e.details) for e in rows]))",
        )
    )


def sign_in(server: Server, username: str) -> dict[str, str]:
    return login_cookies(server.base_url, username, PASSWORD)


def open_socket(server: Server, cookies: dict[str, str]) -> ClientConnection:
    return connect(
        f"ws://{server.host}:{server.port}/ws/ask/",
        additional_headers={
            "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items()),
            "Origin": server.base_url,
        },
        open_timeout=10,
    )


def send(ws: ClientConnection, **message: Any) -> None:
    ws.send(json.dumps(message))


def recv(ws: ClientConnection, timeout: float = 30) -> dict[str, Any]:
    return dict(json.loads(ws.recv(timeout=timeout)))


def received_within(ws: ClientConnection, seconds: float) -> list[dict[str, Any]]:
    """Every message that arrives in the next ``seconds`` (the socket may close meanwhile)."""
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            events.append(recv(ws, timeout=left))
        except (TimeoutError, ConnectionClosed):
            break
    return events


def until(ws: ClientConnection, kind: str, timeout: float = 180) -> list[dict[str, Any]]:
    """Messages up to and including the first of type ``kind``."""
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        event = recv(ws, timeout=max(0.1, deadline - time.monotonic()))
        events.append(event)
        if event["type"] == kind:
            return events


def closed_after(ws: ClientConnection, timeout: float) -> tuple[list[dict[str, Any]], float]:
    """Read until the server closes the socket; the messages and the monotonic close time."""
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            events.append(recv(ws, timeout=max(0.05, deadline - time.monotonic())))
        except ConnectionClosed:
            return events, time.monotonic()
        except TimeoutError as exc:
            raise AssertionError(f"the socket stayed open for {timeout} s: {events}") from exc


def close_code(ws: ClientConnection) -> int | None:
    return ws.close_code


def csrf_post(server: Server, cookies: dict[str, str], path: str) -> httpx.Response:
    """POST as the signed-in page would: the CSRF cookie's token in the form."""
    with httpx.Client(base_url=server.base_url, cookies=cookies, timeout=10) as client:
        page = client.get("/ask/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        value = token.group(1) if token else cookies["csrftoken"]
        return client.post(
            path,
            data={"csrfmiddlewaretoken": value},
            headers={"Referer": f"{server.base_url}/ask/"},
        )


def get(server: Server, cookies: dict[str, str], path: str) -> httpx.Response:
    with httpx.Client(base_url=server.base_url, cookies=cookies, timeout=10) as client:
        return client.get(path)
