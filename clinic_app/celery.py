"""The Celery application. Settings come from Django's (``CELERY_*``)."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_process_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinic_app.settings")

app = Celery("clinic_app")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["clinic_app.answers", "clinic_app.library"])


@worker_process_shutdown.connect
def _worker_process_shutdown(pid: int | None = None, **kwargs: object) -> None:
    """A pool process ended: its live gauges leave the multiprocess metrics."""
    from clinic_app.observability.metrics import process_exited

    process_exited(pid or os.getpid())
