"""Library tasks: thin wrappers around the ingestion and publishing services.

Idempotent: ``acks_late`` with ``reject_on_worker_lost`` redelivers a task whose worker died; a
redelivered upload job starts over safely, and publishing twice publishes the same index.
"""

from __future__ import annotations

import logging

from celery import Task as CeleryTask
from django.conf import settings

from clinic_app.celery import app
from clinic_app.core.jobs import Task
from clinic_app.core.logs import log_context
from clinic_app.library.index_versions import index_publish
from clinic_app.library.uploads import ingest_job_fail, ingest_job_run

log = logging.getLogger(__name__)


@app.task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=settings.INGEST_TASK_TIME_LIMIT,
    name=Task.INGEST_JOB.value,
)
def ingest_job(self: CeleryTask, job_id: int) -> None:
    """Ingest an upload job's files (idempotent: a redelivered job starts over safely)."""
    with log_context(job_id=job_id):
        try:
            ingest_job_run(job_id=job_id)
        except Exception as exc:
            log.exception("ingest job %s failed", job_id)
            ingest_job_fail(
                job_id=job_id,
                message=f"The ingestion stopped on an internal error ({type(exc).__name__}).",
            )
            raise


@app.task(
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=settings.CELERY_TASK_TIME_LIMIT,
    name=Task.PUBLISH_INDEX.value,
)
def publish_index(actor: str) -> None:
    """Publish a new index version after a change to what answers may cite."""
    index_publish(actor=actor)
