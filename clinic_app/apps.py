from __future__ import annotations

from django.apps import AppConfig
from django.db.backends.signals import connection_created


class ClinicAppConfig(AppConfig):
    name = "clinic_app"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported for their receivers: sign-in, sign-out and role-change audit records.
        from clinic_app.accounts import login_lockout, signals  # noqa: F401
        from clinic_app.audit.triggers import connection_prepare

        connection_created.connect(connection_prepare, dispatch_uid="clinic_audit_guard")
