"""Read-side queries and the JSON shapes the page and the API share."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.db.models import QuerySet

from clinic_app.models import Answer, AuditEvent, Guideline, Passage, Question, Role


def user_has_role(user: AbstractBaseUser | AnonymousUser, role: Role) -> bool:
    """Whether ``user`` is signed in and belongs to ``role``'s group."""
    if not user.is_authenticated:
        return False
    return bool(user.groups.filter(name=role.value).exists())  # type: ignore[attr-defined]


def question_list_for_user(*, user: User, limit: int = 50) -> QuerySet[Question]:
    """The user's own questions, newest first, with their answers."""
    return Question.objects.filter(user=user).select_related("answer")[:limit]


def answer_get_for_user(*, user: User, answer_id: int) -> Answer | None:
    """The answer if it belongs to ``user``; ``None`` otherwise (no leak of others' answers)."""
    return (
        Answer.objects.filter(pk=answer_id, question__user=user).select_related("question").first()
    )


def passage_payload(passage: Passage) -> dict[str, Any]:
    g = passage.guideline
    return {
        "id": passage.pk,
        "text": passage.text,
        "section": passage.section,
        "guideline": {
            "key": g.key,
            "title": g.title,
            "organisation": g.organisation,
            "year": g.year,
            "doi": g.doi,
            "url": g.url,
            "active": g.active,
        },
    }


def answer_payload(answer: Answer) -> dict[str, Any]:
    """Everything the page shows for a finished (or in-progress) answer."""
    citations = [
        {
            "number": c.number,
            "cited": c.cited,
            "score": round(c.score, 4),
            "passage": passage_payload(c.passage),
        }
        for c in answer.citations.select_related("passage__guideline").order_by("number")
    ]
    return {
        "id": answer.pk,
        "question": answer.question.text,
        "status": answer.status,
        "text": answer.text,
        "message": answer.message,
        "disclaimer": answer.disclaimer,
        "flags": answer.flags,
        "citations": citations,
        "chunks_sent": answer.chunks_sent,
        "basis": {
            "backend": answer.backend,
            "model": answer.model_name,
            "model_version": answer.model_version,
            "index_version": answer.index_version,
            "top_score": answer.top_score,
            "asked_at": answer.question.created_at.isoformat(),
            "finished_at": answer.finished_at.isoformat() if answer.finished_at else None,
        },
    }


def guideline_list() -> QuerySet[Guideline]:
    return Guideline.objects.order_by("title", "key")


def audit_event_list(*, limit: int = 200) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.order_by("-id")[:limit]
