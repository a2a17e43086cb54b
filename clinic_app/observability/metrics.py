"""Prometheus metrics for operators (``prometheus-client``), served at ``/<METRICS_PATH>``.

What is measured: answers by outcome, time to first token, whole answer, generation speed,
queue wait (question asked to generation started), retrieval latency, open websockets, ingest
jobs by final state and their records per second, audit append latency, sign-in failures and
lockouts, and the live index version and model. Labels are outcomes, states and model names:
never question text, user names or identifiers.

Processes. In the embedded default answers run on threads of the web process, whose registry
``/metrics`` serves. With Celery workers (production), every process must write to a shared
folder: set ``PROMETHEUS_MULTIPROC_DIR`` (an empty directory, emptied at deployment start) in
the environment of the web server *and* of every worker, and ``/metrics`` on the web server
aggregates all of them (``prometheus_client``'s multiprocess mode; see docs/observability.md).
This module imports no Django: the view lives in ``clinic_app.observability.views``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

# The multiprocess folder must exist before the first metric is written.
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

OUTCOMES = ("complete", "refused", "failed", "cancelled", "expired")
_SECONDS = (0.25, 0.5, 1, 2, 3, 5, 8, 13, 21, 34, 55, 90, 150, 300)
_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

ANSWERS = Counter("clinic_answers", "Answers finished, by outcome.", ["outcome"])
FIRST_TOKEN = Histogram(
    "clinic_answer_first_token_seconds",
    "From the start of generation work (retrieval) to the model's first text.",
    buckets=_SECONDS,
)
ANSWER_SECONDS = Histogram(
    "clinic_answer_seconds",
    "Whole answer, start of work to finished (complete answers).",
    buckets=_SECONDS,
)
TOKENS_PER_SECOND = Histogram(
    "clinic_generation_tokens_per_second",
    "Generated tokens per second after the first token (complete answers).",
    buckets=(1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128),
)
QUEUE_WAIT = Histogram(
    "clinic_answer_queue_wait_seconds",
    "From the question being asked to a worker starting its answer.",
    buckets=_SECONDS,
)
RETRIEVAL_SECONDS = Histogram(
    "clinic_retrieval_seconds", "Embedding the question and searching the index.", buckets=_FAST
)
WEBSOCKETS = Gauge(
    "clinic_websockets_open", "Websockets open on the ask page.", multiprocess_mode="livesum"
)
INGEST_JOBS = Counter("clinic_ingest_jobs", "Upload jobs finished, by final state.", ["state"])
INGEST_RECORDS_PER_SECOND = Histogram(
    "clinic_ingest_records_per_second",
    "Documents ingested per second by a finished upload job.",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 25, 50, 100),
)
AUDIT_APPEND_SECONDS = Histogram(
    "clinic_audit_append_seconds", "Appending one event to the audit chain.", buckets=_FAST
)
LOGIN_FAILURES = Counter("clinic_login_failures", "Failed sign-ins.")
LOGIN_LOCKOUTS = Counter("clinic_login_lockouts", "Sign-ins locked out by throttling.")
INDEX_VERSION = Gauge(
    "clinic_index_version",
    "The live guideline index version last searched.",
    multiprocess_mode="max",
)
MODEL_INFO = Gauge(
    "clinic_model_info",
    "The generator that wrote the last answer (value 1), by backend, model and version.",
    ["backend", "model", "version"],
    multiprocess_mode="max",  # one series per model across processes, no pid label
)


def model_seen(backend: str, model: str, version: str) -> None:
    """Record the generator in use (one series per backend/model/version, value 1)."""
    MODEL_INFO.labels(backend=backend, model=model, version=version or "unknown").set(1)


@contextmanager
def timed(histogram: Histogram) -> Iterator[None]:
    """Observe the block's duration in seconds."""
    started = time.perf_counter()
    try:
        yield
    finally:
        histogram.observe(time.perf_counter() - started)


def exposition() -> tuple[bytes, str]:
    """The metrics text and its content type: every process's in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def process_exited(pid: int) -> None:
    """Drop a finished worker process's live gauges (multiprocess mode only)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)
