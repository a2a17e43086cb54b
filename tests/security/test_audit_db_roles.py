"""The audit log against the database's own users: the app's role, a role with table privileges
but no ownership, and the owner.

A scratch PostgreSQL database is migrated by its owner (``postgres`` here, as in the suite), then
``manage.py db_roles`` creates the least-privilege app role that production runs as. Each attack
connects as that role (trust auth: the role name is the whole credential) and tries to rewrite
history. Roles are cluster-wide, so their names carry a uuid and are dropped afterwards. The last
test does the same against SQLite, through the app's own connections.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from tests.conftest import ROOT
from tests.live import app_env

pytestmark = pytest.mark.integration

PG_ADMIN = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SERVER = PG_ADMIN.rsplit("/", 1)[0]
_ADMIN = urlsplit(PG_ADMIN)
MAINTAINER = "clinic_audit_maintainer"
EVENTS, CHECKPOINTS, HEAD = (
    "clinic_app_auditevent",
    "clinic_app_auditcheckpoint",
    "clinic_app_audithead",
)

APPEND = (
    "from clinic_app.audit.record import audit_record, audit_checkpoint\n"
    "for i in range(4): audit_record(action='question.asked', actor='dr.app', object_id=i)\n"
    "print(audit_checkpoint().seq)\n"
)


@dataclass(frozen=True)
class Scratch:
    database: str
    app_role: str
    # A role granted every privilege on the audit tables by the owner, but not owning them: what
    # the maintenance switch gives a role that is not the owner, privileges aside.
    granted_role: str
    owner_env: dict[str, str]

    def url(self, role: str | None = None) -> str:
        """The scratch database as ``role`` (trust auth), or as the owner when None."""
        if role is None:
            return f"{SERVER}/{self.database}"
        return f"postgresql://{role}@{_ADMIN.hostname}:{_ADMIN.port or 5432}/{self.database}"

    def env_as(self, role: str) -> dict[str, str]:
        return {**self.owner_env, "DATABASE_URL": self.url(role)}


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def must(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.args}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scratch]:
    suffix = uuid.uuid4().hex[:8]
    name = f"clinic_roles_{suffix}"
    app_role, granted_role = f"clinic_app_{suffix}", f"clinic_granted_{suffix}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    owner_env = app_env(
        tmp_path_factory.mktemp("roles"),
        DATABASE_URL=f"{SERVER}/{name}",
        APP_DB_PASSWORD=f"pw-{uuid.uuid4().hex}",
    )
    made = Scratch(name, app_role, granted_role, owner_env)
    try:
        must(manage(owner_env, "migrate", "--noinput", "-v0"))
        must(
            manage(
                owner_env, "db_roles", "--app-role", app_role, "--password-env", "APP_DB_PASSWORD"
            )
        )
        with psycopg.connect(made.url(), autocommit=True) as conn:
            conn.execute(f'CREATE ROLE "{granted_role}" LOGIN')
            for table in (EVENTS, CHECKPOINTS, HEAD):
                conn.execute(f'GRANT ALL ON {table} TO "{granted_role}"')
        # Some history to attack, written by the app role the way the app writes it.
        must(manage(made.env_as(app_role), "shell", "-c", APPEND))
        yield made
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{app_role}"')
            conn.execute(f'DROP ROLE IF EXISTS "{granted_role}"')


def counts(scratch: Scratch) -> tuple[int, int, int, int]:
    with psycopg.connect(scratch.url()) as conn:
        row = conn.execute(
            f"SELECT (SELECT count(*) FROM {EVENTS}), (SELECT count(*) FROM {CHECKPOINTS}),"
            f" (SELECT count(*) FROM {HEAD}), (SELECT max(seq) FROM {HEAD})"
        ).fetchone()
    assert row is not None
    return row


def attempt(scratch: Scratch, role: str | None, *statements: str) -> psycopg.Error:
    """Run ``statements`` as ``role`` (None: the owner) in one transaction; return the error the
    last one raised."""
    with psycopg.connect(scratch.url(role)) as conn:
        for sql in statements[:-1]:
            conn.execute(sql)
        with pytest.raises(psycopg.Error) as caught:
            conn.execute(statements[-1])
        conn.rollback()
    return caught.value


def assert_chain_verifies(scratch: Scratch) -> None:
    must(manage(scratch.env_as(scratch.app_role), "audit_verify"))


# -- the app role ------------------------------------------------------------------------------

SWITCH = "SET clinic.audit_maintenance = 'on'"


@pytest.mark.parametrize(
    "statements",
    [
        (f"UPDATE {EVENTS} SET actor = 'someone' WHERE seq = 2",),
        (f"DELETE FROM {EVENTS} WHERE seq = 2",),
        (f"TRUNCATE {EVENTS}",),
        (SWITCH, f"UPDATE {EVENTS} SET actor = 'someone' WHERE seq = 2"),
        (SWITCH, f"DELETE FROM {EVENTS}"),
        (SWITCH, f"TRUNCATE {EVENTS} CASCADE"),
    ],
    ids=["update", "delete", "truncate", "switch-update", "switch-delete", "switch-truncate"],
)
def test_app_role_cannot_rewrite_audit_events_even_with_the_maintenance_switch(
    scratch: Scratch, statements: tuple[str, ...]
) -> None:
    before = counts(scratch)
    error = attempt(scratch, scratch.app_role, *statements)
    assert isinstance(error, psycopg.errors.InsufficientPrivilege), error
    assert counts(scratch) == before


@pytest.mark.parametrize(
    "statements",
    [
        (f"DELETE FROM {CHECKPOINTS}",),
        (f"TRUNCATE {CHECKPOINTS}",),
        (f"UPDATE {CHECKPOINTS} SET signature = repeat('0', 64)",),
        (SWITCH, f"DELETE FROM {CHECKPOINTS}"),
        (f"DELETE FROM {HEAD}",),
        (f"TRUNCATE {HEAD}",),
        (f"UPDATE {HEAD} SET seq = 1",),
        (f"UPDATE {HEAD} SET at = at - interval '1 day'",),
        (SWITCH, f"UPDATE {HEAD} SET seq = 0"),
        (SWITCH, f"DELETE FROM {HEAD}"),
    ],
    ids=[
        "delete-checkpoints",
        "truncate-checkpoints",
        "forge-checkpoint",
        "switch-delete-checkpoints",
        "delete-head",
        "truncate-head",
        "rewind-head",
        "backdate-head",
        "switch-rewind-head",
        "switch-delete-head",
    ],
)
def test_app_role_cannot_remove_checkpoints_or_rewind_the_head(
    scratch: Scratch, statements: tuple[str, ...]
) -> None:
    before = counts(scratch)
    error = attempt(scratch, scratch.app_role, *statements)
    assert isinstance(error, psycopg.errors.InsufficientPrivilege), error
    assert counts(scratch) == before


@pytest.mark.parametrize(
    "sql",
    [
        f"ALTER TABLE {EVENTS} DISABLE TRIGGER USER",
        f"ALTER TABLE {HEAD} DISABLE TRIGGER clinic_audit_head_forward_only",
        f"DROP TRIGGER clinic_audit_no_update_delete ON {EVENTS}",
        f"DROP TRIGGER clinic_audit_checkpoint_no_truncate ON {CHECKPOINTS}",
        "CREATE OR REPLACE FUNCTION clinic_audit_append_only() RETURNS trigger"
        " LANGUAGE plpgsql AS $$ BEGIN RETURN OLD; END $$",
        "DROP FUNCTION clinic_audit_append_only() CASCADE",
        "SET session_replication_role = replica",
        f"DROP TABLE {EVENTS}",
        f"CREATE TABLE public.{EVENTS}_shadow (id int)",
    ],
    ids=[
        "disable-triggers",
        "disable-head-trigger",
        "drop-trigger",
        "drop-checkpoint-trigger",
        "replace-function",
        "drop-function",
        "replica-mode",
        "drop-table",
        "create-table",
    ],
)
def test_app_role_cannot_switch_off_drop_or_replace_the_guards(scratch: Scratch, sql: str) -> None:
    error = attempt(scratch, scratch.app_role, sql)
    assert isinstance(error, psycopg.errors.InsufficientPrivilege), error
    with psycopg.connect(scratch.url()) as conn:
        triggers = conn.execute(
            "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal AND tgenabled = 'O'"
            " AND tgname LIKE 'clinic_audit_%'"
        ).fetchone()
    assert triggers == (6,)


def test_app_role_still_appends_checkpoints_and_verifies_the_chain(scratch: Scratch) -> None:
    events, checkpoints, _, head_seq = counts(scratch)
    out = must(manage(scratch.env_as(scratch.app_role), "shell", "-c", APPEND))
    assert int(out.strip().splitlines()[-1]) == head_seq + 4
    assert counts(scratch) == (events + 4, checkpoints + 1, 1, head_seq + 4)
    assert_chain_verifies(scratch)


# -- the maintenance switch itself ---------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        f"UPDATE {EVENTS} SET actor = 'someone' WHERE seq = 2",
        f"DELETE FROM {EVENTS}",
        f"TRUNCATE {EVENTS}",
        f"DELETE FROM {CHECKPOINTS}",
        f"UPDATE {HEAD} SET seq = 0",
        f"DELETE FROM {HEAD}",
    ],
    ids=[
        "update-events",
        "delete-events",
        "truncate-events",
        "delete-checkpoints",
        "rewind-head",
        "delete-head",
    ],
)
def test_a_role_with_every_table_privilege_gets_nothing_from_the_maintenance_switch(
    scratch: Scratch, sql: str
) -> None:
    """Before the fix any role could SET the switch: the triggers let this role through."""
    before = counts(scratch)
    error = attempt(scratch, scratch.granted_role, SWITCH, sql)
    assert isinstance(error, psycopg.errors.InsufficientPrivilege), error
    assert "append-only" in str(error)
    assert counts(scratch) == before


def test_only_the_owner_with_the_switch_may_change_the_log(scratch: Scratch) -> None:
    """The suite's flush runs as the owner with the switch on; without the switch even the
    owner is refused."""
    error = attempt(scratch, None, f"DELETE FROM {CHECKPOINTS}")
    assert "append-only" in str(error)
    with psycopg.connect(scratch.url()) as conn:
        conn.execute(SWITCH)
        deleted = conn.execute(f"DELETE FROM {CHECKPOINTS}").rowcount
        rewound = conn.execute(f"UPDATE {HEAD} SET seq = seq - 1").rowcount
        conn.rollback()
    assert deleted > 0 and rewound == 1


def test_a_maintainer_member_may_use_the_switch_and_db_roles_strips_it_from_the_app_role(
    scratch: Scratch,
) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        created = not conn.execute(
            "SELECT 1 FROM pg_roles WHERE rolname = %s", [MAINTAINER]
        ).fetchone()
        if created:
            conn.execute(f"CREATE ROLE {MAINTAINER} NOLOGIN")
    try:
        with psycopg.connect(scratch.url(), autocommit=True) as conn:
            conn.execute(f'GRANT {MAINTAINER} TO "{scratch.granted_role}"')
            # The app role gets it by hand, with UPDATE on the events and TRUNCATE everywhere.
            conn.execute(f'GRANT {MAINTAINER} TO "{scratch.app_role}"')
            conn.execute(f'GRANT UPDATE, DELETE, TRUNCATE ON {EVENTS} TO "{scratch.app_role}"')
            conn.execute(f'ALTER ROLE "{scratch.app_role}" CREATEROLE')
        # A maintainer (here: granted every table privilege) may change rows with the switch on.
        with psycopg.connect(scratch.url(scratch.granted_role)) as conn:
            conn.execute(SWITCH)
            assert conn.execute(f"UPDATE {HEAD} SET seq = seq - 1").rowcount == 1
            conn.rollback()
        # db_roles puts the app role back where it belongs.
        must(
            manage(
                scratch.owner_env,
                "db_roles",
                "--app-role",
                scratch.app_role,
                "--password-env",
                "APP_DB_PASSWORD",
            )
        )
        error = attempt(scratch, scratch.app_role, SWITCH, f"DELETE FROM {EVENTS}")
        assert isinstance(error, psycopg.errors.InsufficientPrivilege), error
        with psycopg.connect(scratch.url()) as conn:
            row = conn.execute(
                "SELECT pg_has_role(%s, %s, 'MEMBER'), rolcreaterole FROM pg_roles"
                " WHERE rolname = %s",
                [scratch.app_role, MAINTAINER, scratch.app_role],
            ).fetchone()
        assert row == (False, False)
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'REVOKE {MAINTAINER} FROM "{scratch.granted_role}"')
            if created:
                conn.execute(f"DROP ROLE {MAINTAINER}")


def test_db_roles_refuses_to_run_as_the_app_role(scratch: Scratch) -> None:
    result = manage(scratch.env_as(scratch.app_role), "db_roles", "--app-role", scratch.app_role)
    assert result.returncode != 0
    assert "owner" in result.stderr


# -- SQLite -----------------------------------------------------------------------------------

SQLITE_ATTACKS = """
import json
from django.db import DatabaseError, connection, transaction
from clinic_app.audit.record import audit_record, audit_checkpoint
for i in range(3): audit_record(action='question.asked', actor='dr.lite', object_id=i)
audit_checkpoint()
attacks = {
    'update-event': "UPDATE clinic_app_auditevent SET actor = 'x'",
    'delete-events': 'DELETE FROM clinic_app_auditevent',
    'update-checkpoint': "UPDATE clinic_app_auditcheckpoint SET signature = 'x'",
    'delete-checkpoints': 'DELETE FROM clinic_app_auditcheckpoint',
    'delete-head': 'DELETE FROM clinic_app_audithead',
    'rewind-head': 'UPDATE clinic_app_audithead SET seq = seq - 1',
    'move-head-row': 'UPDATE clinic_app_audithead SET id = 2',
    'backdate-head': "UPDATE clinic_app_audithead SET at = '2000-01-01 00:00:00'",
}
refused = {}
for name, sql in attacks.items():
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql)
        refused[name] = None
    except DatabaseError as exc:
        refused[name] = str(exc)
audit_record(action='question.asked', actor='dr.lite', object_id='after')
print(json.dumps(refused))
"""


def test_sqlite_refuses_removing_checkpoints_and_rewinding_the_head(
    tmp_path: Path,
) -> None:
    env = app_env(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    must(manage(env, "migrate", "--noinput", "-v0"))
    refused = json.loads(must(manage(env, "shell", "-c", SQLITE_ATTACKS)).strip().splitlines()[-1])
    assert all(message and "append-only" in message for message in refused.values()), refused
    must(manage(env, "audit_verify"))
