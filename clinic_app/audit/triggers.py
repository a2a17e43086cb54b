"""The database's side of the append-only audit log: triggers that refuse changes to the audit
tables, and the one switch that lets a test empty its database.

- ``clinic_app_auditevent`` and ``clinic_app_auditcheckpoint``: INSERT only (UPDATE, DELETE and
  TRUNCATE refused).
- ``clinic_app_audithead``: the chain's head row moves forward on every append, so UPDATE is
  allowed, but not one that lowers its ``seq`` or ``at`` or changes its id (rewinding the head),
  and DELETE and TRUNCATE are refused.

PostgreSQL raises from trigger functions; SQLite aborts from triggers that call
``clinic_audit_guard()``, a function this app registers on each of its connections. A connection
without it (the sqlite3 shell, another program) fails on "no such function": refused as well.

The maintenance switch (``SET clinic.audit_maintenance = 'on'``) is honoured on PostgreSQL only
for a role that owns the table or is a member of ``clinic_audit_maintainer``: any role may set a
custom setting, so the switch alone would open the bypass to the application's own role.
Production runs the app as a role that is neither (``manage.py db_roles``). SQLite has no roles:
there the switch is a flag of this process, and the file's permissions are the only boundary.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

TABLE = "clinic_app_auditevent"
CHECKPOINT_TABLE = "clinic_app_auditcheckpoint"
HEAD_TABLE = "clinic_app_audithead"
REFUSAL = "the audit log is append-only"
# A NOLOGIN role a DBA may create and grant to people who must be able to purge or repair the
# log (with the switch on); the table owner can already. Cluster-wide, like every role.
MAINTAINER_ROLE = "clinic_audit_maintainer"

_state = threading.local()

# -- PostgreSQL -------------------------------------------------------------------------------

# Migration 0002's state, kept verbatim: 0002 installs it and 0006's reversal restores it.
_PG_FUNCTION_V1 = f"""
    CREATE OR REPLACE FUNCTION clinic_audit_append_only() RETURNS trigger AS $$
    BEGIN
        IF current_setting('clinic.audit_maintenance', true) = 'on' THEN
            IF TG_OP = 'UPDATE' THEN RETURN NEW; END IF;
            RETURN OLD;
        END IF;
        RAISE EXCEPTION '{REFUSAL}: % refused on %', TG_OP, TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege';
    END
    $$ LANGUAGE plpgsql
    """
_PG_INSTALL = [
    _PG_FUNCTION_V1,
    f"""CREATE TRIGGER clinic_audit_no_update_delete BEFORE UPDATE OR DELETE ON {TABLE}
        FOR EACH ROW EXECUTE FUNCTION clinic_audit_append_only()""",
    f"""CREATE TRIGGER clinic_audit_no_truncate BEFORE TRUNCATE ON {TABLE}
        FOR EACH STATEMENT EXECUTE FUNCTION clinic_audit_append_only()""",
]
_PG_REMOVE = [
    f"DROP TRIGGER IF EXISTS clinic_audit_no_update_delete ON {TABLE}",
    f"DROP TRIGGER IF EXISTS clinic_audit_no_truncate ON {TABLE}",
    "DROP FUNCTION IF EXISTS clinic_audit_append_only()",
]

# True only when the switch is on AND the role running the statement (``current_user``: the
# functions are SECURITY INVOKER) owns the table or belongs to the maintainer role. pg_has_role
# counts superusers as members of every role. The maintainer role may not exist: checked first.
_PG_BYPASS = f"""(
        coalesce(current_setting('clinic.audit_maintenance', true), '') = 'on'
        AND (
            pg_has_role(current_user,
                        (SELECT c.relowner FROM pg_class c WHERE c.oid = TG_RELID), 'MEMBER')
            OR EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = '{MAINTAINER_ROLE}'
                       AND pg_has_role(current_user, r.oid, 'MEMBER'))
        )
    )"""
# search_path pinned to pg_catalog: no object a less privileged role creates (in public, or a
# temporary schema) can stand in for pg_has_role, pg_class or pg_roles inside these functions.
_PG_GUARDS = [
    f"""
    CREATE OR REPLACE FUNCTION clinic_audit_append_only() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog AS $$
    BEGIN
        IF {_PG_BYPASS} THEN
            IF TG_OP = 'UPDATE' THEN RETURN NEW; END IF;
            RETURN OLD;
        END IF;
        RAISE EXCEPTION '{REFUSAL}: % refused on %', TG_OP, TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege';
    END
    $$
    """,
    f"""
    CREATE OR REPLACE FUNCTION clinic_audit_head_forward_only() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog AS $$
    BEGIN
        IF {_PG_BYPASS} THEN
            IF TG_OP = 'UPDATE' THEN RETURN NEW; END IF;
            RETURN OLD;
        END IF;
        IF TG_OP = 'UPDATE' AND NEW.id = OLD.id AND NEW.seq >= OLD.seq
           AND (OLD.at IS NULL OR NEW.at >= OLD.at) THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION '{REFUSAL}: % refused on % (the head only moves forward)',
            TG_OP, TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
    END
    $$
    """,
    f"""CREATE TRIGGER clinic_audit_checkpoint_no_update_delete
        BEFORE UPDATE OR DELETE ON {CHECKPOINT_TABLE}
        FOR EACH ROW EXECUTE FUNCTION clinic_audit_append_only()""",
    f"""CREATE TRIGGER clinic_audit_checkpoint_no_truncate BEFORE TRUNCATE ON {CHECKPOINT_TABLE}
        FOR EACH STATEMENT EXECUTE FUNCTION clinic_audit_append_only()""",
    f"""CREATE TRIGGER clinic_audit_head_forward_only BEFORE UPDATE OR DELETE ON {HEAD_TABLE}
        FOR EACH ROW EXECUTE FUNCTION clinic_audit_head_forward_only()""",
    f"""CREATE TRIGGER clinic_audit_head_no_truncate BEFORE TRUNCATE ON {HEAD_TABLE}
        FOR EACH STATEMENT EXECUTE FUNCTION clinic_audit_append_only()""",
]
_PG_GUARDS_REMOVE = [
    f"DROP TRIGGER IF EXISTS clinic_audit_checkpoint_no_update_delete ON {CHECKPOINT_TABLE}",
    f"DROP TRIGGER IF EXISTS clinic_audit_checkpoint_no_truncate ON {CHECKPOINT_TABLE}",
    f"DROP TRIGGER IF EXISTS clinic_audit_head_forward_only ON {HEAD_TABLE}",
    f"DROP TRIGGER IF EXISTS clinic_audit_head_no_truncate ON {HEAD_TABLE}",
    "DROP FUNCTION IF EXISTS clinic_audit_head_forward_only()",
    _PG_FUNCTION_V1,
]

# -- SQLite -----------------------------------------------------------------------------------

# SQLite has no TRUNCATE: a DELETE without WHERE fires the DELETE trigger (which also turns off
# its truncate optimisation).
_SQLITE_INSTALL = [
    f"""CREATE TRIGGER clinic_audit_no_{op.lower()} BEFORE {op} ON {TABLE}
        WHEN clinic_audit_guard()
        BEGIN SELECT RAISE(ABORT, '{REFUSAL}: {op} refused'); END"""
    for op in ("UPDATE", "DELETE")
]
_SQLITE_REMOVE = [f"DROP TRIGGER IF EXISTS clinic_audit_no_{op}" for op in ("update", "delete")]
# Datetimes are stored as ISO text in SQLite, so comparing them as text orders them in time.
_SQLITE_GUARDS = [
    *(
        f"""CREATE TRIGGER clinic_audit_checkpoint_no_{op.lower()} BEFORE {op}
            ON {CHECKPOINT_TABLE} WHEN clinic_audit_guard()
            BEGIN SELECT RAISE(ABORT, '{REFUSAL}: {op} refused on {CHECKPOINT_TABLE}'); END"""
        for op in ("UPDATE", "DELETE")
    ),
    f"""CREATE TRIGGER clinic_audit_head_no_delete BEFORE DELETE ON {HEAD_TABLE}
        WHEN clinic_audit_guard()
        BEGIN SELECT RAISE(ABORT, '{REFUSAL}: DELETE refused on {HEAD_TABLE}'); END""",
    f"""CREATE TRIGGER clinic_audit_head_no_rewind BEFORE UPDATE ON {HEAD_TABLE}
        WHEN clinic_audit_guard() AND (
            NEW.id IS NOT OLD.id OR NEW.seq < OLD.seq
            OR (OLD.at IS NOT NULL AND (NEW.at IS NULL OR NEW.at < OLD.at)))
        BEGIN SELECT RAISE(ABORT, '{REFUSAL}: UPDATE refused on {HEAD_TABLE}'); END""",
]
_SQLITE_GUARDS_REMOVE = [
    "DROP TRIGGER IF EXISTS clinic_audit_checkpoint_no_update",
    "DROP TRIGGER IF EXISTS clinic_audit_checkpoint_no_delete",
    "DROP TRIGGER IF EXISTS clinic_audit_head_no_delete",
    "DROP TRIGGER IF EXISTS clinic_audit_head_no_rewind",
]


def _run(schema_editor: BaseDatabaseSchemaEditor, by_vendor: dict[str, list[str]]) -> None:
    vendor = schema_editor.connection.vendor
    statements = by_vendor.get(vendor)
    if statements is None:
        raise NotImplementedError(f"no append-only audit triggers for {vendor}")
    for sql in statements:
        schema_editor.execute(sql, params=None)


def triggers_install(schema_editor: BaseDatabaseSchemaEditor) -> None:
    """Migration 0002: the append-only triggers on the events table (PostgreSQL or SQLite)."""
    _run(schema_editor, {"postgresql": _PG_INSTALL, "sqlite": _SQLITE_INSTALL})


def triggers_remove(schema_editor: BaseDatabaseSchemaEditor) -> None:
    vendor = schema_editor.connection.vendor
    for sql in {"postgresql": _PG_REMOVE, "sqlite": _SQLITE_REMOVE}.get(vendor, []):
        schema_editor.execute(sql, params=None)


def guards_install(schema_editor: BaseDatabaseSchemaEditor) -> None:
    """Migration 0006: the switch for owners and maintainers only; checkpoints append-only; the
    head forward-only. Runs after :func:`triggers_install`."""
    _run(schema_editor, {"postgresql": _PG_GUARDS, "sqlite": _SQLITE_GUARDS})


def guards_remove(schema_editor: BaseDatabaseSchemaEditor) -> None:
    """Undo :func:`guards_install`, back to migration 0002's triggers."""
    vendor = schema_editor.connection.vendor
    for sql in {"postgresql": _PG_GUARDS_REMOVE, "sqlite": _SQLITE_GUARDS_REMOVE}.get(vendor, []):
        schema_editor.execute(sql, params=None)


def _guard() -> int:
    """1 (refuse) unless this thread is inside :func:`audit_maintenance`."""
    return 0 if getattr(_state, "maintenance", False) else 1


def connection_prepare(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    """``connection_created`` receiver: give SQLite connections ``clinic_audit_guard()``."""
    if connection.vendor == "sqlite":
        connection.connection.create_function("clinic_audit_guard", 0, _guard)


@contextmanager
def audit_maintenance(using: str = "default") -> Iterator[None]:
    """Let this thread's connection change audit rows, for emptying a test database only.

    Nothing in the application calls this; the test suite does, around Django's ``flush``. On
    PostgreSQL it only works for the tables' owner or a ``clinic_audit_maintainer`` member.
    """
    connection = connections[using]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET clinic.audit_maintenance = 'on'")
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET clinic.audit_maintenance")
    else:
        _state.maintenance = True
        try:
            yield
        finally:
            _state.maintenance = False
