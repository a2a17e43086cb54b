"""Celery tasks: thin wrappers that call one service each.

Tasks take ids, serialise to JSON, and are idempotent: ``acks_late`` with
``reject_on_worker_lost`` redelivers a task whose worker died, and the service then restarts the
half-streamed answer instead of producing a second one.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from celery import Task
from django.conf import settings
from django.db import DatabaseError

from clinic_app import library, services
from clinic_app.celery import app
from clinic_app.checkpoints import CheckpointWriter
from clinic_app.logs import log_context
from clinic_app.streaming import ChannelSink

log = logging.getLogger(__name__)

# Streamed-text checkpoints of this process's answers, saved on one connection (see checkpoints).
_checkpoints = CheckpointWriter(services.answer_checkpoint)
DB_RETRY_S = 5
DB_UNAVAILABLE_MESSAGE = (
    "The answer could not be generated: the database is unavailable. Try again in a minute; "
    "if this persists, contact support."
)

# Embedded default: tasks run in this process, on threads, so the consumer's loop never blocks.
_inprocess_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="answer-task")
# Library work (ingestion, publishing) gets its own thread, so answers never queue behind it.
_library_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="library-task")


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
    with log_context(answer_id=answer_id):
        _generate_answer(self, answer_id)


def _generate_answer(self: Task, answer_id: int) -> None:
    sink = ChannelSink(answer_id, checkpoint=partial(_checkpoints.submit, answer_id))
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


@app.task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=settings.INGEST_TASK_TIME_LIMIT,
)
def ingest_job(self: Task, job_id: int) -> None:
    """Ingest an upload job's files (idempotent: a redelivered job starts over safely)."""
    with log_context(job_id=job_id):
        try:
            library.ingest_job_run(job_id=job_id)
        except Exception as exc:
            log.exception("ingest job %s failed", job_id)
            library.ingest_job_fail(
                job_id=job_id,
                message=f"The ingestion stopped on an internal error ({type(exc).__name__}).",
            )
            raise


@app.task(acks_late=True, reject_on_worker_lost=True, time_limit=settings.CELERY_TASK_TIME_LIMIT)
def publish_index(actor: str) -> None:
    """Publish a new index version after a change to what answers may cite."""
    library.index_publish(actor=actor)


def enqueue_ingest(job_id: int) -> None:
    if settings.CELERY_TASK_INPROCESS:
        _library_pool.submit(_apply_inprocess, ingest_job, job_id)
    else:
        ingest_job.delay(job_id)


def enqueue_publish(actor: str) -> None:
    if settings.CELERY_TASK_INPROCESS:
        _library_pool.submit(_apply_inprocess, publish_index, actor)
    else:
        publish_index.delay(actor)


def _apply_inprocess(task: Task, *args: object) -> None:
    from django.db import close_old_connections

    close_old_connections()
    try:
        task.apply(args=args)
    finally:
        close_old_connections()
