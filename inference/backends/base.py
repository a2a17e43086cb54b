"""The backend interface every generation engine implements."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

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


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path`` (a model folder's config or install manifest); ``{}`` when the
    file is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
