"""Close the maintenance switch to the application's role, and protect the rest of the chain.

``SET clinic.audit_maintenance = 'on'`` now lets only the tables' owner (or a member of
``clinic_audit_maintainer``) change audit rows; checkpoints become append-only; the head may only
move forward and can no longer be deleted or truncated. See ``clinic_app/audit/triggers.py``.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

from clinic_app.audit.triggers import guards_install, guards_remove


def install(apps: Any, schema_editor: Any) -> None:
    guards_install(schema_editor)


def remove(apps: Any, schema_editor: Any) -> None:
    guards_remove(schema_editor)


class Migration(migrations.Migration):
    dependencies = [("clinic_app", "0005_answer_attempts_job_heartbeat")]

    operations = [migrations.RunPython(install, remove)]
