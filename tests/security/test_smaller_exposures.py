"""Smaller exposures (ASVS 4.1, 7.1, 14.x): withdrawn passages, the admin's path, staff reads.

- A clinician cannot read, by id, a passage of a guideline that was deactivated or deleted.
- The Django admin lives where ``ADMIN_URL_PATH`` puts it, not at ``/admin/``.
- Staff reading questions and answers in the Django admin is on the audit record.

Every attack goes to the real server, started with the admin moved.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.live import Server
from tests.security.live_app import PASSWORD, cookies_for, django_shell, live_instance

ROOT = Path(__file__).resolve().parents[2]
ADMIN_PATH = "staff-desk-5f1c/"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with live_instance("smaller-exposures", ADMIN_URL_PATH=ADMIN_PATH) as instance:
        yield instance


def test_clinician_cannot_read_passages_of_withdrawn_guidelines_by_id(server: Server) -> None:
    passages = django_shell(
        server,
        "import json; from django.utils import timezone; "
        "from clinic_app.models import Guideline, Passage\n"
        "def make(key, **state):\n"
        "    g = Guideline.objects.create(key=key, title=key, sha256=key.ljust(64, '0'), **state)\n"
        "    return Passage.objects.create(guideline=g, ordinal=0, text='Withdrawn advice.').pk\n"
        "print(json.dumps({'active': make('g-active'), "
        "'inactive': make('g-inactive', active=False), "
        "'deleted': make('g-deleted', active=False, deleted_at=timezone.now()), "
        "'deleted-flag-only': make('g-deleted-2', deleted_at=timezone.now())}))",
    )
    with httpx.Client(
        base_url=server.base_url, cookies=cookies_for(server, "clinician"), timeout=30
    ) as client:
        status = {k: client.get(f"/api/passages/{pk}/").status_code for k, pk in passages.items()}
    assert status == {"active": 200, "inactive": 404, "deleted": 404, "deleted-flag-only": 404}


def test_the_admin_is_not_at_the_default_path_when_moved(server: Server) -> None:
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        assert client.get("/admin/").status_code == 404
        assert client.get("/admin/login/").status_code == 404
        moved = client.get(f"/{ADMIN_PATH}")
    assert moved.status_code == 302
    assert moved.headers["Location"].startswith(f"/{ADMIN_PATH}login/")


def _start_django(admin_path: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "clinic_app.settings"}
    env["ADMIN_URL_PATH"] = admin_path
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("value", ["", "/", "/admin/", "admin"])
def test_a_malformed_admin_path_stops_the_app_at_startup(value: str) -> None:
    """A typo must not silently mount the admin somewhere else (or at the site's root)."""
    result = _start_django(value)
    assert result.returncode != 0
    assert "ADMIN_URL_PATH" in result.stderr
    assert _start_django("staff/").returncode == 0, "a well-formed path starts"


def test_staff_reading_answers_and_questions_in_the_admin_is_audited(server: Server) -> None:
    ids = django_shell(
        server,
        "import json; from django.contrib.auth.models import User; "
        "from clinic_app.models import Answer, Question; "
        f"User.objects.create_superuser('staff-reader', 'staff@example.org', {PASSWORD!r}); "
        "q = Question.objects.create(user=User.objects.get(username='clinician'), "
        "text='Anticoagulation for my patient born 1950-02-03?'); "
        "a = Answer.objects.create(question=q, status='complete', text='Consider a DOAC.'); "
        "print(json.dumps([q.pk, a.pk]))",
    )
    question_id, answer_id = ids
    admin = f"/{ADMIN_PATH}clinic_app"
    with httpx.Client(
        base_url=server.base_url, cookies=cookies_for(server, "staff-reader"), timeout=30
    ) as client:
        pages = [
            client.get(f"{admin}/answer/", params={"o": "1"}),
            client.get(f"{admin}/answer/{answer_id}/change/"),
            client.get(f"{admin}/question/{question_id}/change/"),
        ]
    assert [p.status_code for p in pages] == [200, 200, 200]
    assert "Consider a DOAC." in pages[1].text  # the staff user did see the answer

    events = django_shell(
        server,
        "import json; from clinic_app.models import AuditEvent; print(json.dumps(list("
        "AuditEvent.objects.filter(action='admin.viewed').order_by('seq')"
        ".values('actor', 'object_type', 'object_id', 'details'))))",
    )
    assert [(e["actor"], e["object_type"], e["object_id"]) for e in events] == [
        ("staff-reader", "answer", ""),
        ("staff-reader", "answer", str(answer_id)),
        ("staff-reader", "question", str(question_id)),
    ]
    assert events[0]["details"] == {"view": "list", "filters": {"o": "1"}}
    assert events[1]["details"] == {"view": "object"}
