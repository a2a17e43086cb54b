"""The Celery application. Settings come from Django's (``CELERY_*``)."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinic_app.settings")

app = Celery("clinic_app")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["clinic_app"])
