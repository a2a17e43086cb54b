"""A scripted backend: a test double for service and websocket tests that are not about the model.

It implements the :class:`inference.backends.base.Backend` protocol exactly (streaming in chunks,
``max_tokens``, stop strings, cancellation, token counting) without loading any weights, so
tests of the answer path run in milliseconds and their outcome does not depend on what a real
model happens to write. Tests that are about the model use the real backends.

Tokens are whitespace-separated words: ``count_tokens`` and ``max_tokens`` agree with each
other, which is all the services rely on.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator

from inference.errors import Cancelled
from inference.types import GenerationRequest, ModelInfo

Script = Callable[[str], str]


class ScriptedBackend:
    """Streams ``script(prompt)`` word by word (``chunk_words`` words per chunk)."""

    def __init__(
        self,
        script: Script | str,
        *,
        chunk_words: int = 2,
        context_tokens: int = 32768,
        on_chunk: Callable[[int], None] | None = None,
    ) -> None:
        self.script: Script = (lambda _prompt: script) if isinstance(script, str) else script
        self.chunk_words = max(1, chunk_words)
        self.on_chunk = on_chunk
        self.prompts: list[str] = []  # every prompt received, for assertions
        self.info = ModelInfo(
            backend="scripted", model="scripted", version="1", context_tokens=context_tokens
        )

    def count_tokens(self, text: str) -> int:
        """Whitespace-separated words."""
        return len(text.split())

    def stream(
        self, request: GenerationRequest, cancel: threading.Event | None = None
    ) -> Iterator[str]:
        """The scripted text, cut at the first stop string and at ``max_tokens`` words."""
        self.prompts.append(request.prompt)
        text = self.script(request.prompt)
        for stop in request.stop:
            if stop and stop in text:
                text = text[: text.index(stop)]
        words = text.split(" ")
        kept: list[str] = []
        for word in words:
            if len(" ".join([*kept, word]).split()) > request.max_tokens:
                break
            kept.append(word)
        for n, start in enumerate(range(0, len(kept), self.chunk_words)):
            if cancel is not None and cancel.is_set():
                raise Cancelled("generation cancelled")
            if self.on_chunk is not None:
                self.on_chunk(n)
            piece = " ".join(kept[start : start + self.chunk_words])
            yield piece if start == 0 else " " + piece


def quote_first_source(prompt: str) -> str:
    """A script for :class:`ScriptedBackend`: the first sentence of source S1, cited, as a careful
    model would write it (the support check finds it supported). Without sources in the prompt,
    a plain sentence with no citation."""
    if '<source id="S1"' not in prompt:
        return "The sources given do not answer this question."
    body = prompt.split('<source id="S1"', 1)[1].split(">", 1)[1].split("</source>", 1)[0]
    first = re.split(r"(?<=[.!?])\s", " ".join(body.split()), maxsplit=1)[0]
    return f"{first.rstrip('.')} [S1]."
