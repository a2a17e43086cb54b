"""The guideline library: ingestion (command line and upload jobs), lifecycle, index versions.

Domain operations for guideline admins, named ``<entity>_<action>`` like those in
``services.py`` (which re-exports :func:`guidelines_ingest` and :func:`index_publish`). Every
change is audited in its own transaction; every change to what answers may cite is followed by
a new index version, published by a task after the change commits.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone

from clinic_app import metrics, runtime
from clinic_app.audit import audit_record
from clinic_app.models import (
    Citation,
    Guideline,
    IndexVersion,
    IngestItemOutcome,
    IngestJob,
    IngestPhase,
    IngestStatus,
    Passage,
)
from retrieval.chunking import chunk_sections, embedding_text
from retrieval.errors import DocumentError, IndexUnavailable
from retrieval.index import VectorIndex, set_current
from retrieval.isolated import parse_isolated
from retrieval.types import Document, DocumentMeta
from retrieval.urls import safe_http_url

log = logging.getLogger(__name__)

DOC_BATCH = 32  # documents stored per transaction (and per progress update)
MAX_JOB_ITEMS = 2000  # per-document outcomes kept on a job; the counters hold the rest
MAX_NAME = 200


class LibraryError(ValueError):
    """The request cannot be carried out; the message says why, for the admin."""


def _clean_name(name: str) -> str:
    """An uploader's file name for display only: no path, no control characters."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(c if c.isprintable() else "_" for c in base)[:MAX_NAME] or "upload"


# ------------------------------------------------------------------------------- ingestion


@dataclass
class IngestReport:
    """What an ingestion run did."""

    documents_added: int = 0
    documents_unchanged: int = 0
    passages_added: int = 0
    index_version: int | None = None
    # What parsing dropped from otherwise good documents (e.g. a URL that is not http/https).
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class GuidelineExtras:
    """What an upload adds to a document's own metadata."""

    jurisdiction: str = ""
    review_date: date | None = None
    source_name: str = ""
    original_sha256: str = ""
    original_type: str = ""


@dataclass(frozen=True)
class StoreOutcome:
    """``added`` (with its passages) or ``duplicate`` (of ``guideline_id``)."""

    outcome: IngestItemOutcome
    guideline_id: int
    passages: int = 0


def document_sha256(doc: Document) -> str:
    """Content hash of a parsed document (heading paths and text), independent of the file."""
    digest = hashlib.sha256()
    for section in doc.sections:
        digest.update("\x1f".join(section.path).encode())
        digest.update(b"\x1e")
        digest.update(section.text.encode())
        digest.update(b"\x1d")
    return digest.hexdigest()


def _extracted_text(doc: Document) -> str:
    parts = []
    for section in doc.sections:
        if section.path:
            parts.append("#" * min(len(section.path), 6) + " " + " > ".join(section.path))
        parts.append(section.text)
    return "\n\n".join(parts)


def guideline_store(
    *, doc: Document, actor: str = "system", extras: GuidelineExtras | None = None
) -> StoreOutcome:
    """Store one parsed document and its passages, unless identical content is already there.

    Identical content (same sections and text, whatever the file or key) is a ``duplicate``. A
    document whose key exists with other content is a new version: the old one is superseded.
    """
    extras = extras or GuidelineExtras()
    sha = document_sha256(doc)
    same = Guideline.objects.filter(sha256=sha, deleted_at__isnull=True).order_by("pk").first()
    if same is not None:
        return StoreOutcome(IngestItemOutcome.DUPLICATE, same.pk)
    embedder = runtime.get_embedder()
    chunks = chunk_sections(
        doc.sections, count_tokens=embedder.count_tokens, max_tokens=settings.CHUNK_MAX_TOKENS
    )
    with transaction.atomic():
        existing = Guideline.objects.select_for_update().filter(key=doc.meta.key).first()
        if existing is not None:
            existing.key = f"{existing.key}@superseded-{existing.pk}"[:200]
            existing.active = False
            existing.save(update_fields=["key", "active"])
        guideline = Guideline.objects.create(
            key=doc.meta.key,
            title=doc.meta.title[:500],
            organisation=doc.meta.organisation[:200],
            year=doc.meta.year,
            doi=doc.meta.doi[:200],
            # Parsers already drop unsafe URLs; this also covers documents built elsewhere.
            url=(safe_http_url(doc.meta.url) or "")[:500],
            sha256=sha,
            jurisdiction=extras.jurisdiction,
            review_date=extras.review_date,
            source_name=extras.source_name or doc.source_name[:255],
            original_sha256=extras.original_sha256,
            original_type=extras.original_type,
            extracted_text=_extracted_text(doc),
        )
        if existing is not None:
            existing.superseded_by = guideline
            existing.save(update_fields=["superseded_by"])
        Passage.objects.bulk_create(
            Passage(
                guideline=guideline,
                ordinal=c.ordinal,
                section=" > ".join(c.section_path)[:500],
                text=c.text,
            )
            for c in chunks
        )
        audit_record(
            action="guideline.ingested",
            actor=actor,
            object_type="guideline",
            object_id=guideline.pk,
            details={
                "key": guideline.key,
                "sha256": sha,
                "passages": len(chunks),
                "supersedes": existing.pk if existing is not None else None,
                "source": extras.source_name,
            },
        )
    return StoreOutcome(IngestItemOutcome.ADDED, guideline.pk, len(chunks))


def guidelines_ingest(
    *,
    documents: Iterable[Document],
    actor: str = "system",
    publish: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> IngestReport:
    """Store new or changed documents with their passages, then publish a new index.

    Identical content is skipped. The index is published only if something changed (or none
    is live yet), and only when ``publish``; ``progress(done, total)`` follows its passages.
    """
    report = IngestReport()
    for doc in documents:
        report.warnings.extend(doc.warnings)
        stored = guideline_store(doc=doc, actor=actor)
        if stored.outcome == IngestItemOutcome.ADDED:
            report.documents_added += 1
            report.passages_added += stored.passages
        else:
            report.documents_unchanged += 1
    if publish and (report.documents_added or not IndexVersion.objects.filter(live=True).exists()):
        report.index_version = index_publish(actor=actor, progress=progress)
    return report


# ---------------------------------------------------------------------------- index versions


def _live_index(embedder_name: str) -> VectorIndex | None:
    """The live index if it was built by the same embedder (its vectors can be reused)."""
    try:
        index = VectorIndex.load(settings.INDEX_DIR)
    except IndexUnavailable:
        return None
    return index if index.embedder == embedder_name else None


def index_publish(
    *,
    actor: str = "system",
    batch: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Build a new index version over every active passage and make it live, atomically.

    Passages already in the live index keep their vectors (passages never change: a new
    guideline version has new passages); only new ones are embedded. ``progress(done, total)``
    is called after each batch. Every process serves the new version from its next search.
    """
    embedder = runtime.get_embedder()
    previous = _live_index(embedder.model_name)
    index = VectorIndex(embedder.dim, embedder=embedder.model_name, kind=settings.INDEX_KIND)
    queryset = (
        Passage.objects.filter(guideline__active=True, guideline__deleted_at__isnull=True)
        .select_related("guideline")
        .order_by("pk")
    )
    total = queryset.count()
    done, reused = 0, 0
    rows: list[Passage] = []
    for passage in queryset.iterator(chunk_size=batch):
        rows.append(passage)
        if len(rows) == batch:
            reused += _index_add(index, rows, previous)
            done += len(rows)
            rows = []
            if progress is not None:
                progress(done, total)
    reused += _index_add(index, rows, previous)
    if progress is not None:
        progress(total, total)
    with transaction.atomic():
        last = IndexVersion.objects.select_for_update().order_by("-version").first()
        version = (last.version if last else 0) + 1
        index.save(settings.INDEX_DIR, version=version)
        IndexVersion.objects.filter(live=True).update(live=False)
        IndexVersion.objects.create(
            version=version, embedder=embedder.model_name, passage_count=len(index), live=True
        )
        audit_record(
            action="index.published",
            actor=actor,
            object_type="index",
            object_id=version,
            details={
                "passages": len(index),
                "embedded": len(index) - reused,
                "reused": reused,
                "embedder": embedder.model_name,
            },
        )
    return version


def _index_add(index: VectorIndex, rows: list[Passage], previous: VectorIndex | None) -> int:
    """Add ``rows`` with their texts (for BM25); returns how many vectors were reused."""
    if not rows:
        return 0
    import numpy as np

    texts = [passage_embedding_text(p) for p in rows]
    known = previous.vectors([p.pk for p in rows]) if previous is not None else {}
    missing = [i for i, p in enumerate(rows) if p.pk not in known]
    reused = len(rows) - len(missing)
    vectors = np.zeros((len(rows), index.dim), dtype=np.float32)
    for i, p in enumerate(rows):
        if p.pk in known:
            vectors[i] = known[p.pk]
    seed = runtime.get_vector_seed() if missing else None
    if seed is not None:
        # Texts whose vectors were computed ahead of time by this very embedder (the demo corpus).
        seeded = seed.lookup([texts[i] for i in missing])
        for position, vector in seeded.items():
            vectors[missing[position]] = vector
        missing = [i for position, i in enumerate(missing) if position not in seeded]
    if missing:
        vectors[missing] = runtime.get_embedder().encode([texts[i] for i in missing])
    index.add([p.pk for p in rows], vectors, texts=texts)
    return reused


def passage_embedding_text(passage: Passage) -> str:
    """What is embedded (and BM25-indexed) for ``passage``: its guideline's title and section
    path with its text (``passage.guideline`` should be loaded with it)."""
    section = tuple(passage.section.split(" > ")) if passage.section else ()
    return embedding_text(passage.guideline.title, section, passage.text)


def index_rollback(*, user: User, source_ip: str = "") -> int:
    """Make the version before the live one live again; returns it."""
    with transaction.atomic():
        live = IndexVersion.objects.select_for_update().filter(live=True).first()
        if live is None:
            raise LibraryError("No index version is live, so there is nothing to roll back.")
        earlier = [
            v
            for v in IndexVersion.objects.filter(version__lt=live.version).order_by("-version")
            if (Path(settings.INDEX_DIR) / f"v{v.version}" / "manifest.json").exists()
        ]
        if not earlier:
            raise LibraryError(f"Index v{live.version} is the first version kept on disk.")
        target = earlier[0]
        IndexVersion.objects.filter(live=True).update(live=False)
        IndexVersion.objects.filter(pk=target.pk).update(live=True)
        audit_record(
            action="index.rolled_back",
            actor=user,
            object_type="index",
            object_id=target.version,
            source_ip=source_ip,
            details={"from_version": live.version, "to_version": target.version},
        )
        # Last, and inside the transaction: if the pointer cannot move, nothing is recorded.
        set_current(Path(settings.INDEX_DIR), target.version)
    return target.version


def _publish_after_commit(actor: str) -> None:
    from clinic_app import tasks

    transaction.on_commit(lambda: tasks.enqueue_publish(actor))


# --------------------------------------------------------------------------------- lifecycle


def _guideline_for_update(guideline_id: int) -> Guideline:
    guideline = Guideline.objects.select_for_update().filter(pk=guideline_id).first()
    if guideline is None or guideline.deleted_at is not None:
        raise LibraryError("That guideline does not exist (or was deleted).")
    return guideline


def guideline_set_active(
    *, user: User, guideline_id: int, active: bool, source_ip: str = ""
) -> Guideline:
    """Activate or deactivate a guideline. Deactivated, it is gone from new answers at once
    (search results are filtered by it) and from the next index version."""
    with transaction.atomic():
        guideline = _guideline_for_update(guideline_id)
        if active and guideline.superseded_by_id is not None:
            raise LibraryError(
                "This guideline was superseded; activate the current version instead."
            )
        if guideline.active == active:
            return guideline
        guideline.active = active
        guideline.save(update_fields=["active"])
        audit_record(
            action="guideline.activated" if active else "guideline.deactivated",
            actor=user,
            object_type="guideline",
            object_id=guideline.pk,
            source_ip=source_ip,
            details={"key": guideline.key},
        )
        _publish_after_commit(user.get_username())
    return guideline


def guideline_supersede(
    *, user: User, guideline_id: int, by_id: int, source_ip: str = ""
) -> Guideline:
    """Mark a guideline as replaced by a newer one: new answers cite the newer one; answers
    that cited the old one keep showing exactly what they cited."""
    if guideline_id == by_id:
        raise LibraryError("A guideline cannot supersede itself.")
    with transaction.atomic():
        old = _guideline_for_update(guideline_id)
        new = _guideline_for_update(by_id)
        if new.superseded_by_id is not None:
            raise LibraryError(f"“{new.title}” is itself superseded; choose its current version.")
        chain: Guideline | None = new
        seen: set[int] = set()
        while chain is not None and chain.pk not in seen:
            seen.add(chain.pk)
            if chain.pk == old.pk:
                raise LibraryError("That would make the two versions supersede each other.")
            chain = chain.superseded_by
        old.superseded_by = new
        old.active = False
        old.save(update_fields=["superseded_by", "active"])
        if not new.active:
            new.active = True
            new.save(update_fields=["active"])
        audit_record(
            action="guideline.superseded",
            actor=user,
            object_type="guideline",
            object_id=old.pk,
            source_ip=source_ip,
            details={"superseded_by": new.pk, "old_key": old.key, "new_key": new.key},
        )
        _publish_after_commit(user.get_username())
    return old


def guideline_delete(*, user: User, guideline_id: int, source_ip: str = "") -> str:
    """Delete a guideline from the library. Returns ``deleted``, or ``retained`` when answers
    cited its passages: then it is hidden and out of the index but kept for those answers."""
    with transaction.atomic():
        guideline = _guideline_for_update(guideline_id)
        cited = Citation.objects.filter(passage__guideline=guideline).count()
        Guideline.objects.filter(superseded_by=guideline).update(superseded_by=None)
        if cited:
            guideline.deleted_at = timezone.now()
            guideline.active = False
            guideline.save(update_fields=["deleted_at", "active"])
            outcome = "retained"
        else:
            Passage.objects.filter(guideline=guideline).delete()
            Guideline.objects.filter(pk=guideline.pk).delete()
            outcome = "deleted"
        audit_record(
            action="guideline.deleted",
            actor=user,
            object_type="guideline",
            object_id=guideline_id,
            source_ip=source_ip,
            details={"key": guideline.key, "outcome": outcome, "citations": cited},
        )
        _publish_after_commit(user.get_username())
    return outcome


# ------------------------------------------------------------------------------ upload jobs


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
        from clinic_app import tasks

        transaction.on_commit(lambda: tasks.enqueue_ingest(job.pk))
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
