"""Celery tasks: thin wrappers that call one service each.

Tasks take ids, serialise to JSON, and are idempotent: ``acks_late`` with
``reject_on_worker_lost`` redelivers a task whose worker died, and the service then restarts the
half-streamed answer instead of producing a second one.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from celery import Task
from django.conf import settings

from clinic_app import services
from clinic_app.celery import app
from clinic_app.streaming import ChannelSink

log = logging.getLogger(__name__)

# Embedded default: tasks run in this process, on threads, so the consumer's loop never blocks.
_inprocess_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="answer-task")


@app.task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=1,
    time_limit=settings.CELERY_TASK_TIME_LIMIT,
    soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT,
)
def generate_answer(self: Task, answer_id: int) -> None:
    """Generate and stream the answer ``answer_id`` (idempotent)."""
    sink = ChannelSink(answer_id)
    try:
        services.answer_generate(answer_id=answer_id, sink=sink)
    except Exception:
        log.exception("answer %s: task failed", answer_id)
        services.answer_fail(
            answer_id=answer_id,
            message="The answer could not be generated because of an internal error.",
            sink=sink,
        )
        raise


def enqueue_answer(answer_id: int) -> None:
    """Send the answer's task to a worker, or to the in-process pool in the embedded default."""
    if settings.CELERY_TASK_INPROCESS:
        _inprocess_pool.submit(_run_inprocess, answer_id)
    else:
        generate_answer.delay(answer_id)


def _run_inprocess(answer_id: int) -> None:
    from django.db import close_old_connections

    close_old_connections()
    try:
        generate_answer.apply(args=(answer_id,))
    finally:
        close_old_connections()
