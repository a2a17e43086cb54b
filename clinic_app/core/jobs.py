"""Background work, by task name: services queue it here without importing the task modules.

The tasks live beside the services they call (``answers/tasks.py``, ``library/tasks.py``) and
import those services; services only name the task. With a broker (``CELERY_BROKER_URL``) the
task goes to a Celery worker; in the embedded default it runs in this process, on a thread, so
the websocket consumer's loop never blocks. Answers and library work (ingestion, publishing)
get separate threads, so answers never queue behind an upload.

The names are the ones these tasks had before ``clinic_app`` was split into packages, so work
already queued on a broker survives an upgrade.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum

from django.conf import settings
from django.db import close_old_connections, transaction

from clinic_app.celery import app


class Task(StrEnum):
    GENERATE_ANSWER = "clinic_app.tasks.generate_answer"
    INGEST_JOB = "clinic_app.tasks.ingest_job"
    PUBLISH_INDEX = "clinic_app.tasks.publish_index"


_answer_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="answer-task")
_library_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="library-task")
_POOLS = {
    Task.GENERATE_ANSWER: _answer_pool,
    Task.INGEST_JOB: _library_pool,
    Task.PUBLISH_INDEX: _library_pool,
}
_discovered = threading.Lock()
_registered = False


def enqueue(task: Task, *args: object) -> None:
    """Run ``task(*args)`` in the background now (a broker's worker, or a local thread)."""
    if settings.CELERY_TASK_INPROCESS:
        _POOLS[task].submit(_apply_inprocess, task, args)
    else:
        app.send_task(str(task), args=args)


def enqueue_on_commit(task: Task, *args: object) -> None:
    """Queue ``task(*args)`` once the current transaction commits (never for a rolled-back one)."""
    transaction.on_commit(lambda: enqueue(task, *args))


def _apply_inprocess(task: Task, args: tuple[object, ...]) -> None:
    close_old_connections()
    try:
        _task_modules_load()
        app.tasks[str(task)].apply(args=args)
    finally:
        close_old_connections()


def _task_modules_load() -> None:
    """Import the task modules (Celery's autodiscovery, which a worker does at start)."""
    global _registered
    with _discovered:
        if not _registered:
            app.loader.import_default_modules()
            _registered = True
