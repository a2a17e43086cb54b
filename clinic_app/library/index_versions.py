"""Index versions: publishing what answers may cite as a new version, and rolling back to the
previous one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction

from clinic_app.audit.record import audit_record
from clinic_app.core import jobs, runtime
from clinic_app.library.errors import LibraryError
from clinic_app.models import (
    IndexVersion,
    Passage,
)
from retrieval.chunking import embedding_text
from retrieval.errors import IndexUnavailable
from retrieval.index import VectorIndex, set_current


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


def index_publish_on_commit(actor: str) -> None:
    jobs.enqueue_on_commit(jobs.Task.PUBLISH_INDEX, actor)
