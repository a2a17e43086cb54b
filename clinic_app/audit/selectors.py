"""Read-side queries of the audit log: the auditor's filters, pages, exports and event views."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.core.cache import cache
from django.core.paginator import Page, Paginator
from django.db.models import Max, Q, QuerySet, TextField
from django.db.models.functions import Cast

from clinic_app.answers.contracts import (
    AuditAnswerPayload,
)
from clinic_app.answers.selectors import answer_payload, thread_answers
from clinic_app.models import (
    Answer,
    AuditEvent,
)

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
