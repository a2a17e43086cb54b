"""Outside debug mode the app will not start with a missing or guessable SECRET_KEY (anyone who
knows it can forge sessions), and production needs its own audit checkpoint key.

Each start is a fresh process (`django.setup()`), with only the environment under test.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

# What the tests' own environment may hold that would change the outcome.
CLEARED = ("SECRET_KEY", "AUDIT_CHECKPOINT_KEY", "REQUIRE_SECRET_KEY", "DEBUG", "DATABASE_URL")
SHOW_KEYS = (
    "import django; django.setup(); from django.conf import settings; "
    "print(settings.SECRET_KEY); print(settings.AUDIT_CHECKPOINT_KEY)"
)


def start(var_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k not in CLEARED}
    full.update(
        DJANGO_SETTINGS_MODULE="clinic_app.settings", PYTHONPATH=str(ROOT), VAR_DIR=str(var_dir)
    )
    full.update(env)
    return subprocess.run(
        [sys.executable, "-c", SHOW_KEYS],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )


def refused(result: subprocess.CompletedProcess[str], *words: str) -> bool:
    last_line = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
    return (
        result.returncode != 0
        and last_line.startswith("clinic_app.env.SettingError")
        and all(w in last_line for w in words)
    )


def strong() -> str:
    return secrets.token_urlsafe(50)


def test_app_refuses_to_start_without_a_secret_key_when_debug_is_off(tmp_path: Path) -> None:
    result = start(tmp_path, DEBUG="0")
    assert refused(result, "SECRET_KEY", "make setup", str(tmp_path / "secret_key")), result.stderr


@pytest.mark.parametrize(
    "key",
    [
        "insecure-dev-key",  # the old fallback, known to anyone who reads the code
        "Zq81-short-but-random",
        "django-insecure-" + secrets.token_urlsafe(50),  # startproject's placeholder
        "ab" * 40,  # long, but only two distinct characters
    ],
)
def test_app_refuses_a_guessable_secret_key(tmp_path: Path, key: str) -> None:
    assert refused(start(tmp_path, DEBUG="0", SECRET_KEY=key), "too weak")
    # ... from the installation's key file as well.
    (tmp_path / "secret_key").write_text(key + "\n")
    assert refused(start(tmp_path, DEBUG="0"), "too weak")


def test_the_installations_key_file_is_a_real_key(tmp_path: Path) -> None:
    key = strong()
    (tmp_path / "secret_key").write_text(key + "\n")  # as `make setup` writes it
    result = start(tmp_path, DEBUG="0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == key


def test_debug_mode_makes_up_a_key_per_process_never_a_fixed_one(tmp_path: Path) -> None:
    first, second = (start(tmp_path, DEBUG="1") for _ in range(2))
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    key_a, key_b = first.stdout.splitlines()[0], second.stdout.splitlines()[0]
    assert key_a != key_b and len(key_a) >= 50 and len(set(key_a)) >= 5


def test_production_refuses_a_key_that_is_only_in_the_key_file(tmp_path: Path) -> None:
    (tmp_path / "secret_key").write_text(strong())
    result = start(tmp_path, REQUIRE_SECRET_KEY="1", AUDIT_CHECKPOINT_KEY=strong())
    assert refused(result, "SECRET_KEY must be set in production"), result.stderr


@pytest.mark.parametrize(
    ("audit_key", "words"),
    [
        (None, ("AUDIT_CHECKPOINT_KEY must be set in production",)),
        ("too-short-audit-key", ("AUDIT_CHECKPOINT_KEY must be set in production",)),
        ("same", ("AUDIT_CHECKPOINT_KEY must differ from SECRET_KEY",)),
    ],
)
def test_production_refuses_an_audit_key_that_falls_with_the_secret_key(
    tmp_path: Path, audit_key: str | None, words: tuple[str, ...]
) -> None:
    """A checkpoint key derived from, or equal to, SECRET_KEY lets whoever learns that one key
    re-sign a truncated audit chain."""
    secret_key = strong()
    env = {"REQUIRE_SECRET_KEY": "1", "SECRET_KEY": secret_key}
    if audit_key is not None:
        env["AUDIT_CHECKPOINT_KEY"] = secret_key if audit_key == "same" else audit_key
    result = start(tmp_path, **env)
    assert refused(result, *words), result.stderr


def test_production_starts_with_both_keys_of_its_own(tmp_path: Path) -> None:
    secret_key, audit_key = strong(), secrets.token_urlsafe(32)
    result = start(
        tmp_path, REQUIRE_SECRET_KEY="1", SECRET_KEY=secret_key, AUDIT_CHECKPOINT_KEY=audit_key
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [secret_key, audit_key]
