"""The auditor's pages: the log with filters, one event, exports, chain verification."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from django import forms
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from clinic_app.accounts.permissions import role_required
from clinic_app.audit import export as audit_export
from clinic_app.audit import reads, selectors
from clinic_app.audit.selectors import AuditExport, AuditFilters
from clinic_app.core.client_ip import client_ip
from clinic_app.models import Role
from inference.types import FlagKind

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
        reads.audit_request_refused(
            user=request.user,  # type: ignore[arg-type]
            action="audit.viewed",
            params=form.raw(),
            errors=sorted(form.errors),
            source_ip=client_ip(request),
        )
        return render(request, "audit.html", {**context, "page": None}, status=400)
    page = reads.audit_log_view(
        user=request.user,  # type: ignore[arg-type]
        filters=form.filters(),
        page=request.GET.get("page"),
        source_ip=client_ip(request),
    )
    return render(request, "audit.html", {**context, "page": page})


@role_required(Role.AUDITOR)
@require_GET
def audit_event_detail(request: HttpRequest, seq: int) -> HttpResponse:
    """One event with every field; for an answer, what the clinician saw and its basis."""
    found = reads.audit_event_view(user=request.user, seq=seq, source_ip=client_ip(request))  # type: ignore[arg-type]
    if found is None:
        raise Http404("no audit event with this sequence number")
    event, answer = found
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
        reads.audit_request_refused(
            user=request.user,  # type: ignore[arg-type]
            action="audit.exported",
            params=form.raw(),
            errors=sorted(form.errors),
            source_ip=client_ip(request),
            fmt=fmt,
        )
        problems = "; ".join(
            f"{name}: {' '.join(str(e) for e in errors)}" for name, errors in form.errors.items()
        )
        return HttpResponse(
            f"Invalid filters: {problems}\n", status=400, content_type="text/plain; charset=utf-8"
        )
    export = reads.audit_export(
        user=request.user,  # type: ignore[arg-type]
        filters=form.filters(),
        fmt=fmt,
        max_rows=settings.AUDIT_EXPORT_MAX_ROWS,
        source_ip=client_ip(request),
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
    result = reads.audit_chain_check(user=request.user, source_ip=client_ip(request))  # type: ignore[arg-type]
    request.session[_VERIFY_RESULT] = {**result, "at": timezone.now().isoformat()}
    return redirect("audit")
