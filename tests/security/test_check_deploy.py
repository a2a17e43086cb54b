"""Django's deployment checklist (`manage.py check --deploy`) finds nothing to warn about in the
production settings: HTTPS-only cookies, HSTS, redirects, strong keys, DEBUG off."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

CLEARED = ("SECRET_KEY", "AUDIT_CHECKPOINT_KEY", "DATABASE_URL", "REDIS_URL", "HSTS_SECONDS")


def check_deploy(var_dir: Path, **overrides: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env.update(
        DJANGO_SETTINGS_MODULE="clinic_app.settings",
        VAR_DIR=str(var_dir),
        DEBUG="0",
        REQUIRE_SECRET_KEY="1",
        SECRET_KEY=secrets.token_urlsafe(50),
        AUDIT_CHECKPOINT_KEY=secrets.token_urlsafe(32),
        SECURE_COOKIES="1",
        ALLOWED_HOSTS="clinic.example.org",
        CSRF_TRUSTED_ORIGINS="https://clinic.example.org",
    )
    env.update(overrides)
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_production_settings_pass_the_deployment_checklist(tmp_path: Path) -> None:
    result = check_deploy(tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues (0 silenced)" in output
    assert "WARNING" not in output and "?: (security." not in output


def test_plain_http_deployment_fails_the_checklist(tmp_path: Path) -> None:
    """The same check catches a deployment left without HTTPS settings."""
    result = check_deploy(tmp_path, SECURE_COOKIES="0")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    for check in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert check in output, output
