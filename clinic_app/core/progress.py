"""Progress for people who wait: a bar with rate and ETA on a terminal, one line per 10% in logs.

Commands (``setup_demo``, ``ingest``, ``evaluate``) and benchmarks report through
:func:`progress_reporter`, which fits the ``progress(done, total)`` callbacks of the services.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, Protocol

from tqdm import tqdm

Progress = Callable[[int, int], None]


class Stream(Protocol):
    """Where progress goes: a file or Django's ``OutputWrapper``."""

    def write(self, text: str, /) -> Any: ...

    def flush(self) -> Any: ...


class _LogLines:
    """Plain lines for logs and pipes: one each time another 10% is done, with rate and ETA."""

    def __init__(self, desc: str, unit: str, stream: Stream) -> None:
        self.desc, self.unit, self.stream = desc, unit, stream
        self.started = time.monotonic()
        self.next_tenth = 1

    def __call__(self, done: int, total: int) -> None:
        if total <= 0:
            return
        tenth = done * 10 // total
        if tenth < self.next_tenth:
            return
        self.next_tenth = tenth + 1
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = done / elapsed
        eta = (total - done) / rate if rate > 0 else 0.0
        self.stream.write(
            f"{self.desc}: {done}/{total} {self.unit}s ({tenth * 10}%), "
            f"{rate:.1f} {self.unit}s/s, ETA {eta:.0f} s\n"
        )
        self.stream.flush()


class _Bar:
    """A tqdm bar that follows ``(done, total)`` callbacks; closed when done reaches total."""

    def __init__(self, desc: str, unit: str, stream: Stream) -> None:
        self.desc, self.unit, self.stream = desc, unit, stream
        self.bar: tqdm[None] | None = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = tqdm(total=total, desc=self.desc, unit=self.unit, file=self.stream)
        if total != self.bar.total:
            self.bar.total = total
        self.bar.update(done - self.bar.n)
        if done >= total:
            self.bar.close()


def progress_reporter(
    desc: str, *, unit: str = "item", stream: Stream | None = None, enabled: bool = True
) -> Progress:
    """A ``progress(done, total)`` callback: a live bar when ``stream`` is a terminal, else a
    line per 10%; does nothing when ``enabled`` is false."""
    out = stream if stream is not None else sys.stderr
    if not enabled:
        return lambda done, total: None
    if getattr(out, "isatty", lambda: False)():
        return _Bar(desc, unit, out)
    return _LogLines(desc, unit, out)
