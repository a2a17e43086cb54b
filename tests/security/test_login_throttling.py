"""Password guessing is throttled per username and client address (django-axes), the client
address cannot be forged with X-Forwarded-For, and lockouts are audited and can be lifted.

The attacks run against the real ASGI server (uvicorn, `manage.py serve`) on PostgreSQL: one
instance reached directly (no trusted proxy) and one behind a trusted reverse proxy (the test
plays the proxy from 127.0.0.1 and writes X-Forwarded-For as a proxy would).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import psycopg
import pytest
from django.db.models import F
from django.http import HttpRequest, HttpResponse
from django.test import Client, RequestFactory, override_settings

from clinic_app.core.client_ip import client_ip
from clinic_app.core.middleware import Acting, ActingUserMiddleware, acting
from tests.conftest import ROOT
from tests.live import Server, app_env, manage, start_server

PG_ADMIN = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
LIMIT = 3  # LOGIN_FAILURE_LIMIT of the live instances: fewer slow password hashes per test
LOCKED_MESSAGE = (
    "Too many failed sign-ins for this account from your address. Try again in 15 minutes "
    "or ask an administrator to unlock it."
)
ATTACKER = "203.0.113.66"
COLLEAGUE = "198.51.100.20"


@dataclass
class Instance:
    direct: Server  # TRUSTED_PROXIES empty: the connecting address is the client
    proxied: Server  # TRUSTED_PROXIES=127.0.0.1: X-Forwarded-For from the test is believed
    env: dict[str, str]
    database_url: str
    password: str


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    name = f"clinic_axes_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    env = app_env(tmp_path_factory.mktemp("axes"), DATABASE_URL=url, LOGIN_FAILURE_LIMIT=str(LIMIT))
    servers: list[Server] = []
    try:
        manage(env, "migrate", "--noinput", "-v0")  # axes' own migrations included
        manage(env, "setup_demo", "--skip-corpus")
        servers.append(start_server({**env, "TRUSTED_PROXIES": ""}, name="axes-direct"))
        servers.append(start_server({**env, "TRUSTED_PROXIES": "127.0.0.1"}, name="axes-proxied"))
        yield Instance(servers[0], servers[1], env, url, env["DEMO_PASSWORD"])
    finally:
        for server in servers:
            server.process.stop()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(autouse=True)
def _no_lockouts_left(request: pytest.FixtureRequest) -> None:
    """Each live test starts with no failed attempts recorded."""
    if "instance" in request.fixturenames:
        inst: Instance = request.getfixturevalue("instance")
        with psycopg.connect(inst.database_url, autocommit=True) as conn:
            conn.execute("DELETE FROM axes_accessattempt")


def sign_in(
    base_url: str, username: str, password: str, *, forwarded_for: str = ""
) -> httpx.Response:
    """One sign-in through the real form (fresh client: GET for the CSRF token, then POST)."""
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
        page = client.get("/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert token, page.text
        return client.post(
            "/login/",
            data={
                "username": username,
                "password": password,
                "csrfmiddlewaretoken": token.group(1),
            },
        )


def audit_rows(inst: Instance, action: str) -> list[dict[str, Any]]:
    with psycopg.connect(inst.database_url) as conn:
        rows = conn.execute(
            "SELECT actor, outcome, source_ip, details FROM clinic_app_auditevent "
            "WHERE action = %s ORDER BY seq",
            (action,),
        ).fetchall()
    return [{"actor": a, "outcome": o, "source_ip": ip, "details": d} for a, o, ip, d in rows]


# -- live server ------------------------------------------------------------------------------


def test_password_guessing_locks_the_account_from_that_address(instance: Instance) -> None:
    base = instance.direct.base_url
    statuses = [sign_in(base, "clinician", f"guess-{i}").status_code for i in range(LIMIT)]
    assert statuses == [200] * (LIMIT - 1) + [429]

    # Locked: even the right password is refused, with a page that says why and for how long.
    right = sign_in(base, "clinician", instance.password)
    assert right.status_code == 429
    assert LOCKED_MESSAGE in right.text
    assert 'name="password"' in right.text  # the sign-in form is still there for later
    assert "sessionid" not in right.cookies


def test_guessing_from_one_address_does_not_lock_out_a_colleague_elsewhere(
    instance: Instance,
) -> None:
    base = instance.proxied.base_url
    for i in range(LIMIT):
        sign_in(base, "clinician", f"guess-{i}", forwarded_for=ATTACKER)
    assert sign_in(base, "clinician", instance.password, forwarded_for=ATTACKER).status_code == 429

    colleague = sign_in(base, "clinician", instance.password, forwarded_for=COLLEAGUE)
    assert colleague.status_code == 302 and "sessionid" in colleague.cookies
    # The sign-in is recorded from the colleague's own address, not the proxy's.
    logins = audit_rows(instance, "auth.login")
    assert logins[-1]["actor"] == "clinician" and logins[-1]["source_ip"] == COLLEAGUE


def test_forged_x_forwarded_for_from_an_untrusted_client_does_not_dodge_the_lockout(
    instance: Instance,
) -> None:
    # No proxy is trusted: a new made-up address on every attempt changes nothing.
    statuses = [
        sign_in(
            instance.direct.base_url, "auditor", f"guess-{i}", forwarded_for=f"192.0.2.{i + 1}"
        ).status_code
        for i in range(LIMIT + 1)
    ]
    assert statuses[LIMIT - 1 :] == [429, 429]


def test_addresses_forged_left_of_the_proxys_entry_do_not_dodge_the_lockout(
    instance: Instance,
) -> None:
    # Behind the proxy, the client can only prepend entries; the proxy appends what it saw.
    statuses = [
        sign_in(
            instance.proxied.base_url,
            "auditor",
            f"guess-{i}",
            forwarded_for=f"192.0.2.{i + 1}, {ATTACKER}",
        ).status_code
        for i in range(LIMIT + 1)
    ]
    assert statuses[LIMIT - 1 :] == [429, 429]


def test_lockout_is_audited_with_the_username_and_address(instance: Instance) -> None:
    for i in range(LIMIT):
        sign_in(instance.proxied.base_url, "guideline-admin", f"guess-{i}", forwarded_for=ATTACKER)
    locked = [r for r in audit_rows(instance, "auth.locked_out") if r["source_ip"] == ATTACKER]
    assert locked, "the lockout was not audited"
    event = locked[-1]
    assert event["actor"] == "guideline-admin" and event["outcome"] == "failure"
    assert event["details"]["username"] == "guideline-admin"
    assert event["details"]["failures"] == LIMIT


def test_an_administrator_lifts_a_lockout_with_axes_reset_username(instance: Instance) -> None:
    base = instance.direct.base_url
    for i in range(LIMIT):
        sign_in(base, "guideline-admin", f"guess-{i}")
    assert sign_in(base, "guideline-admin", instance.password).status_code == 429

    manage(instance.env, "axes_reset_username", "guideline-admin")
    assert sign_in(base, "guideline-admin", instance.password).status_code == 302


# -- in process (SQLite) ----------------------------------------------------------------------


@pytest.mark.django_db
def test_lockout_ends_when_the_cooloff_has_passed(demo_password: str) -> None:
    from axes.models import AccessAttempt
    from django.conf import settings

    client = Client()
    for i in range(settings.AXES_FAILURE_LIMIT):
        response = client.post("/login/", {"username": "auditor", "password": f"guess-{i}"})
    assert response.status_code == 429
    assert (
        client.post("/login/", {"username": "auditor", "password": demo_password}).status_code
        == 429
    )

    # The cool-off counts from the last failure: move the failures back past it.
    AccessAttempt.objects.update(
        attempt_time=F("attempt_time") - settings.AXES_COOLOFF_TIME - timedelta(minutes=1)
    )
    response = client.post("/login/", {"username": "auditor", "password": demo_password})
    assert response.status_code == 302


@pytest.mark.parametrize(
    ("trusted", "remote", "forwarded", "expected"),
    [
        # Nobody trusted: the header is the client's own invention.
        ([], "203.0.113.5", "10.1.1.1", "203.0.113.5"),
        # A trusted proxy appended the address it saw; entries left of it are the client's.
        (["10.0.0.0/8"], "10.0.0.2", "1.2.3.4, 203.0.113.5", "203.0.113.5"),
        # Several trusted proxies in a row are skipped from the right.
        (["10.0.0.0/8"], "10.0.0.2", "1.2.3.4, 203.0.113.5, 10.0.0.7", "203.0.113.5"),
        # A connection from outside the trusted set: its header is not read.
        (["10.0.0.0/8"], "198.51.100.1", "203.0.113.5", "198.51.100.1"),
        # Garbage is no address: stop at the last hop a trusted proxy vouched for.
        (["10.0.0.0/8"], "10.0.0.2", "203.0.113.5, not-an-ip, 10.0.0.3", "10.0.0.3"),
        (["10.0.0.0/8"], "10.0.0.2", "", "10.0.0.2"),
        # Ports, bracketed IPv6 and IPv4-mapped peers.
        (["10.0.0.0/8"], "10.0.0.2", "203.0.113.5:52311", "203.0.113.5"),
        (["::1"], "::1", "[2001:db8::5]:443", "2001:db8::5"),
        (["10.0.0.0/8"], "::ffff:10.0.0.2", "203.0.113.5", "203.0.113.5"),
    ],
)
def test_client_address_cannot_be_forged_with_x_forwarded_for(
    trusted: list[str], remote: str, forwarded: str, expected: str
) -> None:
    request = RequestFactory().get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)
    with override_settings(TRUSTED_PROXIES=trusted):
        assert client_ip(request) == expected


def test_acting_user_records_the_client_behind_the_proxy_not_the_proxy() -> None:
    seen: list[Acting | None] = []

    def view(request: HttpRequest) -> HttpResponse:
        seen.append(acting())
        return HttpResponse()

    request = RequestFactory().get(
        "/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="192.0.2.9, 203.0.113.5"
    )
    with override_settings(TRUSTED_PROXIES=["10.0.0.2"]):
        ActingUserMiddleware(view)(request)
    assert seen[0] is not None and seen[0].source_ip == "203.0.113.5"


def test_a_malformed_trusted_proxy_list_stops_the_app() -> None:
    env = {**os.environ, "TRUSTED_PROXIES": "10.0.0.0/8,proxy.example.org"}
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "clinic_app.settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "SettingError" in result.stderr and "proxy.example.org" in result.stderr
