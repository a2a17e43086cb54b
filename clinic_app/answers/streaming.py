"""Delivering an answer as it is generated: sinks, batching, and the channel-layer publisher.

Generation runs in a worker thread or a Celery worker process, never on the server's event
loop. Text is flushed in small batches (``STREAM_FLUSH_MS``), each with a sequence number, so
the browser can detect a gap. The text so far is saved as a snapshot with its sequence number
(at most every ``STREAM_SNAPSHOT_MS``, before the chunk is published), so a page that reloads,
or that sees a gap, asks for the persisted state and goes on with the live stream after it; the
final event carries the whole persisted answer.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from channels.layers import get_channel_layer
from django.conf import settings

from clinic_app.answers.contracts import AnswerPayload

log = logging.getLogger(__name__)

# A chunk may wait this long for the channel layer; the final event may wait the full 10 s.
_PUBLISH_TIMEOUT_S = 2.0
_PUBLISH_BACKOFF_S = 1.0

# Saves the text streamed so far: (attempt, sequence number of its last chunk, text).
Snapshot = Callable[[int, int, str], object]

_server_loop: asyncio.AbstractEventLoop | None = None
_worker_loop: asyncio.AbstractEventLoop | None = None
_worker_loop_lock = threading.Lock()


def answer_group(answer_id: int) -> str:
    """Channel-layer group that receives one answer's events."""
    return f"answer.{answer_id}"


def user_group(user_id: int) -> str:
    """Channel-layer group that every open socket of one user joins: session events reach it."""
    return f"user.{user_id}"


def register_server_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Remember the ASGI server's loop: in-process tasks publish through it (in-memory layer)."""
    global _server_loop
    _server_loop = loop


def _publisher_loop() -> asyncio.AbstractEventLoop:
    """The loop publishes run on: the server's when in-process, else one kept alive per worker."""
    global _worker_loop
    if settings.CELERY_TASK_INPROCESS and _server_loop is not None and _server_loop.is_running():
        return _server_loop
    with _worker_loop_lock:
        if _worker_loop is None or not _worker_loop.is_running():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="layer-publisher", daemon=True).start()
            _worker_loop = loop
        return _worker_loop


def publish(group: str, message: dict[str, Any], *, timeout: float = 10.0) -> None:
    """Send ``message`` to ``group`` from a synchronous thread and wait for the send."""
    loop = _publisher_loop()
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        raise RuntimeError("publish() must not be called from the publisher's own loop")
    layer = get_channel_layer()
    assert layer is not None
    asyncio.run_coroutine_threadsafe(layer.group_send(group, message), loop).result(timeout)


class AnswerSink(Protocol):
    """Receives one answer's output as it is produced."""

    def begin(self, attempt: int) -> None:
        """Generation (re)starts; attempt 2 and later replace what earlier attempts sent."""
        ...

    def evidence(self, items: list[dict[str, Any]]) -> None:
        """The sources' own sentences chosen for the question, before the model writes."""
        ...

    def text(self, delta: str) -> None:
        """New answer text (may be buffered)."""
        ...

    def finish(self, payload: AnswerPayload) -> None:
        """The answer reached a final state; ``payload`` is its persisted form."""
        ...


class ChannelSink:
    """Publishes batched text chunks and the final answer to the answer's group."""

    def __init__(
        self,
        answer_id: int,
        *,
        flush_ms: int | None = None,
        snapshot: Snapshot | None = None,
        snapshot_ms: int | None = None,
    ) -> None:
        self.answer_id = answer_id
        self.group = answer_group(answer_id)
        self.flush_s = (flush_ms if flush_ms is not None else settings.STREAM_FLUSH_MS) / 1000
        self.snapshot_s = (
            snapshot_ms if snapshot_ms is not None else settings.STREAM_SNAPSHOT_MS
        ) / 1000
        self.seq = 0
        self.attempt = 1
        self._buffer: list[str] = []
        self._sent: list[str] = []  # this attempt's flushed chunks, for snapshots
        self._snapshot = snapshot
        self._last_flush = time.monotonic()
        self._last_snapshot = float("-inf")
        self._failed_at = float("-inf")

    def begin(self, attempt: int) -> None:
        self.attempt = attempt
        self.seq = 0
        self._buffer.clear()
        self._sent.clear()
        self._last_snapshot = time.monotonic()

    def _save(self) -> None:
        """Snapshot the text so far; like publishing, a failure never stops generation (the
        final save carries the whole text, and a page only repairs from a later snapshot)."""
        if self._snapshot is None:
            return
        self._last_snapshot = time.monotonic()
        try:
            self._snapshot(self.attempt, self.seq, "".join(self._sent))
        except Exception as exc:
            log.warning("answer %s: snapshot failed (%s); continuing", self.answer_id, exc)

    def _publish(self, message: dict[str, Any], *, final: bool = False) -> None:
        """Publish, but never let the channel layer break generation: the page repairs any
        gap from the persisted answer (``done``, or ``follow`` after a reconnect). After a
        failure, chunks are skipped for a second rather than each waiting on a dead layer."""
        now = time.monotonic()
        if not final and now - self._failed_at < _PUBLISH_BACKOFF_S:
            return
        try:
            publish(self.group, message, timeout=_PUBLISH_TIMEOUT_S)
        except Exception as exc:
            self._failed_at = time.monotonic()
            log.warning("answer %s: publishing failed (%s); continuing", self.answer_id, exc)

    def evidence(self, items: list[dict[str, Any]]) -> None:
        # Sent at once, never skipped: it is what the clinician reads while the model writes
        # (and it is persisted, so a page that missed it gets it with the snapshot or the end).
        self._publish(
            {
                "type": "answer.evidence",
                "answer_id": self.answer_id,
                "attempt": self.attempt,
                "evidence": items,
            },
            final=True,
        )

    def text(self, delta: str) -> None:
        self._buffer.append(delta)
        if time.monotonic() - self._last_flush >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        if not self._buffer:
            return
        chunk = "".join(self._buffer)
        self._buffer.clear()
        self.seq += 1
        self._sent.append(chunk)
        # Text and sequence number are saved together, so a snapshot is always a whole prefix.
        if time.monotonic() - self._last_snapshot >= self.snapshot_s:
            self._save()
        self._publish(
            {
                "type": "answer.chunk",
                "answer_id": self.answer_id,
                "seq": self.seq,
                "attempt": self.attempt,
                "text": chunk,
            }
        )

    def finish(self, payload: AnswerPayload) -> None:
        self.flush()
        self._publish(
            {
                "type": "answer.done",
                "answer_id": self.answer_id,
                "seq": self.seq,
                "answer": payload,
            },
            final=True,
        )

    def abandon(self, message: str) -> None:
        """End the stream with a failure that could not be saved (see ``unrecorded_failure``)."""
        self._buffer.clear()
        self.finish(unrecorded_failure(self.answer_id, message))


def unrecorded_failure(answer_id: int, message: str) -> AnswerPayload:
    """The final state of an answer that could not be recorded (the database is unreachable),
    shaped like a persisted answer so the page shows it like any other failure."""
    return {
        "id": answer_id,
        "question": "",
        "status": "failed",
        "text": "",
        "message": message,
        "disclaimer": "",
        "flags": [],
        "evidence": [],
        "citations": [],
        "chunks_sent": 0,
        "attempts": 0,
        "thread_id": None,
        "turn": None,
        "follow_up_of": None,
        "feedback": None,
        "recorded": False,
        "basis": {
            "backend": "",
            "model": "",
            "model_version": "",
            "index_version": None,
            "top_score": None,
            "asked_at": None,
            "finished_at": None,
        },
    }


class CollectingSink:
    """Keeps the streamed chunks in memory; used by the command line and by tests."""

    def __init__(self, echo: Any = None, on_evidence: Any = None) -> None:
        self.chunks: list[str] = []
        self.evidence_items: list[dict[str, Any]] = []
        self.final: AnswerPayload | None = None
        self._echo = echo
        self._on_evidence = on_evidence

    def begin(self, attempt: int) -> None:
        self.chunks.clear()
        self.evidence_items = []

    def evidence(self, items: list[dict[str, Any]]) -> None:
        self.evidence_items = list(items)
        if self._on_evidence is not None:
            self._on_evidence(self.evidence_items)

    def text(self, delta: str) -> None:
        self.chunks.append(delta)
        if self._echo is not None:
            self._echo(delta)

    def finish(self, payload: AnswerPayload) -> None:
        self.final = payload
