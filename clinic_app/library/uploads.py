"""Upload jobs: files staged by an admin, parsed and stored in batches with progress, originals
kept."""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Sequence
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone

from clinic_app.audit.record import audit_record
from clinic_app.core import jobs
from clinic_app.library.errors import LibraryError
from clinic_app.library.index_versions import index_publish
from clinic_app.library.ingest import GuidelineExtras, guideline_store
from clinic_app.models import (
    IndexVersion,
    IngestItemOutcome,
    IngestJob,
    IngestPhase,
    IngestStatus,
)
from clinic_app.observability import metrics
from retrieval.errors import DocumentError
from retrieval.isolated import parse_isolated
from retrieval.types import Document, DocumentMeta

log = logging.getLogger(__name__)


DOC_BATCH = 32  # documents stored per transaction (and per progress update)
MAX_JOB_ITEMS = 2000  # per-document outcomes kept on a job; the counters hold the rest
MAX_NAME = 200


def _clean_name(name: str) -> str:
    """An uploader's file name for display only: no path, no control characters."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(c if c.isprintable() else "_" for c in base)[:MAX_NAME] or "upload"


def _uploads_dir() -> Path:
    return Path(settings.VAR_DIR) / "uploads"


def originals_dir() -> Path:
    """Uploaded files as received, each stored under its sha256."""
    return Path(settings.VAR_DIR) / "originals"


def _metadata(raw: dict[str, Any]) -> dict[str, Any]:
    """The upload form's metadata, JSON-safe (the form has validated it)."""
    out = {k: v for k, v in raw.items() if v not in (None, "")}
    if isinstance(out.get("review_date"), date):
        out["review_date"] = out["review_date"].isoformat()
    return out


def ingest_job_create(
    *,
    user: User,
    files: Sequence[UploadedFile],
    metadata: dict[str, Any],
    source_ip: str = "",
) -> IngestJob:
    """Stage uploaded files under the job's own folder and queue their ingestion.

    Files are written as ``job-<id>/<n>.upload``: the uploader's name is kept for display
    only, never used as a path. Their content decides how they are parsed.
    """
    if not files:
        raise LibraryError("Choose at least one file to upload.")
    if len(files) > settings.UPLOAD_MAX_FILES:
        raise LibraryError(f"Upload at most {settings.UPLOAD_MAX_FILES} files at a time.")
    with transaction.atomic():
        job = IngestJob.objects.create(
            created_by=user, metadata=_metadata(metadata), phase=IngestPhase.QUEUED
        )
        folder = _uploads_dir() / f"job-{job.pk}"
        folder.mkdir(parents=True, exist_ok=True)
        staged = []
        for n, upload in enumerate(files):
            path = folder / f"{n:04d}.upload"
            digest, size = hashlib.sha256(), 0
            with open(path, "wb") as out:
                for piece in upload.chunks():
                    size += len(piece)
                    if size > settings.UPLOAD_MAX_BYTES:
                        shutil.rmtree(folder, ignore_errors=True)
                        raise LibraryError(
                            f"{_clean_name(upload.name or '')} is larger than the upload limit "
                            f"of {settings.UPLOAD_MAX_BYTES // 1_000_000} MB."
                        )
                    digest.update(piece)
                    out.write(piece)
            staged.append(
                {
                    "name": _clean_name(upload.name or f"file {n + 1}"),
                    "size": size,
                    "sha256": digest.hexdigest(),
                    "path": path.name,
                }
            )
        job.files = staged
        job.save(update_fields=["files"])
        audit_record(
            action="ingest.job_created",
            actor=user,
            object_type="ingest_job",
            object_id=job.pk,
            source_ip=source_ip,
            details={
                "files": [{k: f[k] for k in ("name", "size", "sha256")} for f in staged],
                "metadata": job.metadata,
            },
        )
        jobs.enqueue_on_commit(jobs.Task.INGEST_JOB, job.pk)
    return job


class _JobProgress:
    """Counts and per-document outcomes of a running job, saved as it goes."""

    def __init__(self, job: IngestJob) -> None:
        self.job = job
        self.items: list[dict[str, Any]] = []
        self.extra_items = 0

    def item(self, **entry: Any) -> None:
        if len(self.items) < MAX_JOB_ITEMS:
            self.items.append(entry)
        else:
            self.extra_items += 1

    def save(self, **changes: Any) -> None:
        for name, value in changes.items():
            setattr(self.job, name, value)
        self.job.items = self.items
        self.job.heartbeat_at = timezone.now()
        if self.extra_items:
            self.job.message = f"{self.extra_items} more outcomes are not listed (see the counts)."
        fields = ["items", "message", "total", "done", "added", "duplicates", "failed", "phase"]
        fields.append("heartbeat_at")
        fields += [n for n in changes if n not in fields]
        self.job.save(update_fields=fields)


def ingest_job_run(*, job_id: int) -> IngestJob:
    """Parse, store and index the job's files, saving progress as it goes (idempotent).

    A job that already finished is left alone; one left running by a lost worker starts over
    (documents it stored are then recognised as duplicates, never stored twice).
    """
    with transaction.atomic():
        job = IngestJob.objects.select_for_update().get(pk=job_id)
        if job.status in (IngestStatus.COMPLETE, IngestStatus.FAILED):
            return job
        if job.status == IngestStatus.RUNNING and _alive(job):
            # A second delivery of a long job (the broker's visibility timeout passed while
            # the first still works on it): leave it to the first.
            log.info("ingest job %s is still running elsewhere; not starting it twice", job_id)
            return job
        job.status = IngestStatus.RUNNING
        job.started_at = timezone.now()
        job.heartbeat_at = timezone.now()
        job.save(update_fields=["status", "started_at", "heartbeat_at"])
    progress = _JobProgress(job)
    progress.save(
        total=0, done=0, added=0, duplicates=0, failed=0, phase=IngestPhase.PARSING, message=""
    )
    actor = job.created_by.get_username()
    form = job.metadata
    review = date.fromisoformat(form["review_date"]) if form.get("review_date") else None

    # 1. Parse each file in a limited child process; store documents in batches.
    for staged in job.files:
        path = _uploads_dir() / f"job-{job.pk}" / staged["path"]
        name = staged["name"]
        detected: list[str] = []
        meta = DocumentMeta(
            key=f"upload/{staged['sha256'][:24]}",
            title=str(form.get("title", ""))[:500],
            organisation=str(form.get("organisation", "")),
            year=form.get("year"),
            doi=str(form.get("doi", "")),
            url=str(form.get("url", "")),
        )
        extras = GuidelineExtras(
            jurisdiction=str(form.get("jurisdiction", "")),
            review_date=review,
            source_name=name,
            original_sha256=staged["sha256"],
        )
        batch: list[Document] = []
        try:
            for parsed in parse_isolated(
                path,
                source_name=name,
                meta=meta,
                timeout_s=settings.PARSE_TIMEOUT_S,
                memory_mb=settings.PARSE_MEMORY_MB,
                on_format=detected.append,
            ):
                if isinstance(parsed, DocumentError):
                    progress.item(file=name, outcome=IngestItemOutcome.FAILED, reason=str(parsed))
                    progress.save(failed=job.failed + 1, total=job.total + 1, done=job.done + 1)
                    continue
                batch.append(_with_upload_defaults(parsed, form))
                if len(batch) >= DOC_BATCH:
                    _store_batch(batch, progress, actor, extras, detected)
                    batch = []
            _store_batch(batch, progress, actor, extras, detected)
            _keep_original(path, staged["sha256"])
        except DocumentError as exc:
            _store_batch(batch, progress, actor, extras, detected)
            progress.item(file=name, outcome=IngestItemOutcome.FAILED, reason=str(exc))
            progress.save(failed=job.failed + 1, total=job.total + 1, done=job.done + 1)

    # 2. Publish one new index version for everything added (only the new passages are
    # embedded), reporting its progress in passages.
    if job.added or not IndexVersion.objects.filter(live=True).exists():
        progress.save(phase=IngestPhase.INDEXING)

        def indexed(done: int, total: int) -> None:
            IngestJob.objects.filter(pk=job.pk).update(
                phase=IngestPhase.INDEXING, done=done, total=total, heartbeat_at=timezone.now()
            )

        version = index_publish(actor=actor, progress=indexed)
        job.refresh_from_db(fields=["done", "total"])
        progress.save(index_version=version)

    # 3. Done: the job's outcome is on the record.
    with transaction.atomic():
        progress.save(
            status=IngestStatus.COMPLETE,
            phase=IngestPhase.COMPLETE,
            finished_at=timezone.now(),
        )
        audit_record(
            action="ingest.job_finished",
            actor=actor,
            object_type="ingest_job",
            object_id=job.pk,
            outcome="success" if not job.failed else "partial",
            details={
                "added": job.added,
                "duplicates": job.duplicates,
                "failed": job.failed,
                "index_version": job.index_version,
            },
        )
    shutil.rmtree(_uploads_dir() / f"job-{job.pk}", ignore_errors=True)
    metrics.INGEST_JOBS.labels(state=IngestStatus.COMPLETE).inc()
    if job.started_at is not None and job.total:
        seconds = (timezone.now() - job.started_at).total_seconds()
        metrics.INGEST_RECORDS_PER_SECOND.observe(job.total / max(seconds, 1e-3))
    return job


def _alive(job: IngestJob) -> bool:
    """Whether the job's run saved progress recently (a parse may be silent for its limit)."""
    if job.heartbeat_at is None:
        return False
    quiet = timedelta(seconds=settings.PARSE_TIMEOUT_S + 300)
    return timezone.now() - job.heartbeat_at < quiet


def _with_upload_defaults(doc: Document, form: dict[str, Any]) -> Document:
    """Collections' records carry their own metadata; the form fills what they lack."""
    meta = doc.meta
    return replace(
        doc,
        meta=replace(
            meta,
            organisation=meta.organisation or str(form.get("organisation", "")),
            year=meta.year or form.get("year"),
        ),
    )


def _store_batch(
    batch: list[Document],
    progress: _JobProgress,
    actor: str,
    extras: GuidelineExtras,
    detected: list[str],
) -> None:
    if not batch:
        return
    job = progress.job
    kind = detected[0] if detected else ""
    added = duplicates = 0
    # One transaction per batch: a commit (and its fsync) per document dominated bulk imports.
    with transaction.atomic():
        typed = replace(extras, original_type=kind)
        stored_all = [guideline_store(doc=doc, actor=actor, extras=typed) for doc in batch]
    for doc, stored in zip(batch, stored_all, strict=True):
        if stored.outcome == IngestItemOutcome.ADDED:
            added += 1
        else:
            duplicates += 1
        progress.item(
            file=extras.source_name,
            document=doc.meta.title[:200] or doc.meta.key,
            outcome=stored.outcome,
            guideline_id=stored.guideline_id,
            passages=stored.passages,
        )
        # A row of its own after the document's: the job page shows its reason as it stands.
        for warning in doc.warnings:
            progress.item(
                file=extras.source_name,
                document=doc.meta.title[:200] or doc.meta.key,
                outcome=IngestItemOutcome.WARNING,
                reason=warning,
            )
    progress.save(
        added=job.added + added,
        duplicates=job.duplicates + duplicates,
        total=job.total + len(batch),
        done=job.done + len(batch),
    )


def _keep_original(path: Path, sha256: str) -> None:
    """Keep the upload as received, for the quality view (once per content)."""
    target = originals_dir() / sha256[:2] / sha256
    if target.exists() or not path.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, target)


def ingest_job_fail(*, job_id: int, message: str) -> None:
    """Mark a job failed after an unexpected error (its outcomes so far are kept)."""
    with transaction.atomic():
        updated = IngestJob.objects.filter(
            pk=job_id, status__in=(IngestStatus.QUEUED, IngestStatus.RUNNING)
        ).update(
            status=IngestStatus.FAILED,
            phase=IngestPhase.FAILED,
            message=message,
            finished_at=timezone.now(),
        )
        if updated:
            metrics.INGEST_JOBS.labels(state=IngestStatus.FAILED).inc()
            audit_record(
                action="ingest.job_finished",
                actor="system",
                object_type="ingest_job",
                object_id=job_id,
                outcome="failure",
                details={"error": message},
            )
