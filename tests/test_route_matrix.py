"""Every URL and websocket route, asked by every role and anonymously, against the matrix below.

The routes are read from the root URLconf (through its includes) and from the websocket
routing, not listed by hand: a route added without an entry in the matrix fails this suite, and
so does a route that answers someone the matrix does not allow.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from clinic_app.answers import services
from clinic_app.audit import record as audit
from clinic_app.models import Feedback, FeedbackCategory, IngestJob, Passage
from clinic_app.routing import websocket_urlpatterns

ANON = "anonymous"
NO_ROLE = "no-role"
USERS = ("clinician", "guideline-admin", "auditor", NO_ROLE)
IDENTITIES = (ANON, *USERS)


@dataclass(frozen=True)
class Redirect:
    """A 302 whose Location starts with ``to``."""

    to: str


LOGIN = Redirect("/login/?next=")  # role_required: sign in, then come back
ADMIN_LOGIN = Redirect("/admin/login/?next=")
Expected = int | Redirect


@dataclass(frozen=True)
class Access:
    """How one route answers each identity when asked with ``method``."""

    method: str
    expect: dict[str, Expected]
    # Identities that may use the route also get this status for the other method (405).
    other_method: int | None = None
    allowed: tuple[str, ...] = field(default=())


def only(role: str, *, method: str = "GET", ok: Expected = 200) -> Access:
    """Open to ``role`` alone: anonymous users sign in first, everyone else gets 403."""
    return roles(role, method=method, ok=ok)


def roles(*allowed: str, method: str = "GET", ok: Expected = 200) -> Access:
    """Open to any of ``allowed``: anonymous users sign in first, everyone else gets 403."""
    expect: dict[str, Expected] = {ANON: LOGIN}
    expect.update({user: ok if user in allowed else 403 for user in USERS})
    return Access(method, expect, other_method=405 if method == "POST" else None, allowed=allowed)


def everyone(expected: Expected, *, method: str = "GET") -> Access:
    return Access(method, dict.fromkeys(IDENTITIES, expected))


# The permission matrix: every route of clinic_app/urls.py (the admin site counts as one route).
MATRIX: dict[str, Access] = {
    "": Access(
        "GET",
        {
            ANON: Redirect("/login/"),
            "clinician": Redirect("/ask/"),
            "guideline-admin": Redirect("/guidelines/"),
            "auditor": Redirect("/audit/"),
            NO_ROLE: 403,
        },
    ),
    "healthz": everyone(200),
    "readyz": everyone(200),  # probes do not sign in; details name no host or secret
    # Loopback (the test client's address) or a bearer token, never a user: test_metrics.py.
    "metrics": everyone(200),
    "login/": everyone(200),
    "logout/": everyone(Redirect("/login/"), method="POST"),
    "ask/": only("clinician"),
    "api/answers/<int:answer_id>/": only("clinician"),
    "api/answers/<int:answer_id>/thread/": only("clinician"),
    "api/passages/<int:passage_id>/": only("clinician"),
    # Posted empty: the clinician is told what is missing (400).
    "api/answers/<int:answer_id>/feedback/": only("clinician", method="POST", ok=400),
    "api/history/": only("clinician"),
    "guidelines/feedback/": only("guideline-admin"),
    "guidelines/feedback/<int:feedback_id>/review/": only(
        "guideline-admin", method="POST", ok=Redirect("/guidelines/feedback/")
    ),
    "guidelines/": only("guideline-admin"),
    # Posted without files: the form answers 400 with its message.
    "guidelines/upload/": only("guideline-admin", method="POST", ok=400),
    "guidelines/jobs/<int:job_id>/": only("guideline-admin"),
    "guidelines/jobs/<int:job_id>/status": only("guideline-admin"),
    "guidelines/index/rollback/": only(
        "guideline-admin", method="POST", ok=Redirect("/guidelines/")
    ),
    "guidelines/<int:guideline_id>/": only("guideline-admin"),
    # The demo guidelines came from the command line: no original file is kept (404).
    "guidelines/<int:guideline_id>/original": only("guideline-admin", ok=404),
    "guidelines/<int:guideline_id>/<slug:action>/": only(
        "guideline-admin", method="POST", ok=Redirect("/guidelines/")
    ),
    # Aggregates only (no question text): admins watch quality, auditors read it.
    "quality/": roles("guideline-admin", "auditor"),
    "audit/": only("auditor"),
    "audit/events/<int:seq>/": only("auditor"),
    "audit/export.csv": only("auditor"),
    "audit/export.jsonl": only("auditor"),
    "audit/verify/": only("auditor", method="POST", ok=Redirect("/audit/")),
    "admin/": everyone(ADMIN_LOGIN),  # none of these users is staff
}

# Websocket routes: who may open each; everyone else (anonymous included) is closed with 4403.
WS_MATRIX: dict[str, tuple[str, ...]] = {"ws/ask/": ("clinician",)}
WS_FORBIDDEN = 4403


def _walk(patterns: Iterable[URLPattern | URLResolver], prefix: str = "") -> Iterator[str]:
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            if pattern.app_name == "admin":
                yield route  # Django's admin checks staff status itself: one route here
            else:
                yield from _walk(pattern.url_patterns, route)
        else:
            yield route


def http_routes() -> list[str]:
    return list(_walk(get_resolver().url_patterns))


def ws_routes() -> list[str]:
    return list(_walk(websocket_urlpatterns))


_CONVERTER = re.compile(r"<(?:(?P<converter>\w+):)?(?P<name>\w+)>")


def concrete(route: str, ids: dict[str, int]) -> str:
    """``route`` with each path converter filled with the id of an existing object."""
    if route.startswith("^"):
        pytest.fail(f"regex route {route!r}: give the matrix test a way to build its URL")

    def fill(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in ids:
            pytest.fail(f"no example value for <{name}> in {route!r}: add one to example_ids()")
        return str(ids[name])

    return "/" + _CONVERTER.sub(fill, route)


@pytest.fixture
def example_ids(db: None) -> dict[str, int]:
    """Existing objects for the path converters; the answer is the clinician's own."""
    clinician = User.objects.get(username="clinician")
    answer = services.question_ask(user=clinician, text="What is the target INR on warfarin?")
    passage = Passage.objects.order_by("pk").first()
    assert passage is not None
    event = audit.audit_record(action="test.matrix", actor="tests")
    feedback = Feedback.objects.create(
        answer=answer, user=clinician, helpful=False, category=FeedbackCategory.OTHER
    )
    admin = User.objects.get(username="guideline-admin")
    job = IngestJob.objects.create(created_by=admin)
    return {
        "answer_id": answer.pk,
        "passage_id": passage.pk,
        "seq": event.seq,
        "feedback_id": feedback.pk,
        "job_id": job.pk,
        "guideline_id": passage.guideline_id,
        "action": "deactivate",  # type: ignore[dict-item]
    }


@pytest.fixture
def clients(db: None) -> dict[str, Client]:
    User.objects.create_user(NO_ROLE, password="x")
    result = {ANON: Client()}
    for username in USERS:
        result[username] = Client()
        result[username].force_login(User.objects.get(username=username))
    return result


def outcome(response: Any) -> str:
    if response.status_code in (301, 302):
        return f"{response.status_code} -> {response['Location']}"
    return str(response.status_code)


def matches(response: Any, expected: Expected) -> bool:
    if isinstance(expected, Redirect):
        return response.status_code == 302 and response["Location"].startswith(expected.to)
    return bool(response.status_code == expected)


# ------------------------------------------------------------------------------------ HTTP


def test_every_url_route_is_in_the_permission_matrix() -> None:
    routes = http_routes()
    missing = [r for r in routes if r not in MATRIX]
    stale = [r for r in MATRIX if r not in routes]
    assert not missing, f"routes without an entry in the permission matrix: {missing}"
    assert not stale, f"matrix entries for routes that no longer exist: {stale}"


@pytest.mark.django_db
@pytest.mark.parametrize("route", http_routes())
def test_each_url_route_answers_each_identity_as_the_matrix_says(
    route: str, clients: dict[str, Client], example_ids: dict[str, int]
) -> None:
    if route not in MATRIX:
        pytest.fail(f"{route!r} is not in the permission matrix: decide who may use it")
    access = MATRIX[route]
    url = concrete(route, example_ids)
    wrong = []
    for identity in IDENTITIES:
        client = clients[identity]
        response = getattr(client, access.method.lower())(url)
        if not matches(response, access.expect[identity]):
            wrong.append(
                f"{identity}: {access.method} {url} gave {outcome(response)}, "
                f"expected {access.expect[identity]}"
            )
        if identity in access.allowed and access.other_method is not None:
            other = "get" if access.method == "POST" else "post"
            response = getattr(client, other)(url)
            if response.status_code != access.other_method:
                wrong.append(
                    f"{identity}: {other.upper()} {url} gave {outcome(response)}, "
                    f"expected {access.other_method}"
                )
    assert not wrong, "\n".join(wrong)


# ------------------------------------------------------------------------------ websockets


def test_every_websocket_route_is_in_the_permission_matrix() -> None:
    routes = ws_routes()
    assert not [r for r in routes if r not in WS_MATRIX], "websocket routes missing a matrix entry"
    assert not [r for r in WS_MATRIX if r not in routes], "stale websocket matrix entries"


def _session_cookie(username: str) -> bytes:
    if username == ANON:
        return b""
    if username == NO_ROLE:
        User.objects.get_or_create(username=NO_ROLE)
    client = Client()
    client.force_login(User.objects.get(username=username))
    return f"sessionid={client.cookies['sessionid'].value}".encode()


@pytest.mark.asyncio
@pytest.mark.usefixtures("seeded_db")
@pytest.mark.parametrize("route", ws_routes())
async def test_each_websocket_route_admits_only_its_roles(route: str) -> None:
    """Through the real ASGI stack: origin check, session cookie, AuthMiddleware, consumer."""
    from channels.db import database_sync_to_async
    from channels.testing import WebsocketCommunicator

    from clinic_app.asgi import application

    if route not in WS_MATRIX:
        pytest.fail(f"websocket route {route!r} is not in the permission matrix")
    wrong = []
    for identity in IDENTITIES:
        cookie = await database_sync_to_async(_session_cookie)(identity)
        headers = [(b"origin", b"http://127.0.0.1:8000"), (b"host", b"127.0.0.1:8000")]
        if cookie:
            headers.append((b"cookie", cookie))
        communicator = WebsocketCommunicator(application, "/" + route, headers=headers)
        connected, code = await communicator.connect(timeout=10)
        allowed = identity in WS_MATRIX[route]
        if connected != allowed or (not allowed and code != WS_FORBIDDEN):
            wrong.append(f"{identity}: connected={connected} code={code}")
        await communicator.disconnect()
    assert not wrong, "\n".join(wrong)
