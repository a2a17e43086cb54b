"""Read-side queries of the guideline library: listing, quality view, originals, upload jobs, index
versions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import Count, Q, QuerySet

from clinic_app.models import (
    Citation,
    Guideline,
    IndexVersion,
    IngestJob,
    IngestStatus,
)

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
    from clinic_app.library.uploads import originals_dir

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
