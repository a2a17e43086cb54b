"""Ingestion: parsed documents stored as guidelines and passages (deduplicated by content), then
published."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date

from django.conf import settings
from django.db import transaction

from clinic_app.audit.record import audit_record
from clinic_app.core import runtime
from clinic_app.library.index_versions import index_publish
from clinic_app.models import (
    Guideline,
    IndexVersion,
    IngestItemOutcome,
    Passage,
)
from retrieval.chunking import chunk_sections
from retrieval.types import Document
from retrieval.urls import safe_http_url


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
