"""Guideline administration pages: upload, job progress, quality view, lifecycle, index.

Thin views: validate with a form, call one library operation or selector, render or redirect.
"""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from clinic_app.accounts.permissions import role_required
from clinic_app.core.client_ip import client_ip
from clinic_app.library import errors, index_versions, lifecycle, selectors, uploads
from clinic_app.models import Role


class _MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class _MultipleFileField(forms.FileField):
    def clean(self, data: object, initial: object = None) -> list[object]:
        if isinstance(data, list | tuple):
            return [super(_MultipleFileField, self).clean(d, initial) for d in data]
        return [super().clean(data, initial)]


class UploadForm(forms.Form):
    """Files and the metadata that applies to them (collections' records carry their own)."""

    documents = _MultipleFileField(
        widget=_MultipleFileInput(attrs={"multiple": True}),
        help_text="PDF, HTML, Markdown, plain text or Meditron-guidelines JSONL; "
        "the content decides the format.",
    )
    title = forms.CharField(max_length=500, required=False, help_text="Single documents only")
    organisation = forms.CharField(max_length=200, required=False)
    year = forms.IntegerField(min_value=1900, max_value=2100, required=False)
    jurisdiction = forms.CharField(max_length=100, required=False)
    url = forms.URLField(max_length=500, required=False, assume_scheme="https")
    doi = forms.RegexField(
        regex=r"^10\.\d{4,9}/\S+$",
        max_length=200,
        required=False,
        error_messages={"invalid": "A DOI looks like 10.1161/CIR.0000000000001193."},
    )
    review_date = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))


class SupersedeForm(forms.Form):
    by = forms.IntegerField(min_value=1, label="Superseded by (guideline id)")


def _library_page(
    request: HttpRequest, form: UploadForm, status: int = 200, error: str = ""
) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:200]
    state = request.GET.get("state", "")
    return render(
        request,
        "guidelines.html",
        {
            "form": form,
            "upload_error": error,
            "page": selectors.guideline_page(
                query=query, state=state, page=request.GET.get("page", "1")
            ),
            "query": query,
            "state": state,
            "states": selectors.GUIDELINE_STATES,
            "jobs": selectors.ingest_job_list(limit=10),
            "versions": selectors.index_version_list(limit=10),
            "upload_max_bytes": settings.UPLOAD_MAX_BYTES,
            "upload_max_mb": settings.UPLOAD_MAX_BYTES // 1_000_000,
            "upload_max_files": settings.UPLOAD_MAX_FILES,
        },
        status=status,
    )


@require_GET
@role_required(Role.GUIDELINE_ADMIN)
def guidelines(request: HttpRequest) -> HttpResponse:
    return _library_page(request, UploadForm())


@require_POST
@role_required(Role.GUIDELINE_ADMIN)
def upload(request: HttpRequest) -> HttpResponse:
    declared = int(request.META.get("CONTENT_LENGTH") or 0)
    if declared > _max_body():
        # Refused before the body is read (the ASGI edge does the same before Django).
        limit = settings.UPLOAD_MAX_BYTES // 1_000_000
        message = f"The upload is larger than the limit of {limit} MB; nothing was stored."
        return _library_page(request, UploadForm(), status=413, error=message)
    form = UploadForm(request.POST, request.FILES)
    if not form.is_valid():
        return _library_page(request, form, status=400)
    try:
        job = uploads.ingest_job_create(
            user=request.user,  # type: ignore[arg-type]
            files=form.cleaned_data["documents"],
            metadata={k: v for k, v in form.cleaned_data.items() if k != "documents"},
            source_ip=client_ip(request),
        )
    except errors.LibraryError as exc:
        form.add_error("documents", str(exc))
        return _library_page(request, form, status=400)
    return redirect("ingest-job", job_id=job.pk)


def _max_body() -> int:
    return settings.UPLOAD_MAX_BYTES + 1_000_000


@require_GET
@role_required(Role.GUIDELINE_ADMIN)
def ingest_job(request: HttpRequest, job_id: int) -> HttpResponse:
    job = selectors.ingest_job_get(job_id=job_id)
    if job is None:
        raise Http404("no such job")
    return render(
        request, "ingest_job.html", {"job": job, "status": selectors.ingest_job_status(job)}
    )


@require_GET
@role_required(Role.GUIDELINE_ADMIN)
def ingest_job_status(request: HttpRequest, job_id: int) -> HttpResponse:
    job = selectors.ingest_job_get(job_id=job_id)
    if job is None:
        raise Http404("no such job")
    return JsonResponse(selectors.ingest_job_status(job))


@require_GET
@role_required(Role.GUIDELINE_ADMIN)
def guideline_detail(request: HttpRequest, guideline_id: int) -> HttpResponse:
    view = selectors.guideline_quality_view(guideline_id=guideline_id)
    if view is None:
        raise Http404("no such guideline")
    return render(request, "guideline_detail.html", {**view, "supersede_form": SupersedeForm()})


@require_GET
@role_required(Role.GUIDELINE_ADMIN)
def guideline_original(request: HttpRequest, guideline_id: int) -> FileResponse:
    original = selectors.guideline_original(guideline_id=guideline_id)
    if original is None:
        raise Http404("the original file is not kept for this guideline")
    path, content_type, filename = original
    response = FileResponse(
        open(path, "rb"),  # noqa: SIM115 - FileResponse closes it
        content_type=content_type,
        as_attachment=content_type != "application/pdf",
        filename=filename,
    )
    # Uploaded content never runs as part of this site, even the PDF shown inline.
    response["Content-Security-Policy"] = "sandbox; default-src 'none'"
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _lifecycle(request: HttpRequest, guideline_id: int, action: str) -> HttpResponse:
    user = request.user
    try:
        if action in ("activate", "deactivate"):
            lifecycle.guideline_set_active(
                user=user,  # type: ignore[arg-type]
                guideline_id=guideline_id,
                active=action == "activate",
                source_ip=client_ip(request),
            )
            messages.success(request, f"Guideline {action}d. A new index version is on its way.")
        elif action == "supersede":
            form = SupersedeForm(request.POST)
            if not form.is_valid():
                raise errors.LibraryError("Give the id of the guideline that supersedes it.")
            lifecycle.guideline_supersede(
                user=user,  # type: ignore[arg-type]
                guideline_id=guideline_id,
                by_id=form.cleaned_data["by"],
                source_ip=client_ip(request),
            )
            messages.success(request, "Marked as superseded; new answers cite the newer version.")
        elif action == "delete":
            outcome = lifecycle.guideline_delete(
                user=user,  # type: ignore[arg-type]
                guideline_id=guideline_id,
                source_ip=client_ip(request),
            )
            messages.success(
                request,
                "Guideline deleted."
                if outcome == "deleted"
                else "Guideline removed from the library; kept hidden because answers cite it.",
            )
            return redirect("guidelines")
    except (errors.LibraryError, ValidationError) as exc:
        messages.error(request, str(exc.message if isinstance(exc, ValidationError) else exc))
    return redirect("guideline-detail", guideline_id=guideline_id)


@require_POST
@role_required(Role.GUIDELINE_ADMIN)
def guideline_action(request: HttpRequest, guideline_id: int, action: str) -> HttpResponse:
    if action not in ("activate", "deactivate", "supersede", "delete"):
        raise Http404("unknown action")
    return _lifecycle(request, guideline_id, action)


@require_POST
@role_required(Role.GUIDELINE_ADMIN)
def index_rollback(request: HttpRequest) -> HttpResponse:
    try:
        version = index_versions.index_rollback(user=request.user, source_ip=client_ip(request))  # type: ignore[arg-type]
        messages.success(request, f"Index v{version} is live again.")
    except errors.LibraryError as exc:
        messages.error(request, str(exc))
    return redirect("guidelines")
