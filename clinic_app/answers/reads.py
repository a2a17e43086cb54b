"""Audited reads of the answer path: what a clinician opened, and the feedback queue an admin
reviewed, each fetched and recorded together so a view cannot serve one without the other.

Attempts on answers that are not the user's are recorded too (as failures, with the reason),
and then answered exactly like a missing answer: nothing tells one clinician that another's
answer exists.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.paginator import Page

from clinic_app.answers import selectors
from clinic_app.answers.contracts import AnswerPayload
from clinic_app.audit.record import audit_record

NOT_FOUND = "not found among the user's answers"


def answer_view(*, user: User, answer_id: int, source_ip: str = "") -> AnswerPayload | None:
    """The user's answer as the page shows it, or None; the attempt is audited either way."""
    answer = selectors.answer_get_for_user(user=user, answer_id=answer_id)
    audit_record(
        action="answer.viewed",
        actor=user,
        object_type="answer",
        object_id=answer_id,
        outcome="success" if answer is not None else "failure",
        source_ip=source_ip,
        details={} if answer is not None else {"reason": NOT_FOUND},
    )
    return None if answer is None else selectors.answer_payload(answer)


def thread_view(*, user: User, answer_id: int, source_ip: str = "") -> list[AnswerPayload] | None:
    """The whole conversation of the user's answer, first turn first, or None; audited."""
    turns = selectors.thread_payload_for_user(user=user, answer_id=answer_id)
    details: dict[str, Any] = (
        {"thread": True, "answer_ids": [t["id"] for t in turns]}
        if turns is not None
        else {"thread": True, "reason": NOT_FOUND}
    )
    audit_record(
        action="answer.viewed",
        actor=user,
        object_type="answer",
        object_id=answer_id,
        outcome="success" if turns is not None else "failure",
        source_ip=source_ip,
        details=details,
    )
    return turns


def feedback_queue_view(
    *, user: User, include_reviewed: bool, page: str | int | None, source_ip: str = ""
) -> Page[Any]:
    """A page of the feedback queue; audited, since it shows clinicians' questions."""
    shown = selectors.feedback_queue_page(include_reviewed=include_reviewed, page=page)
    audit_record(
        action="feedback.queue_viewed",
        actor=user,
        source_ip=source_ip,
        details={
            "page": shown.number,
            "items": len(shown),
            "include_reviewed": include_reviewed,
            "feedback_ids": [f.pk for f in shown],
        },
    )
    return shown
