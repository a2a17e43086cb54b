"""HTTP views: parse, call one selector or service, render."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from clinic_app.accounts.permissions import role_required
from clinic_app.answers import identifiers, reads, selectors
from clinic_app.answers.feedback import (
    FeedbackNotFound,
    feedback_review,
    feedback_submit,
)
from clinic_app.core.client_ip import client_ip
from clinic_app.models import FEEDBACK_COMMENT_MAX_CHARS, FeedbackCategory, Role
from inference.types import FlagKind


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
    payload = reads.answer_view(
        user=request.user,  # type: ignore[arg-type]
        answer_id=answer_id,
        source_ip=client_ip(request),
    )
    if payload is None:
        raise Http404("answer not found")
    return JsonResponse(payload)


@require_GET
@role_required(Role.CLINICIAN)
def answer_thread(request: HttpRequest, answer_id: int) -> HttpResponse:
    """The whole conversation the user's answer belongs to, first turn first."""
    turns = reads.thread_view(
        user=request.user,  # type: ignore[arg-type]
        answer_id=answer_id,
        source_ip=client_ip(request),
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
        feedback = feedback_submit(
            user=request.user,  # type: ignore[arg-type]
            answer_id=answer_id,
            source_ip=client_ip(request),
            **fields,
        )
    except ValueError as exc:  # FeedbackRejected too
        return JsonResponse({"error": str(exc)}, status=400)
    except FeedbackNotFound as exc:
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
    page = reads.feedback_queue_view(
        user=request.user,  # type: ignore[arg-type]
        include_reviewed=include_reviewed,
        page=request.GET.get("page"),
        source_ip=client_ip(request),
    )
    return render(
        request,
        "feedback_queue.html",
        {"page": page, "include_reviewed": include_reviewed},
    )


@role_required(Role.GUIDELINE_ADMIN)
@require_POST
def feedback_mark_reviewed(request: HttpRequest, feedback_id: int) -> HttpResponse:
    """Take one item off the queue (audited), then back to the queue."""
    try:
        changed = feedback_review(
            user=request.user,  # type: ignore[arg-type]
            feedback_id=feedback_id,
            source_ip=client_ip(request),
        )
    except FeedbackNotFound as exc:
        raise Http404(str(exc)) from exc
    messages.success(request, "Marked reviewed." if changed else "It was already reviewed.")
    return redirect("feedback-queue")
