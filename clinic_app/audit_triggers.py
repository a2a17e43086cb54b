"""The database's side of the append-only audit log: triggers that refuse UPDATE, DELETE and
TRUNCATE on ``clinic_app_auditevent``, and the one switch that lets a test empty its database.

PostgreSQL raises from a trigger function; SQLite aborts from triggers that call
``clinic_audit_guard()``, a function this app registers on each of its connections. A connection
without it (the sqlite3 shell, another program) fails on "no such function": refused as well.
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
REFUSAL = "the audit log is append-only"

_state = threading.local()

_PG_INSTALL = [
    f"""
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
    """,
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
# SQLite has no TRUNCATE: a DELETE without WHERE fires the DELETE trigger (which also turns off
# its truncate optimisation).
_SQLITE_INSTALL = [
    f"""CREATE TRIGGER clinic_audit_no_{op.lower()} BEFORE {op} ON {TABLE}
        WHEN clinic_audit_guard()
        BEGIN SELECT RAISE(ABORT, '{REFUSAL}: {op} refused'); END"""
    for op in ("UPDATE", "DELETE")
]
_SQLITE_REMOVE = [f"DROP TRIGGER IF EXISTS clinic_audit_no_{op}" for op in ("update", "delete")]


def triggers_install(schema_editor: BaseDatabaseSchemaEditor) -> None:
    """Create the append-only triggers on the connection's database (PostgreSQL or SQLite)."""
    vendor = schema_editor.connection.vendor
    statements = {"postgresql": _PG_INSTALL, "sqlite": _SQLITE_INSTALL}.get(vendor)
    if statements is None:
        raise NotImplementedError(f"no append-only audit triggers for {vendor}")
    for sql in statements:
        schema_editor.execute(sql, params=None)


def triggers_remove(schema_editor: BaseDatabaseSchemaEditor) -> None:
    vendor = schema_editor.connection.vendor
    for sql in {"postgresql": _PG_REMOVE, "sqlite": _SQLITE_REMOVE}.get(vendor, []):
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
    """Let this thread's connection delete audit rows, for emptying a test database only.

    Nothing in the application calls this; the test suite does, around Django's ``flush``.
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
