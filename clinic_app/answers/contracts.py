"""What the browser and API clients receive, typed in one place.

The answer payload goes to the page over the websocket (``done`` events), in the JSON API
(``api/answers/<id>/``, ``api/answers/<id>/thread/``) and to ``manage.py ask --json``. It is
built by ``selectors.answer_payload`` (a recorded answer) and ``streaming.unrecorded_failure``
(an answer the database could not record); both return this shape, and mypy holds them to it.
Flag kinds are ``inference.types.FlagKind`` values, handed to the page with ``json_script``.
"""

# No ``from __future__ import annotations`` here: TypedDict reads ``NotRequired`` at runtime.
from typing import NotRequired, TypedDict


class FlagPayload(TypedDict):
    """Something a check found (``kind``: an ``inference.types.FlagKind`` value)."""

    kind: str
    detail: str
    sentence: NotRequired[str]  # the summary's sentence, for sentence flags that quote it


class GuidelinePayload(TypedDict):
    key: str
    title: str
    organisation: str
    year: int | None
    doi: str
    url: str
    active: bool


class PassagePayload(TypedDict):
    id: int
    text: str
    section: str
    guideline: GuidelinePayload


class CitationPayload(TypedDict):
    """A source given to the model: its number in the answer, whether the answer cites it."""

    number: int
    cited: bool
    score: float
    passage: PassagePayload


class EvidenceGuideline(TypedDict):
    key: str
    title: str
    organisation: str
    year: int | None


class EvidencePayload(TypedDict):
    """One verbatim sentence of "What the guidelines say" (``source``: its citation number)."""

    source: int
    text: str
    score: float
    passage_id: int
    section: str
    guideline: EvidenceGuideline


class FeedbackPayload(TypedDict):
    id: int
    helpful: bool
    category: str
    comment: str
    updated_at: str


class BasisPayload(TypedDict):
    """What the answer was based on, for review."""

    backend: str
    model: str
    model_version: str
    index_version: int | None
    top_score: float | None
    asked_at: str | None
    finished_at: str | None
    prompt_sha256: NotRequired[str]  # auditors only


class AnswerPayload(TypedDict):
    """Everything the page shows for an answer, finished or in progress."""

    id: int
    question: str
    status: str  # an ``AnswerStatus`` value
    text: str
    message: str
    disclaimer: str
    flags: list[FlagPayload]
    evidence: list[EvidencePayload]
    citations: list[CitationPayload]
    chunks_sent: int
    attempts: int
    thread_id: int | None
    turn: int | None
    follow_up_of: int | None
    feedback: FeedbackPayload | None
    basis: BasisPayload
    recorded: NotRequired[bool]  # False: the database could not record it


class AuditAnswerPayload(AnswerPayload):
    """An answer as the auditor's event detail shows it: what the clinician saw, who asked,
    and the conversation before it."""

    asked_by: str
    earlier_turns: list[AnswerPayload]
