"""Value types shared by prompts, backends and checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


@dataclass(frozen=True)
class GenerationRequest:
    """One completion to generate.

    ``prompt`` is the full text sent to the model (already formatted for it); generation stops
    at ``max_tokens`` new tokens or at the first of ``stop``, which is not included in the output.
    ``prefix``: where ``prompt`` starts with it, a leading part that is the same for every
    request (the instructions), which an in-process backend may read once and keep.
    """

    prompt: str
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    temperature: float = 0.0
    request_id: str = ""
    prefix: str = ""


@dataclass(frozen=True)
class ModelInfo:
    """What a backend serves: recorded with every answer so its basis can be reviewed."""

    backend: str
    model: str
    version: str = ""
    context_tokens: int = 2048
    extra: dict[str, str] = field(default_factory=dict)


class FlagKind(StrEnum):
    """What a check found in an answer (``Answer.flags[*]["kind"]``); the page, the audit pages
    and the evaluation read these values, handed to the page with ``json_script``."""

    INVALID_CITATION = "invalid_citation"  # a marker naming a source that was not given
    UNCITED_SENTENCE = "uncited_sentence"  # a sentence of the summary with no marker
    URL_REMOVED = "url_removed"  # a link no source contained, taken out
    MARKUP_REMOVED = "markup_removed"  # HTML-like markup no source contained, taken out
    WEAK_SUPPORT = "weak_support"  # a cited sentence its sources do not support
    TRUNCATED = "truncated"  # the answer reached the length limit
    SUMMARY_WITHHELD = "summary_withheld"  # the summary is folded away behind the quotes
    SUMMARY_SKIPPED = "summary_skipped"  # none written: the passages miss the question's words
    SAFETY_GATE = "safety_gate"  # the question was refused before retrieval
    NOT_COVERED = "not_covered"  # the passages do not cover the question's key terms


# Flags about one sentence of the summary (the page marks that sentence).
SENTENCE_FLAGS = frozenset(
    {FlagKind.WEAK_SUPPORT, FlagKind.UNCITED_SENTENCE, FlagKind.INVALID_CITATION}
)
