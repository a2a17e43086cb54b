"""``manage.py db_roles``: create or update the least-privilege role the application runs as.

Run by the tables' owner after every ``migrate`` (docker-compose's ``migrate`` service does):
the owner keeps ALTER, DROP, TRIGGER and TRUNCATE, and only the owner (or a member of
``clinic_audit_maintainer``) may use the audit maintenance switch, so the app role gets:

- CONNECT on the database and USAGE on the schema, nothing it could CREATE there;
- SELECT, INSERT, UPDATE, DELETE on the app's ordinary tables (SELECT only on django_migrations);
- SELECT, INSERT on the audit events and checkpoints, SELECT, INSERT, UPDATE on the chain head;
- USAGE, SELECT on the sequences.

Then it checks the result from the catalogue and fails if the app role could still change the
audit log: superuser or role-creating attributes, ownership of (or membership in the owner of)
any table, membership in the maintainer role, or a forbidden privilege on an audit table.
"""

from __future__ import annotations

import os
import re
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from django.db.migrations.recorder import MigrationRecorder

from clinic_app.audit.triggers import MAINTAINER_ROLE
from clinic_app.models import AuditCheckpoint, AuditEvent, AuditHead

_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# Role attributes that would let the app role step around table privileges and triggers, and
# the ALTER ROLE option that clears each.
_DANGEROUS = {
    "rolsuper": "NOSUPERUSER",
    "rolcreaterole": "NOCREATEROLE",
    "rolcreatedb": "NOCREATEDB",
    "rolreplication": "NOREPLICATION",
    "rolbypassrls": "NOBYPASSRLS",
}


def _audit_privileges() -> dict[str, tuple[str, ...]]:
    """Table -> what the app role may do on it; everything else on these tables is refused."""
    return {
        AuditEvent._meta.db_table: ("SELECT", "INSERT"),
        AuditCheckpoint._meta.db_table: ("SELECT", "INSERT"),
        AuditHead._meta.db_table: ("SELECT", "INSERT", "UPDATE"),
    }


_ALL_TABLE_PRIVILEGES = (
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "TRUNCATE",
    "REFERENCES",
    "TRIGGER",
)


def role_problems(*, cursor: CursorWrapper, role: str) -> list[str]:
    """What would let ``role`` change or bypass the audit log in this database (empty: none)."""
    problems: list[str] = []
    cursor.execute(f"SELECT {', '.join(_DANGEROUS)} FROM pg_roles WHERE rolname = %s", [role])
    row = cursor.fetchone()
    if row is None:
        return [f"role {role} does not exist"]
    problems += [f"{role} has {name}" for name, value in zip(_DANGEROUS, row, strict=True) if value]
    # Owning a table, or belonging to its owner, allows ALTER/DROP TRIGGER and the switch.
    cursor.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'S')"
        " AND pg_has_role(%s, c.relowner, 'MEMBER') ORDER BY 1",
        [role],
    )
    owned = [name for (name,) in cursor.fetchall()]
    if owned:
        problems.append(f"{role} owns or belongs to the owner of {', '.join(owned[:5])}")
    cursor.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %s"
        " AND pg_has_role(%s, oid, 'MEMBER'))",
        [MAINTAINER_ROLE, role],
    )
    if cursor.fetchone()[0]:
        problems.append(f"{role} is a member of {MAINTAINER_ROLE}")
    for table, allowed in _audit_privileges().items():
        for privilege in _ALL_TABLE_PRIVILEGES:
            if privilege in allowed:
                continue
            cursor.execute("SELECT has_table_privilege(%s, %s, %s)", [role, table, privilege])
            if cursor.fetchone()[0]:
                problems.append(f"{role} has {privilege} on {table}")
    cursor.execute("SELECT has_schema_privilege(%s, current_schema(), 'CREATE')", [role])
    if cursor.fetchone()[0]:
        problems.append(f"{role} may CREATE in the schema")
    return problems


class Command(BaseCommand):
    help = (
        "Create or update the database role the application runs as, with least privilege "
        "(no UPDATE/DELETE/TRUNCATE on the audit tables). Run as the tables' owner after migrate."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--app-role", default="clinic_app", help="the role to create/update")
        parser.add_argument(
            "--password-env",
            default="",
            help="name of the environment variable holding the role's password (unchanged when "
            "not given; the password never appears on the command line)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if connection.vendor != "postgresql":
            raise CommandError("db_roles manages PostgreSQL roles; this database is not one")
        role = options["app_role"]
        if not _ROLE_NAME.match(role):
            raise CommandError(f"--app-role {role!r}: use lower-case letters, digits and _")
        password: str | None = None
        if options["password_env"]:
            password = os.environ.get(options["password_env"], "")
            if not password:
                raise CommandError(f"{options['password_env']} is empty or not set")
        with transaction.atomic(), connection.cursor() as cursor:
            self._role_ensure(cursor=cursor, role=role, password=password)
            self._grants_apply(cursor=cursor, role=role)
            problems = role_problems(cursor=cursor, role=role)
            if problems:
                raise CommandError("the app role is not least-privilege: " + "; ".join(problems))
        self.stdout.write(f"role {role}: least-privilege grants applied and checked")

    def _role_ensure(self, *, cursor: CursorWrapper, role: str, password: str | None) -> None:
        quoted = connection.ops.quote_name(role)
        cursor.execute("SELECT current_user")
        if cursor.fetchone()[0] == role:
            raise CommandError(f"run db_roles as the tables' owner, not as the app role {role}")
        cursor.execute(f"SELECT {', '.join(_DANGEROUS)} FROM pg_roles WHERE rolname = %s", [role])
        row = cursor.fetchone()
        if row is None:
            cursor.execute(
                f"CREATE ROLE {quoted} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE"
                " NOREPLICATION NOBYPASSRLS"
            )
        else:
            # Only attributes that are set: changing SUPERUSER needs a superuser even to clear it.
            attributes = [clear for clear, on in zip(_DANGEROUS.values(), row, strict=True) if on]
            cursor.execute(f"ALTER ROLE {quoted} LOGIN {' '.join(attributes)}")
        if password is not None:
            # Client-side bound, so the value is quoted as a literal (DDL takes no parameters).
            cursor.execute(f"ALTER ROLE {quoted} PASSWORD %s", [password])
        # A direct grant of the maintainer role is undone; an indirect one (through another
        # role) is reported by role_problems, since revoking it would touch that other role.
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_auth_members m"
            " JOIN pg_roles granted ON granted.oid = m.roleid"
            " JOIN pg_roles member ON member.oid = m.member"
            " WHERE granted.rolname = %s AND member.rolname = %s)",
            [MAINTAINER_ROLE, role],
        )
        if cursor.fetchone()[0]:
            cursor.execute(f"REVOKE {connection.ops.quote_name(MAINTAINER_ROLE)} FROM {quoted}")

    def _grants_apply(self, *, cursor: CursorWrapper, role: str) -> None:
        quoted = connection.ops.quote_name(role)
        cursor.execute("SELECT current_database(), current_schema()")
        database, schema = cursor.fetchone()
        schema_q = connection.ops.quote_name(schema)
        statements = [
            f"GRANT CONNECT ON DATABASE {connection.ops.quote_name(database)} TO {quoted}",
            f"GRANT USAGE ON SCHEMA {schema_q} TO {quoted}",
            # PostgreSQL < 15 lets every role create objects in public.
            f"REVOKE CREATE ON SCHEMA {schema_q} FROM PUBLIC",
            f"REVOKE CREATE ON SCHEMA {schema_q} FROM {quoted}",
            # Start from nothing, so a privilege granted by hand earlier does not survive.
            f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema_q} FROM {quoted}",
            f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema_q} FROM {quoted}",
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema_q} TO {quoted}",
            f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema_q} TO {quoted}",
            f"REVOKE INSERT, UPDATE, DELETE ON"
            f" {connection.ops.quote_name(MigrationRecorder.Migration._meta.db_table)}"
            f" FROM {quoted}",
        ]
        for table, allowed in _audit_privileges().items():
            table_q = connection.ops.quote_name(table)
            statements += [
                f"REVOKE ALL ON {table_q} FROM {quoted}",
                f"REVOKE ALL ON {table_q} FROM PUBLIC",
                f"GRANT {', '.join(allowed)} ON {table_q} TO {quoted}",
            ]
        for sql in statements:
            cursor.execute(sql)
