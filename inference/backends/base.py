"""The backend interface every generation engine implements."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from inference.types import GenerationRequest, ModelInfo


@runtime_checkable
class Backend(Protocol):
    """A text generator that streams its output.

    ``stream`` yields text chunks (one or more tokens each) as the model produces them and
    returns when generation ends. Setting ``cancel`` stops generation promptly and releases the
    engine's resources (for a server: the HTTP stream is closed so the server aborts the
    request); the iterator then raises :class:`inference.errors.Cancelled`. Failures raise a
    subclass of :class:`inference.errors.BackendError`.
    """

    info: ModelInfo

    def stream(
        self, request: GenerationRequest, cancel: threading.Event | None = None
    ) -> Iterator[str]: ...

    def count_tokens(self, text: str) -> int:
        """Number of tokens ``text`` takes with the served model's tokenizer."""
        ...
