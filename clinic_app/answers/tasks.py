"""The answer task: a thin wrapper around :func:`services.answer_generate`.

Tasks take ids, serialise to JSON, and are idempotent: ``acks_late`` with
``reject_on_worker_lost`` redelivers a task whose worker died, and the service then restarts the
half-streamed answer instead of producing a second one.
"""

from __future__ import annotations

import logging
from functools import partial

from celery import Task as CeleryTask
from django.conf import settings
from django.db import DatabaseError

from clinic_app.answers import services
from clinic_app.answers.snapshots import SnapshotWriter
from clinic_app.answers.streaming import ChannelSink
from clinic_app.celery import app
from clinic_app.core.jobs import Task
from clinic_app.core.logs import log_context

log = logging.getLogger(__name__)

# Streamed-text snapshots of this process's answers, saved on one connection (see snapshots).
_snapshots = SnapshotWriter(services.answer_snapshot_save)
DB_RETRY_S = 5
DB_UNAVAILABLE_MESSAGE = (
    "The answer could not be generated: the database is unavailable. Try again in a minute; "
    "if this persists, contact support."
)


@app.task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=1,
    time_limit=settings.CELERY_TASK_TIME_LIMIT,
    soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT,
    name=Task.GENERATE_ANSWER.value,
)
def generate_answer(self: CeleryTask, answer_id: int) -> None:
    """Generate and stream the answer ``answer_id`` (idempotent)."""
    with log_context(answer_id=answer_id):
        _generate_answer(self, answer_id)


def _generate_answer(self: CeleryTask, answer_id: int) -> None:
    sink = ChannelSink(answer_id, snapshot=partial(_snapshots.submit, answer_id))
    try:
        services.answer_generate(answer_id=answer_id, sink=sink)
    except Exception as exc:
        log.exception("answer %s: task failed", answer_id)
        try:
            services.answer_fail(
                answer_id=answer_id,
                message="The answer could not be generated because of an internal error.",
                sink=sink,
            )
        except DatabaseError:
            # The database is unreachable (down, or out of connections): nothing can be saved.
            # Try once more shortly; after that, tell the page instead of leaving it waiting.
            if isinstance(exc, DatabaseError) and self.request.retries < self.max_retries:
                log.warning(
                    "answer %s: database unavailable; retrying in %ss", answer_id, DB_RETRY_S
                )
                raise self.retry(exc=exc, countdown=DB_RETRY_S) from exc
            sink.abandon(DB_UNAVAILABLE_MESSAGE)
        raise
