from __future__ import annotations

from django.apps import AppConfig
from django.db.backends.signals import connection_created


class ClinicAppConfig(AppConfig):
    name = "clinic_app"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from clinic_app import login_lockout, signals  # noqa: F401  (connect the audit receivers)
        from clinic_app.audit_triggers import connection_prepare

        connection_created.connect(connection_prepare, dispatch_uid="clinic_audit_guard")
