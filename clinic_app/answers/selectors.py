"""Read-side queries and the JSON shapes the page and the API share."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.core.paginator import Page, Paginator
from django.db.models import Max, Q

from clinic_app.answers.contracts import (
    AnswerPayload,
    CitationPayload,
    FeedbackPayload,
    PassagePayload,
)
from clinic_app.models import (
    Answer,
    Feedback,
    Passage,
    Question,
)

HISTORY_QUERY_MAX_CHARS = 200
HISTORY_QUERY_MAX_WORDS = 8


@dataclass(frozen=True)
class ThreadEntry:
    """One conversation in the history list: its first question, how many questions it has,
    and its latest answer (the one the list reopens it at)."""

    thread_id: int
    question: str
    turns: int
    answer_id: int
    status: str
    asked_at: datetime


def thread_list_for_user(*, user: User, query: str = "", limit: int = 50) -> list[ThreadEntry]:
    """The user's conversations, most recently continued first.

    ``query`` narrows them to those with a question whose text, answer text or refusal/error
    message contains every word of it (case-insensitive).
    """
    matching = Question.objects.filter(user=user)
    for word in query.split()[:HISTORY_QUERY_MAX_WORDS]:
        matching = matching.filter(
            Q(text__icontains=word)
            | Q(answer__text__icontains=word)
            | Q(answer__message__icontains=word)
        )
    thread_ids = list(
        matching.order_by()
        .values("thread_id")
        .annotate(last=Max("id"))
        .order_by("-last")
        .values_list("thread_id", flat=True)[:limit]
    )
    turns: dict[int, list[Question]] = {}
    for q in (
        Question.objects.filter(user=user, thread_id__in=thread_ids)
        .select_related("answer")
        .order_by("turn")
    ):
        turns.setdefault(q.thread_id or q.pk, []).append(q)
    entries = []
    for thread_id in thread_ids:
        questions = turns.get(thread_id)
        if not questions:
            continue
        first, last = questions[0], questions[-1]
        entries.append(
            ThreadEntry(
                thread_id=thread_id,
                question=first.text,
                turns=len(questions),
                answer_id=last.answer.pk,
                status=last.answer.status,
                asked_at=last.created_at,
            )
        )
    return entries


def thread_answers(*, answer: Answer, through_turn: int | None = None) -> list[Answer]:
    """Every answer of ``answer``'s conversation, first turn first (``through_turn``: only up
    to that turn). The caller has already checked that ``answer`` may be seen."""
    question = answer.question
    answers = Answer.objects.filter(
        question__thread_id=question.thread_id or question.pk, question__user_id=question.user_id
    )
    if through_turn is not None:
        answers = answers.filter(question__turn__lte=through_turn)
    return list(answers.select_related("question").order_by("question__turn"))


def thread_payload_for_user(*, user: User, answer_id: int) -> list[AnswerPayload] | None:
    """The whole conversation ``answer_id`` belongs to, as :func:`answer_payload` each, if it
    is the user's; ``None`` otherwise."""
    answer = answer_get_for_user(user=user, answer_id=answer_id)
    if answer is None:
        return None
    return [answer_payload(a) for a in thread_answers(answer=answer)]


def answer_get_for_user(*, user: User, answer_id: int) -> Answer | None:
    """The answer if it belongs to ``user``; ``None`` otherwise (no leak of others' answers)."""
    return (
        Answer.objects.filter(pk=answer_id, question__user=user).select_related("question").first()
    )


def passage_get_servable(*, passage_id: int) -> Passage | None:
    """The passage if its guideline is in the library now (active, not deleted); else ``None``.

    Withdrawn guidelines stay in the database for the answers that cited them (those answers
    carry their passages), but are not handed out on their own.
    """
    return (
        Passage.objects.filter(
            pk=passage_id, guideline__active=True, guideline__deleted_at__isnull=True
        )
        .select_related("guideline")
        .first()
    )


def passage_payload(passage: Passage) -> PassagePayload:
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
            "url": g.safe_url,  # rows from before URLs were checked may hold javascript:
            "active": g.active,
        },
    }


def answer_payload(answer: Answer) -> AnswerPayload:
    """Everything the page shows for a finished (or in-progress) answer."""
    citations: list[CitationPayload] = [
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
        "evidence": answer.evidence,
        "citations": citations,
        "chunks_sent": answer.chunks_sent,
        "attempts": answer.attempts,
        "thread_id": answer.question.thread_id or answer.question_id,
        "turn": answer.question.turn,
        "follow_up_of": answer.question.follow_up_of_id,
        "feedback": feedback_payload(
            answer.feedback.filter(user_id=answer.question.user_id).first()
        ),
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


# -------------------------------------------------------------------------- feedback, history


def feedback_payload(feedback: Feedback | None) -> FeedbackPayload | None:
    """The clinician's recorded feedback on an answer, as the page shows it."""
    if feedback is None:
        return None
    return {
        "id": feedback.pk,
        "helpful": feedback.helpful,
        "category": feedback.category,
        "comment": feedback.comment,
        "updated_at": feedback.updated_at.isoformat(),
    }


def history_payload(threads: list[ThreadEntry]) -> list[dict[str, Any]]:
    """History entries for the page's search: enough to list and reopen each conversation
    (at its latest answer)."""
    return [
        {
            "answer_id": t.answer_id,
            "thread_id": t.thread_id,
            "question": t.question,
            "turns": t.turns,
            "status": t.status,
            "asked_at": t.asked_at.isoformat(),
        }
        for t in threads
    ]


def feedback_queue_page(
    *, include_reviewed: bool, page: str | int | None, per_page: int = 25
) -> Page[Any]:
    """Unhelpful feedback for guideline admins, most recently changed first, with each
    answer's question and sources; reviewed items only with ``include_reviewed``."""
    feedback = (
        Feedback.objects.filter(helpful=False)
        .select_related("answer__question", "reviewed_by")
        .prefetch_related("answer__citations__passage__guideline")
        .order_by("-updated_at", "-id")
    )
    if not include_reviewed:
        feedback = feedback.filter(reviewed_at__isnull=True)
    return Paginator(feedback, per_page).get_page(page)
