"""Saving streamed text off the generation threads, on one database connection per process.

An answer can stream for minutes, and a worker streams many at once (one thread each). If each
thread held a database connection for the whole answer, concurrent answers would be capped by
the database's connection limit (100 by default in PostgreSQL) rather than by the model server.
So a generating thread gives its connection back before streaming (see ``services``), and its
snapshots go to this writer: one thread per process that keeps only the newest snapshot of
each answer and saves them in turn on its own connection. A snapshot is a whole prefix (text
and the number of its last chunk together), and ``services.answer_snapshot_save`` ignores one from a
replaced attempt or one that lands after the final save, so late or skipped writes are harmless.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

# (answer id, attempt, number of the last chunk in the text, text so far)
SaveFunction = Callable[[int, int, int, str], object]


class SnapshotWriter:
    """Coalesces snapshots per answer and saves them on one background thread."""

    def __init__(self, save: SaveFunction) -> None:
        self._save = save
        self._pending: dict[int, tuple[int, int, str]] = {}
        self._busy = 0  # snapshots taken from the queue and not yet saved
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, answer_id: int, attempt: int, seq: int, text: str) -> None:
        """Queue a snapshot; replaces any unsaved older one of the same answer. Never blocks."""
        with self._cond:
            self._pending[answer_id] = (attempt, seq, text)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="snapshot-writer", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until everything submitted so far is saved (or failed); for tests and shutdown."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._busy, timeout)

    def _run(self) -> None:
        from django.db import close_old_connections

        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._pending))
                batch, self._pending = self._pending, {}
                self._busy = len(batch)
            close_old_connections()  # drops a connection the database closed meanwhile
            for answer_id, (attempt, seq, text) in batch.items():
                try:
                    self._save(answer_id, attempt, seq, text)
                except Exception as exc:
                    # Generation goes on; the page repairs from a later snapshot or the end.
                    log.warning("answer %s: snapshot not saved (%s)", answer_id, exc)
            with self._cond:
                self._busy = 0
                self._cond.notify_all()
