"""Weak passwords are refused wherever the app sets one, and a generated demo password never
lands in production logs."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.forms import SetPasswordForm
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.conftest import ROOT
from tests.live import app_env, manage


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("weak", "reason"),
    [
        ("Xq7#kd", "too short"),
        ("password1234", "too common"),
        ("738204915562", "entirely numeric"),
        ("clinician-1", "too short"),
        ("clinician2024", "too similar to the username"),
    ],
)
def test_setup_demo_refuses_a_weak_demo_password(
    monkeypatch: pytest.MonkeyPatch, demo_password: str, weak: str, reason: str
) -> None:
    monkeypatch.setenv("DEMO_PASSWORD", weak)
    with pytest.raises(CommandError, match=rf"DEMO_PASSWORD is refused .*{reason}"):
        call_command("setup_demo", "--skip-corpus", "--reset-passwords", verbosity=0)
    # Nothing was changed: every demo account keeps its old password.
    for user in User.objects.filter(username__in=["clinician", "guideline-admin", "auditor"]):
        assert user.check_password(demo_password) and not user.check_password(weak)


@pytest.mark.django_db
def test_setup_demo_accepts_the_test_suites_password(
    monkeypatch: pytest.MonkeyPatch, demo_password: str
) -> None:
    monkeypatch.setenv("DEMO_PASSWORD", demo_password)
    call_command("setup_demo", "--skip-corpus", "--reset-passwords", verbosity=0)
    assert User.objects.get(username="clinician").check_password(demo_password)


@pytest.mark.django_db
@pytest.mark.parametrize("weak", ["short-pw", "qwertyuiop123", "000000000000"])
def test_an_administrator_cannot_set_a_weak_password(weak: str) -> None:
    """The admin's and Django's own password forms run the same validators."""
    form = SetPasswordForm(
        User.objects.get(username="auditor"), {"new_password1": weak, "new_password2": weak}
    )
    assert not form.is_valid() and "new_password2" in form.errors


@pytest.fixture(scope="module")
def fresh_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A migrated SQLite instance in its own VAR_DIR, without DEMO_PASSWORD."""
    env = app_env(tmp_path_factory.mktemp("demo-password"))
    env.pop("DEMO_PASSWORD")
    manage(env, "migrate", "--noinput", "-v0")
    yield env


def _stored_password(env: dict[str, str]) -> Path:
    return Path(env["VAR_DIR"]) / "demo_password"


def _password_works(env: dict[str, str], password: str) -> bool:
    check = (
        "import sys, django; django.setup(); from django.contrib.auth.models import User; "
        "sys.exit(0 if User.objects.get(username='clinician').check_password(sys.argv[1]) else 3)"
    )
    return (
        subprocess.run(
            [sys.executable, "-c", check, password], cwd=ROOT, env=env, timeout=120
        ).returncode
        == 0
    )


def test_generated_demo_password_never_reaches_production_logs(
    fresh_instance: dict[str, str],
) -> None:
    env = {**fresh_instance, "DEBUG": "0"}
    output = manage(env, "setup_demo", "--skip-corpus", "--reset-passwords")
    path = _stored_password(env)
    password = path.read_text().strip()
    assert len(password) >= 16 and password not in output
    assert f"written to {path}" in output
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert _password_works(env, password)


def test_generated_demo_password_is_shown_in_debug_mode(fresh_instance: dict[str, str]) -> None:
    env = {**fresh_instance, "DEBUG": "1"}
    output = manage(env, "setup_demo", "--skip-corpus", "--reset-passwords")
    password = _stored_password(env).read_text().strip()
    assert re.search(rf"password {re.escape(password)} ", output)
