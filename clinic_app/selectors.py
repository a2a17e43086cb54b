"""Read-side queries and the JSON shapes the page and the API share."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.core.cache import cache
from django.core.paginator import Page, Paginator
from django.db.models import Count, Max, Q, QuerySet, TextField
from django.db.models.functions import Cast

from clinic_app.contracts import (
    AnswerPayload,
    AuditAnswerPayload,
    CitationPayload,
    FeedbackPayload,
    PassagePayload,
)
from clinic_app.models import (
    Answer,
    AuditEvent,
    Citation,
    Feedback,
    Guideline,
    IndexVersion,
    IngestJob,
    IngestStatus,
    Passage,
    Question,
    Role,
)

HISTORY_QUERY_MAX_CHARS = 200
HISTORY_QUERY_MAX_WORDS = 8


def user_has_role(user: AbstractBaseUser | AnonymousUser, role: Role) -> bool:
    """Whether ``user`` is signed in and belongs to ``role``'s group."""
    if not user.is_authenticated:
        return False
    return bool(user.groups.filter(name=role.value).exists())  # type: ignore[attr-defined]


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


# ---------------------------------------------------------------------- guideline library

GUIDELINE_STATES = ("active", "inactive", "superseded")
GUIDELINES_PER_PAGE = 50
ORIGINAL_TYPES = {
    "pdf": "application/pdf",
    "html": "text/plain; charset=utf-8",  # shown as source, never rendered as this site's HTML
    "markdown": "text/plain; charset=utf-8",
    "text": "text/plain; charset=utf-8",
    "meditron-jsonl": "application/octet-stream",
}


def guideline_page(*, query: str = "", state: str = "", page: str | int = 1) -> Page[Any]:
    """Library listing (deleted guidelines left out), filtered by text and state."""
    guidelines = (
        Guideline.objects.filter(deleted_at__isnull=True)
        .annotate(passage_count=Count("passages"))
        .select_related("superseded_by")
        .order_by("title", "key")
    )
    if query:
        guidelines = guidelines.filter(
            Q(title__icontains=query)
            | Q(key__icontains=query)
            | Q(organisation__icontains=query)
            | Q(source_name__icontains=query)
        )
    if state == "active":
        guidelines = guidelines.filter(active=True)
    elif state == "inactive":
        guidelines = guidelines.filter(active=False, superseded_by__isnull=True)
    elif state == "superseded":
        guidelines = guidelines.filter(superseded_by__isnull=False)
    return Paginator(guidelines, GUIDELINES_PER_PAGE).get_page(page)


def guideline_quality_view(*, guideline_id: int) -> dict[str, Any] | None:
    """A document as extracted (text and chunks) beside what is known of its original."""
    guideline = (
        Guideline.objects.filter(pk=guideline_id, deleted_at__isnull=True)
        .select_related("superseded_by")
        .first()
    )
    if guideline is None:
        return None
    passages = list(guideline.passages.order_by("ordinal"))
    return {
        "guideline": guideline,
        "passages": passages,
        "supersedes": list(guideline.supersedes.all()),
        "has_original": _original_path(guideline) is not None,
        "original_inline": guideline.original_type == "pdf",
        "original_text": _original_text(guideline),
        "cited": Citation.objects.filter(passage__guideline=guideline, cited=True).count(),
    }


def _original_path(guideline: Guideline) -> Path | None:
    from clinic_app.library import originals_dir

    sha = guideline.original_sha256
    if not sha or len(sha) != 64 or not all(c in "0123456789abcdef" for c in sha):
        return None
    path = originals_dir() / sha[:2] / sha
    return path if path.is_file() else None


def _original_text(guideline: Guideline, limit: int = 200_000) -> str | None:
    """The original's text for text formats (escaped by the template), else None."""
    if guideline.original_type not in ("html", "markdown", "text"):
        return None
    path = _original_path(guideline)
    if path is None:
        return None
    with open(path, "rb") as handle:
        return handle.read(limit).decode("utf-8", "replace")


def guideline_original(*, guideline_id: int) -> tuple[Path, str, str] | None:
    """``(path, content type, download name)`` of a guideline's uploaded original."""
    guideline = Guideline.objects.filter(pk=guideline_id).first()
    if guideline is None:
        return None
    path = _original_path(guideline)
    if path is None:
        return None
    content_type = ORIGINAL_TYPES.get(guideline.original_type, "application/octet-stream")
    extension = {"pdf": ".pdf", "meditron-jsonl": ".jsonl"}.get(guideline.original_type, ".txt")
    return path, content_type, f"guideline-{guideline.pk}-original{extension}"


def ingest_job_list(*, limit: int = 10) -> QuerySet[IngestJob]:
    return IngestJob.objects.select_related("created_by")[:limit]


def ingest_job_get(*, job_id: int) -> IngestJob | None:
    return IngestJob.objects.select_related("created_by").filter(pk=job_id).first()


def ingest_job_status(job: IngestJob) -> dict[str, Any]:
    """What the progress bar shows; polled by the job page, so a reload loses nothing."""
    percent = 100 if job.status == IngestStatus.COMPLETE else 0
    if job.status == IngestStatus.RUNNING and job.total:
        share = job.done / job.total
        # Parsing and storing fill the first 70%, indexing the rest.
        percent = int(70 + 29 * share) if job.phase == "indexing" else int(69 * share)
    return {
        "id": job.pk,
        "status": job.status,
        "phase": job.phase,
        "percent": percent,
        "done": job.done,
        "total": job.total,
        "added": job.added,
        "duplicates": job.duplicates,
        "failed": job.failed,
        "message": job.message,
        "index_version": job.index_version,
        "files": [{"name": f["name"], "size": f["size"]} for f in job.files],
        "items": job.items,
        "final": job.status in (IngestStatus.COMPLETE, IngestStatus.FAILED),
    }


def index_version_list(*, limit: int = 10) -> QuerySet[IndexVersion]:
    return IndexVersion.objects.order_by("-version")[:limit]


# ------------------------------------------------------------------------------- audit log


@dataclass(frozen=True)
class AuditFilters:
    """What an auditor narrowed the log to; empty fields do not filter.

    ``action`` matches exactly, or as a prefix when it ends with a dot (``answer.``). Dates are
    UTC calendar days, both ends included. ``text`` is a case-insensitive substring of the
    actor, action, object type or id, source address or the details' JSON text.
    """

    actor: str = ""
    action: str = ""
    outcome: str = ""
    date_from: date | None = None
    date_to: date | None = None
    text: str = ""

    def as_details(self) -> dict[str, str]:
        """The filters that are set, as audit-event details (dates in ISO form)."""
        values = {
            "actor": self.actor,
            "action": self.action,
            "outcome": self.outcome,
            "from": self.date_from.isoformat() if self.date_from else "",
            "to": self.date_to.isoformat() if self.date_to else "",
            "q": self.text,
        }
        return {k: v for k, v in values.items() if v}


def _utc_midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def audit_event_search(*, filters: AuditFilters) -> QuerySet[AuditEvent]:
    """The events matching ``filters``, newest first."""
    events = AuditEvent.objects.all()
    if filters.actor:
        events = events.filter(actor=filters.actor)
    if filters.action:
        if filters.action.endswith("."):
            events = events.filter(action__startswith=filters.action)
        else:
            events = events.filter(action=filters.action)
    if filters.outcome:
        events = events.filter(outcome=filters.outcome)
    if filters.date_from:
        events = events.filter(at__gte=_utc_midnight(filters.date_from))
    if filters.date_to and filters.date_to < date.max:
        events = events.filter(at__lt=_utc_midnight(filters.date_to + timedelta(days=1)))
    if filters.text:
        # The details column's JSON text; on SQLite non-ASCII text is stored \u-escaped.
        events = events.annotate(details_text=Cast("details", TextField())).filter(
            Q(actor__icontains=filters.text)
            | Q(action__icontains=filters.text)
            | Q(object_type__icontains=filters.text)
            | Q(object_id__icontains=filters.text)
            | Q(source_ip__icontains=filters.text)
            | Q(details_text__icontains=filters.text)
        )
    return events.order_by("-seq")


def audit_event_page(*, filters: AuditFilters, page: str | int | None, per_page: int = 100) -> Page:
    """One page of :func:`audit_event_search`; a bad or out-of-range page number gives the
    nearest page instead of an error."""
    return Paginator(audit_event_search(filters=filters), per_page).get_page(page)


def audit_choices() -> dict[str, list[str]]:
    """The distinct actions and outcomes in the log, for the filter form's suggestions.

    Cached for a minute: outcomes have no index, and a suggestion list may lag a little.
    """

    def distinct() -> dict[str, list[str]]:
        events = AuditEvent.objects.order_by()
        return {
            "actions": sorted(events.values_list("action", flat=True).distinct()),
            "outcomes": sorted(events.values_list("outcome", flat=True).distinct()),
        }

    choices: dict[str, list[str]] | None = cache.get_or_set(
        "audit:filter-choices", distinct, timeout=60
    )
    return choices if choices is not None else distinct()


def audit_event_get(*, seq: int) -> AuditEvent | None:
    return AuditEvent.objects.filter(seq=seq).first()


@dataclass(frozen=True)
class AuditExport:
    """The events an export will write: ``rows`` of ``matching``, oldest first, as of ``upto``.

    When the matches exceed the cap, the newest ``rows`` are kept and ``capped`` is set.
    """

    events: QuerySet[AuditEvent]
    rows: int
    matching: int
    upto: int

    @property
    def capped(self) -> bool:
        return self.rows < self.matching


def audit_export_select(*, filters: AuditFilters, max_rows: int) -> AuditExport:
    """Fix the export's rows now: events appended while it streams (its own audit event
    included) are not part of it, and the row count recorded in the audit log is exact."""
    upto = AuditEvent.objects.aggregate(m=Max("seq"))["m"] or 0
    matching_events = audit_event_search(filters=filters).filter(seq__lte=upto)
    matching = matching_events.count()
    events = matching_events
    if matching > max_rows:
        # The newest ``max_rows``: the lowest sequence number among them bounds the export.
        lowest = matching_events.values_list("seq", flat=True)[max_rows - 1]
        events = matching_events.filter(seq__gte=lowest)
    return AuditExport(
        events=events.order_by("seq"), rows=min(matching, max_rows), matching=matching, upto=upto
    )


def _answer_id(event: AuditEvent) -> int | None:
    if event.object_type != "answer" or not event.object_id.isdigit():
        return None
    return int(event.object_id)


def audit_answer_view(event: AuditEvent) -> AuditAnswerPayload | None:
    """For an event about an answer: what the clinician saw, as stored now, with its basis.

    ``None`` when the event is not about an answer or the answer no longer exists. The shape
    is :func:`answer_payload`'s (question, text, status, message, citations with guideline and
    passage text, disclaimer, basis), plus the prompt's sha256 in the basis and the asker.
    """
    answer_id = _answer_id(event)
    if answer_id is None:
        return None
    answer = Answer.objects.select_related("question__user").filter(pk=answer_id).first()
    if answer is None:
        return None
    payload = answer_payload(answer)
    payload["basis"]["prompt_sha256"] = answer.prompt_sha256
    # A follow-up was asked, and answered, in its conversation: the turns before it as shown.
    earlier = thread_answers(answer=answer, through_turn=answer.question.turn - 1)
    return {
        **payload,
        "asked_by": answer.question.user.get_username(),
        "earlier_turns": [answer_payload(a) for a in earlier],
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
