"""Migrations keep working on an existing database after code moves.

The migrations that install the audit chain and its guards import functions from
``clinic_app.audit`` (``chain``, ``triggers``); when modules move, those imports move with them.
A database that already holds audited history is taken back past the guard migrations and
forward again by the app itself, and its chain still verifies.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.clinic_app.test_audit import PG_ADMIN, manage
from tests.live import app_env

RECORD_HISTORY = (
    "from clinic_app.audit.record import audit_record\n"
    "for i in range(4): audit_record(action='question.asked', actor='dr.before', object_id=i)\n"
)


@pytest.fixture
def pg_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    name = f"clinic_migrate_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield app_env(tmp_path, DATABASE_URL=PG_ADMIN.rsplit("/", 1)[0] + f"/{name}")
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def ok(env: dict[str, str], *args: str) -> str:
    done = manage(env, *args)
    assert done.returncode == 0, f"manage.py {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_a_database_with_history_migrates_back_past_the_audit_guards_and_forward_again(
    pg_env: dict[str, str],
) -> None:
    ok(pg_env, "migrate", "--noinput")
    ok(pg_env, "shell", "-c", RECORD_HISTORY)
    assert "audit chain OK: 4 events" in ok(pg_env, "audit_verify")

    # Back to before the guards of the chain head and checkpoints (0006), then forward: both
    # directions run the functions the migrations import from the audit package.
    ok(pg_env, "migrate", "clinic_app", "0005", "--noinput")
    forward = ok(pg_env, "migrate", "--noinput")
    assert "Applying clinic_app.0006_audit_protect_head_checkpoints... OK" in forward
    assert "No changes detected" in ok(pg_env, "makemigrations", "--check", "--dry-run")

    ok(pg_env, "shell", "-c", RECORD_HISTORY.replace("dr.before", "dr.after"))
    # 4 before, the first verification (itself on the record), 4 after.
    assert "audit chain OK: 9 events" in ok(pg_env, "audit_verify")
    # The guards are back: the history cannot be rewritten.
    tamper = manage(
        pg_env,
        "shell",
        "-c",
        "from django.db import connection\n"
        "connection.cursor().execute(\"UPDATE clinic_app_auditevent SET actor = 'x'\")\n",
    )
    assert tamper.returncode != 0 and "append-only" in (tamper.stderr + tamper.stdout).lower()
