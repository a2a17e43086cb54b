"""The stored audit log: chained appends, refused changes, checkpoints and ``audit_verify``."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from clinic_app.audit import record as audit
from clinic_app.audit.chain import GENESIS_HASH, ChainEvent, event_hash
from clinic_app.audit.triggers import audit_maintenance
from clinic_app.models import AuditCheckpoint, AuditEvent, AuditHead
from tests.live import app_env

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

pytestmark = pytest.mark.django_db


def record(n: int) -> list[AuditEvent]:
    return [
        audit.audit_record(
            action="question.asked",
            actor="dr.test",
            object_type="answer",
            object_id=i,
            details={"i": i, "score": i / 3},
        )
        for i in range(n)
    ]


@pytest.fixture
def checkpoint_file(tmp_path: Path, settings) -> Path:  # type: ignore[no-untyped-def]
    path = tmp_path / "checkpoints.jsonl"
    settings.AUDIT_CHECKPOINT_FILE = str(path)
    return path


def verify_command(*args: str) -> tuple[int, str]:
    """Run ``audit_verify``; return its exit status and what it said."""
    out = StringIO()
    try:
        call_command("audit_verify", *args, stdout=out)
    except CommandError as exc:
        return exc.returncode, str(exc)
    return 0, out.getvalue()


def test_each_event_links_to_the_previous_one_and_the_head_follows() -> None:
    before = AuditEvent.objects.count()
    events = record(3)
    assert [e.seq for e in events] == [before + 1, before + 2, before + 3]
    for prev, event in itertools.pairwise(events):
        assert event.prev_hash == prev.hash
    head = AuditHead.objects.get(pk=1)
    assert (head.seq, head.hash) == (events[-1].seq, events[-1].hash)
    stored = AuditEvent.objects.get(seq=events[1].seq)
    fields = ChainEvent(**{f: getattr(stored, f) for f in ChainEvent.__dataclass_fields__}).fields()
    assert event_hash(stored.prev_hash, fields) == stored.hash


def test_the_event_is_part_of_the_action_transaction() -> None:
    before = AuditEvent.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic():
        audit.audit_record(action="guideline.deactivated", actor="admin")
        raise RuntimeError("the action failed after recording")
    assert AuditEvent.objects.count() == before
    # The chain continues where it was: no gap from the rolled-back event.
    event = audit.audit_record(action="guideline.deactivated", actor="admin")
    assert event.seq == before + 1
    assert verify_command()[0] == 0


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE clinic_app_auditevent SET outcome = 'success' WHERE seq = 1",
        "UPDATE clinic_app_auditevent SET details = '{}'",
        "DELETE FROM clinic_app_auditevent WHERE seq = 1",
        "DELETE FROM clinic_app_auditevent",
    ],
)
def test_sqlite_refuses_raw_update_and_delete(sql: str) -> None:
    assert connection.vendor == "sqlite"
    record(2)
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql)
    assert AuditEvent.objects.filter(seq=1).exists()
    assert verify_command()[0] == 0


def test_orm_update_and_delete_are_refused_too() -> None:
    record(1)
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.update(actor="someone else")
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.all().delete()


def test_log_injection_is_neutralised() -> None:
    event = audit.audit_record(
        action="auth.login_failed",
        actor='mallory\n2026-01-01 INFO auth.login {"actor": "admin"}\r',
        outcome="failure",
        details={"note\n": "a\x1b[31mred\x00", "nested": [{"x": "\u2028y"}]},
    )
    event.refresh_from_db()
    assert "\n" not in event.actor and "\r" not in event.actor
    assert event.details == {"note ": "a [31mred ", "nested": [{"x": " y"}]}
    assert verify_command()[0] == 0


def test_audit_verify_names_the_first_tampered_event(checkpoint_file: Path) -> None:
    events = record(6)
    assert verify_command()[0] == 0
    # A database owner can switch the triggers off; the chain still tells.
    with audit_maintenance(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE clinic_app_auditevent SET actor = 'someone' WHERE seq = %s", [events[3].seq]
        )
    status, message = verify_command()
    assert status == 1
    assert f"BROKEN at seq {events[3].seq}" in message and "altered" in message


def test_audit_verify_catches_deleting_the_last_event() -> None:
    events = record(4)
    with audit_maintenance(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM clinic_app_auditevent WHERE seq = %s", [events[-1].seq])
    status, message = verify_command()
    assert status == 1 and f"seq {events[-1].seq}" in message


def test_truncate_and_rechain_is_caught_by_the_exported_checkpoint(
    checkpoint_file: Path, settings, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    settings.AUDIT_CHECKPOINT_EVERY = 5
    with django_capture_on_commit_callbacks(execute=True):
        record(12)  # checkpoints at every fifth seq, written to the database and the file
    assert checkpoint_file.exists()
    exported = [json.loads(line) for line in checkpoint_file.read_text().splitlines()]
    assert exported and all(c["seq"] % 5 == 0 for c in exported)
    assert verify_command()[0] == 0

    # The attacker empties the log and its checkpoints, then writes a clean, shorter chain and
    # moves the head: the database alone is now self-consistent.
    with audit_maintenance():
        AuditEvent.objects.all().delete()
        AuditCheckpoint.objects.all().delete()
        AuditHead.objects.all().delete()
    record(3)
    status, message = verify_command()
    assert status == 1, message
    assert "removed" in message or "re-chained" in message


def test_a_checkpoint_file_from_elsewhere_can_be_named(tmp_path: Path, settings) -> None:  # type: ignore[no-untyped-def]
    settings.AUDIT_CHECKPOINT_FILE = ""
    record(3)
    out = tmp_path / "offsite.jsonl"
    call_command("audit_checkpoint", "--output", str(out), stdout=StringIO())
    assert json.loads(out.read_text())["seq"] == AuditHead.objects.get(pk=1).seq
    assert verify_command("--checkpoints", str(out))[0] == 0

    forged = json.loads(out.read_text())
    forged["hash"] = GENESIS_HASH
    out.write_text(json.dumps(forged) + "\n")
    status, message = verify_command("--checkpoints", str(out))
    assert status == 1 and "signature" in message

    out.write_text("not json\n")
    with pytest.raises(CommandError, match=r"offsite\.jsonl:1"):
        call_command("audit_verify", "--checkpoints", str(out))


# -- PostgreSQL ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A fresh PostgreSQL database, migrated by the app itself."""
    name = f"clinic_audit_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    env = app_env(tmp_path_factory.mktemp("pg-audit"), DATABASE_URL=url)
    try:
        migrated = manage(env, "migrate", "--noinput")
        assert migrated.returncode == 0, migrated.stderr
        yield env
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


PG_RECORD = (
    "from clinic_app.audit.record import audit_record\n"
    "for i in range(5): audit_record(action='question.asked', actor='dr.pg', object_id=i)\n"
)


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE clinic_app_auditevent SET actor = 'x' WHERE seq = 2",
        "DELETE FROM clinic_app_auditevent WHERE seq = 2",
        "DELETE FROM clinic_app_auditevent",
        "TRUNCATE clinic_app_auditevent",
    ],
)
def test_postgresql_refuses_raw_update_delete_and_truncate(
    pg_database: dict[str, str], sql: str
) -> None:
    result = manage(pg_database, "shell", "-c", PG_RECORD)
    assert result.returncode == 0, result.stderr
    with psycopg.connect(pg_database["DATABASE_URL"]) as conn:
        before = conn.execute("SELECT count(*) FROM clinic_app_auditevent").fetchone()
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute(sql)
        conn.rollback()
        after = conn.execute("SELECT count(*) FROM clinic_app_auditevent").fetchone()
    assert before == after
    verified = manage(pg_database, "audit_verify")
    assert verified.returncode == 0, verified.stderr


def test_postgresql_concurrent_writers_never_fork_the_chain(pg_database: dict[str, str]) -> None:
    """Three processes append at once; the head-row lock serialises them into one chain."""
    script = (
        "from clinic_app.audit.record import audit_record\n"
        "for i in range(40): audit_record(action='question.asked', actor='w', object_id=i)\n"
    )
    writers = [
        subprocess.Popen(
            [sys.executable, "manage.py", "shell", "-c", script],
            cwd=ROOT,
            env=pg_database,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for writer in writers:
        _, err = writer.communicate(timeout=300)
        assert writer.returncode == 0, err
    with psycopg.connect(pg_database["DATABASE_URL"]) as conn:
        seqs = [r[0] for r in conn.execute("SELECT seq FROM clinic_app_auditevent ORDER BY seq")]
    assert seqs == list(range(1, len(seqs) + 1))
    verified = manage(pg_database, "audit_verify")
    assert verified.returncode == 0, verified.stderr


def test_postgresql_tampering_behind_the_triggers_is_found_by_audit_verify(
    pg_database: dict[str, str],
) -> None:
    assert manage(pg_database, "shell", "-c", PG_RECORD).returncode == 0
    with psycopg.connect(pg_database["DATABASE_URL"]) as conn:
        conn.execute("ALTER TABLE clinic_app_auditevent DISABLE TRIGGER USER")
        conn.execute("UPDATE clinic_app_auditevent SET outcome = 'failure' WHERE seq = 3")
        conn.execute("ALTER TABLE clinic_app_auditevent ENABLE TRIGGER USER")
    result = manage(pg_database, "audit_verify")
    assert result.returncode == 1
    assert "BROKEN at seq 3" in result.stderr


def test_an_action_whose_event_cannot_be_written_does_not_happen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The event is written in the action's transaction: no event, no action."""
    from django.contrib.auth.models import User

    from clinic_app.answers import services
    from clinic_app.models import Question

    def refuse(**fields: object) -> None:
        raise DatabaseError("disk full")

    clinician = User.objects.get(username="clinician")
    questions = Question.objects.count()
    monkeypatch.setattr(AuditEvent.objects, "create", refuse)
    with pytest.raises(DatabaseError):
        services.question_ask(user=clinician, text="What is the target INR on warfarin?")
    assert Question.objects.count() == questions
