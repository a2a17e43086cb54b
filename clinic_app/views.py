"""HTTP views: parse, call one selector or service, render."""

from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from clinic_app import selectors
from clinic_app.models import Passage, Role
from clinic_app.permissions import role_required


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
    return JsonResponse({"status": "ok"})


@role_required(Role.CLINICIAN)
def ask(request: HttpRequest) -> HttpResponse:
    history = selectors.question_list_for_user(user=request.user)  # type: ignore[arg-type]
    return render(
        request,
        "ask.html",
        {
            "history": history,
            "disclaimer": settings.DISCLAIMER,
            "question_max_chars": settings.QUESTION_MAX_CHARS,
        },
    )


@require_GET
@role_required(Role.CLINICIAN)
def answer_detail(request: HttpRequest, answer_id: int) -> HttpResponse:
    answer = selectors.answer_get_for_user(user=request.user, answer_id=answer_id)  # type: ignore[arg-type]
    if answer is None:
        raise Http404("answer not found")
    return JsonResponse(selectors.answer_payload(answer))


@require_GET
@role_required(Role.CLINICIAN)
def passage_detail(request: HttpRequest, passage_id: int) -> HttpResponse:
    passage = Passage.objects.select_related("guideline").filter(pk=passage_id).first()
    if passage is None:
        raise Http404("passage not found")
    return JsonResponse(selectors.passage_payload(passage))


@role_required(Role.GUIDELINE_ADMIN)
def guidelines(request: HttpRequest) -> HttpResponse:
    return render(request, "guidelines.html", {"guidelines": selectors.guideline_list()})


@role_required(Role.AUDITOR)
def audit(request: HttpRequest) -> HttpResponse:
    return render(request, "audit.html", {"events": selectors.audit_event_list()})
