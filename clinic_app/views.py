"""HTTP views: parse, call one selector or service, render."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.handlers.asgi import ASGIRequest
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from clinic_app import audit_export, identifiers, metrics, quality, selectors, services
from clinic_app.audit import audit_record, audit_verify, default_checkpoint_files
from clinic_app.client_ip import client_ip
from clinic_app.models import FEEDBACK_COMMENT_MAX_CHARS, FeedbackCategory, Role
from clinic_app.permissions import role_required
from clinic_app.readiness import readiness_check
from clinic_app.selectors import AuditExport, AuditFilters
from inference.types import FlagKind


def _source_ip(request: HttpRequest) -> str:
    return str(request.META.get("REMOTE_ADDR", ""))


def home(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect("login")
    for role, target in (
        (Role.CLINICIAN, "ask"),
        (Role.GUIDELINE_ADMIN, "guidelines"),
        (Role.AUDITOR, "audit"),
    ):
        if selectors.user_has_role(request.user, role):
            return redirect(target)
    return render(request, "403.html", {"role": "any"}, status=403)


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness: the process serves HTTP (no dependency is checked)."""
    return JsonResponse({"status": "ok"})


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition, for scrapers only: with ``METRICS_TOKEN`` set, the request must
    carry it as a bearer token; without one, only this machine (loopback) is answered."""
    if settings.METRICS_TOKEN:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        allowed = hmac.compare_digest(given.encode(), settings.METRICS_TOKEN.encode())
    else:
        allowed = client_ip(request) in ("127.0.0.1", "::1")
    if not allowed:
        return HttpResponse("Forbidden: metrics are for the monitoring system.", status=403)
    body, content_type = metrics.exposition()
    return HttpResponse(body, content_type=content_type)


@require_GET
def readyz(request: HttpRequest) -> HttpResponse:
    """Readiness: database, Redis, the live index and the generator; 503 when one fails."""
    checks = readiness_check()
    ready = all(c.ok for c in checks)
    body = {
        "status": "ready" if ready else "not ready",
        "checks": {c.name: {"ok": c.ok, "detail": c.detail, "ms": c.ms} for c in checks},
    }
    return JsonResponse(body, status=200 if ready else 503)


@role_required(Role.CLINICIAN)
def ask(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[: selectors.HISTORY_QUERY_MAX_CHARS]
    history = selectors.thread_list_for_user(user=request.user, query=query)  # type: ignore[arg-type]
    return render(
        request,
        "ask.html",
        {
            "history": history,
            "history_query": query,
            "history_query_max_chars": selectors.HISTORY_QUERY_MAX_CHARS,
            "disclaimer": settings.DISCLAIMER,
            "question_max_chars": settings.QUESTION_MAX_CHARS,
            "thread_max_turns": settings.THREAD_MAX_TURNS,
            "identifier_config": identifiers.browser_config(),
            "flag_kinds": {kind.name: kind.value for kind in FlagKind},
            "feedback_categories": FeedbackCategory.choices,
            "feedback_comment_max_chars": FEEDBACK_COMMENT_MAX_CHARS,
        },
    )


@require_GET
@role_required(Role.CLINICIAN)
def answer_detail(request: HttpRequest, answer_id: int) -> HttpResponse:
    answer = selectors.answer_get_for_user(user=request.user, answer_id=answer_id)  # type: ignore[arg-type]
    # Attempts on answers that are not the user's are recorded too.
    audit_record(
        action="answer.viewed",
        actor=request.user,
        object_type="answer",
        object_id=answer_id,
        outcome="success" if answer is not None else "failure",
        source_ip=_source_ip(request),
        details={} if answer is not None else {"reason": "not found among the user's answers"},
    )
    if answer is None:
        raise Http404("answer not found")
    return JsonResponse(selectors.answer_payload(answer))


@require_GET
@role_required(Role.CLINICIAN)
def answer_thread(request: HttpRequest, answer_id: int) -> HttpResponse:
    """The whole conversation the user's answer belongs to, first turn first."""
    turns = selectors.thread_payload_for_user(user=request.user, answer_id=answer_id)  # type: ignore[arg-type]
    audit_record(
        action="answer.viewed",
        actor=request.user,
        object_type="answer",
        object_id=answer_id,
        outcome="success" if turns is not None else "failure",
        source_ip=_source_ip(request),
        details={"thread": True, "answer_ids": [t["id"] for t in turns]}
        if turns is not None
        else {"thread": True, "reason": "not found among the user's answers"},
    )
    if turns is None:
        raise Http404("answer not found")
    return JsonResponse({"thread_id": turns[0]["thread_id"], "turns": turns})


@require_GET
@role_required(Role.CLINICIAN)
def passage_detail(request: HttpRequest, passage_id: int) -> HttpResponse:
    passage = selectors.passage_get_servable(passage_id=passage_id)
    if passage is None:
        raise Http404("passage not found")
    return JsonResponse(selectors.passage_payload(passage))


# ---------------------------------------------------------------------------- audit log pages

_VERIFY_RESULT = "audit_verify_result"
_DATE_INPUT = forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
_DATE_ERRORS = {"invalid": "Enter a valid date as YYYY-MM-DD (a UTC calendar day)."}


class AuditFilterForm(forms.Form):
    """The audit log's filters, from the query string; every field is optional."""

    actor = forms.CharField(required=False, max_length=150, label="User")
    action = forms.CharField(
        required=False,
        max_length=60,
        help_text="Exact, or a prefix ending in a dot (answer.)",
        widget=forms.TextInput(attrs={"list": "audit-actions"}),
    )
    outcome = forms.CharField(
        required=False, max_length=20, widget=forms.TextInput(attrs={"list": "audit-outcomes"})
    )
    date_from = forms.DateField(
        required=False,
        label="From (UTC)",
        input_formats=["%Y-%m-%d"],
        widget=_DATE_INPUT,
        error_messages=_DATE_ERRORS,
    )
    date_to = forms.DateField(
        required=False,
        label="To (UTC)",
        input_formats=["%Y-%m-%d"],
        widget=_DATE_INPUT,
        error_messages=_DATE_ERRORS,
    )
    q = forms.CharField(required=False, max_length=200, label="Text")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            raise forms.ValidationError("The 'From' date is after the 'To' date.")
        return data

    def filters(self) -> AuditFilters:
        data = self.cleaned_data
        return AuditFilters(
            actor=data["actor"],
            action=data["action"],
            outcome=data["outcome"],
            date_from=data["date_from"],
            date_to=data["date_to"],
            text=data["q"],
        )

    def raw(self) -> dict[str, str]:
        """The submitted values (for the audit record of a rejected request)."""
        return {name: str(self.data.get(name, ""))[:200] for name in self.fields}


def _filter_query(request: HttpRequest) -> str:
    """The query string without the page number, for pagination and export links."""
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


@role_required(Role.AUDITOR)
@require_GET
def audit(request: HttpRequest) -> HttpResponse:
    """The audit log, newest first, filtered and paginated; viewing it is itself audited."""
    form = AuditFilterForm(request.GET)
    context: dict[str, Any] = {
        "form": form,
        "filter_query": _filter_query(request),
        "verify": request.session.pop(_VERIFY_RESULT, None),
        "export_max_rows": settings.AUDIT_EXPORT_MAX_ROWS,
        "choices": selectors.audit_choices(),
    }
    if not form.is_valid():
        audit_record(
            action="audit.viewed",
            actor=request.user,
            outcome="failure",
            source_ip=_source_ip(request),
            details={"params": form.raw(), "errors": sorted(form.errors)},
        )
        return render(request, "audit.html", {**context, "page": None}, status=400)
    filters = form.filters()
    page = selectors.audit_event_page(filters=filters, page=request.GET.get("page"))
    audit_record(
        action="audit.viewed",
        actor=request.user,
        source_ip=_source_ip(request),
        details={"filters": filters.as_details(), "page": page.number, "events": len(page)},
    )
    return render(request, "audit.html", {**context, "page": page})


@role_required(Role.AUDITOR)
@require_GET
def audit_event_detail(request: HttpRequest, seq: int) -> HttpResponse:
    """One event with every field; for an answer, what the clinician saw and its basis."""
    event = selectors.audit_event_get(seq=seq)
    if event is None:
        raise Http404("no audit event with this sequence number")
    answer = selectors.audit_answer_view(event)
    audit_record(
        action="audit.event_viewed",
        actor=request.user,
        object_type="audit_event",
        object_id=seq,
        source_ip=_source_ip(request),
        details={"answer_id": answer["id"]} if answer else {},
    )
    context = {
        "event": event,
        "details_json": json.dumps(event.details, indent=2, sort_keys=True, ensure_ascii=False),
        "answer": answer,
        "flags_json": json.dumps(answer["flags"], indent=2, ensure_ascii=False) if answer else "",
        # For the shared renderer (static/js/render.js): each answer's text and flags, so the
        # auditor reads the answer formatted and marked as the clinician did.
        "answers_render": {
            str(a["id"]): {"text": a["text"], "status": a["status"], "flags": a["flags"]}
            for a in ([*answer["earlier_turns"], answer] if answer else [])
        },
        "flag_kinds": {kind.name: kind.value for kind in FlagKind},
    }
    return render(request, "audit_detail.html", context)


def _export(
    request: HttpRequest, *, fmt: str, writer: Callable[[AuditExport], Iterator[bytes]]
) -> HttpResponseBase:
    form = AuditFilterForm(request.GET)
    if not form.is_valid():
        audit_record(
            action="audit.exported",
            actor=request.user,
            outcome="failure",
            source_ip=_source_ip(request),
            details={"format": fmt, "params": form.raw(), "errors": sorted(form.errors)},
        )
        problems = "; ".join(
            f"{name}: {' '.join(str(e) for e in errors)}" for name, errors in form.errors.items()
        )
        return HttpResponse(
            f"Invalid filters: {problems}\n", status=400, content_type="text/plain; charset=utf-8"
        )
    filters = form.filters()
    with transaction.atomic():
        export = selectors.audit_export_select(
            filters=filters, max_rows=settings.AUDIT_EXPORT_MAX_ROWS
        )
        audit_record(
            action="audit.exported",
            actor=request.user,
            source_ip=_source_ip(request),
            details={
                "format": fmt,
                "filters": filters.as_details(),
                "rows": export.rows,
                "matching": export.matching,
                "capped": export.capped,
                "upto_seq": export.upto,
            },
        )
    chunks = writer(export)
    # Under ASGI a synchronous iterator would be read whole into memory before sending.
    content = audit_export.chunks_async(chunks) if isinstance(request, ASGIRequest) else chunks
    content_type = "text/csv" if fmt == "csv" else "application/x-ndjson"
    response = StreamingHttpResponse(content, content_type=f"{content_type}; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.{fmt}"'
    response["X-Audit-Export-Rows"] = str(export.rows)
    response["X-Audit-Export-Matching"] = str(export.matching)
    if export.capped:
        response["X-Audit-Export-Capped"] = audit_export.cap_note(export)
    return response


# permissions.View expects HttpResponse; a streaming response is an HttpResponseBase.
@role_required(Role.AUDITOR)
@require_GET
def audit_export_csv(request: HttpRequest) -> HttpResponseBase:
    return _export(request, fmt="csv", writer=audit_export.csv_chunks)


# permissions.View expects HttpResponse; a streaming response is an HttpResponseBase.
@role_required(Role.AUDITOR)
@require_GET
def audit_export_jsonl(request: HttpRequest) -> HttpResponseBase:
    return _export(request, fmt="jsonl", writer=audit_export.jsonl_chunks)


@role_required(Role.AUDITOR)
@require_POST
def audit_chain_verify(request: HttpRequest) -> HttpResponse:
    """Verify the whole chain and its checkpoints, record the check, show the result."""
    try:
        result: dict[str, Any] = asdict(audit_verify(checkpoint_files=default_checkpoint_files()))
    except ValueError as exc:  # an unreadable checkpoint export file
        result = {"ok": False, "first_bad_seq": None, "problem": str(exc)}
    audit_record(
        action="audit.verify",
        actor=request.user,
        outcome="success" if result["ok"] else "failure",
        source_ip=_source_ip(request),
        details=result,
    )
    request.session[_VERIFY_RESULT] = {**result, "at": timezone.now().isoformat()}
    return redirect("audit")


# ------------------------------------------------------------------- feedback, history search

_TRUE_WORDS = {"true", "1", "yes", "on"}
_FALSE_WORDS = {"false", "0", "no", "off"}


def _feedback_fields(request: HttpRequest) -> dict[str, Any]:
    """The feedback fields from a JSON body or a form; ``ValueError`` says what is wrong."""
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError("The request body is not valid JSON.") from exc
        if not isinstance(data, dict):
            raise ValueError("Send a JSON object with helpful, category and comment.")
    else:
        data = request.POST.dict()
    helpful = data.get("helpful")
    if isinstance(helpful, str) and helpful.strip().lower() in _TRUE_WORDS | _FALSE_WORDS:
        helpful = helpful.strip().lower() in _TRUE_WORDS
    if not isinstance(helpful, bool):
        raise ValueError("Say whether the answer was helpful: helpful must be true or false.")
    category, comment = data.get("category") or "", data.get("comment") or ""
    if not isinstance(category, str) or not isinstance(comment, str):
        raise ValueError("category and comment must be text.")
    return {"helpful": helpful, "category": category, "comment": comment}


@role_required(Role.CLINICIAN)
@require_POST
def answer_feedback(request: HttpRequest, answer_id: int) -> HttpResponse:
    """Record the clinician's feedback on one of their answers (JSON body or form; CSRF)."""
    try:
        fields = _feedback_fields(request)
        feedback = services.feedback_submit(
            user=request.user,  # type: ignore[arg-type]
            answer_id=answer_id,
            source_ip=_source_ip(request),
            **fields,
        )
    except ValueError as exc:  # FeedbackRejected too
        return JsonResponse({"error": str(exc)}, status=400)
    except services.FeedbackNotFound as exc:
        return JsonResponse({"error": str(exc)}, status=404)
    return JsonResponse(
        {"message": "Thanks — recorded", "feedback": selectors.feedback_payload(feedback)}
    )


@role_required(Role.CLINICIAN)
@require_GET
def history_search(request: HttpRequest) -> HttpResponse:
    """The clinician's own questions and answers matching ``q`` (all of them when empty)."""
    query = request.GET.get("q", "").strip()[: selectors.HISTORY_QUERY_MAX_CHARS]
    threads = selectors.thread_list_for_user(user=request.user, query=query)  # type: ignore[arg-type]
    return JsonResponse({"query": query, "results": selectors.history_payload(threads)})


@role_required(Role.GUIDELINE_ADMIN)
@require_GET
def feedback_queue(request: HttpRequest) -> HttpResponse:
    """Unhelpful feedback awaiting review, newest first; viewing it is audited (it shows
    clinicians' questions)."""
    include_reviewed = request.GET.get("reviewed") == "1"
    page = selectors.feedback_queue_page(
        include_reviewed=include_reviewed, page=request.GET.get("page")
    )
    audit_record(
        action="feedback.queue_viewed",
        actor=request.user,
        source_ip=_source_ip(request),
        details={
            "page": page.number,
            "items": len(page),
            "include_reviewed": include_reviewed,
            "feedback_ids": [f.pk for f in page],
        },
    )
    return render(
        request,
        "feedback_queue.html",
        {"page": page, "include_reviewed": include_reviewed},
    )


@role_required(Role.GUIDELINE_ADMIN, Role.AUDITOR)
@require_GET
def quality_page(request: HttpRequest) -> HttpResponse:
    """Answers over time and recorded evaluations compared, for guideline admins and auditors
    (read-only; aggregates only, no question text)."""
    try:
        window = int(request.GET.get("days", quality.DEFAULT_WINDOW))
    except ValueError:
        window = quality.DEFAULT_WINDOW
    if window not in quality.WINDOWS:
        window = quality.DEFAULT_WINDOW
    trends = quality.quality_trends(window_days=window, configuration=request.GET.get("config", ""))
    return render(
        request,
        "quality.html",
        {
            "trends": trends,
            "chart_data": trends.to_json(),
            "windows": quality.WINDOWS,
            "window": window,
            "tables": quality.evaluation_comparison(threshold=settings.QUALITY_DROP_THRESHOLD),
            "threshold": settings.QUALITY_DROP_THRESHOLD,
        },
    )


@role_required(Role.GUIDELINE_ADMIN)
@require_POST
def feedback_mark_reviewed(request: HttpRequest, feedback_id: int) -> HttpResponse:
    """Take one item off the queue (audited), then back to the queue."""
    try:
        changed = services.feedback_review(
            user=request.user,  # type: ignore[arg-type]
            feedback_id=feedback_id,
            source_ip=_source_ip(request),
        )
    except services.FeedbackNotFound as exc:
        raise Http404(str(exc)) from exc
    messages.success(request, "Marked reviewed." if changed else "It was already reviewed.")
    return redirect("feedback-queue")
