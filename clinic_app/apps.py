from __future__ import annotations

from django.apps import AppConfig


class ClinicAppConfig(AppConfig):
    name = "clinic_app"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from clinic_app import signals  # noqa: F401  (connects the auth audit receivers)
