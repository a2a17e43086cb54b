"""Value types shared by prompts, backends and checks."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class GenerationRequest:
    """One completion to generate.

    ``prompt`` is the full text sent to the model (already formatted for it); generation stops
    at ``max_tokens`` new tokens or at the first of ``stop``, which is not included in the output.
    """

    prompt: str
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    temperature: float = 0.0
    request_id: str = ""


@dataclass(frozen=True)
class ModelInfo:
    """What a backend serves: recorded with every answer so its basis can be reviewed."""

    backend: str
    model: str
    version: str = ""
    context_tokens: int = 2048
    extra: dict[str, str] = field(default_factory=dict)
