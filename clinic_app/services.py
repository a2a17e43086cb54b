"""Domain operations. Views, consumers, tasks and commands call these and nothing deeper."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from clinic_app import runtime
from clinic_app.audit import audit_record
from clinic_app.models import (
    Answer,
    AnswerStatus,
    Citation,
    Guideline,
    IndexVersion,
    Passage,
    Question,
)
from clinic_app.selectors import answer_payload
from clinic_app.streaming import AnswerSink
from inference.backends.base import Backend
from inference.citations import check_answer
from inference.errors import BackendError, Cancelled
from inference.prompts import PromptTooLong, SourcePassage, build_prompt
from inference.support import NO_CITATION, NO_CLAIM, check_answer_support
from inference.types import GenerationRequest
from retrieval.chunking import chunk_sections, embedding_text
from retrieval.index import VectorIndex
from retrieval.types import Document

log = logging.getLogger(__name__)

REFUSAL_NO_EVIDENCE = (
    "No sufficiently relevant passage was found in the guideline library for this question, "
    "so no answer was generated. Rephrase the question, or consult other sources."
)
CANCEL_POLL_S = 0.1


class QuestionRejected(ValueError):
    """The question cannot be accepted; the message says why, for the user."""


# --------------------------------------------------------------------------------- questions


def question_ask(*, user: User, text: str, source_ip: str = "") -> Answer:
    """Record a clinician's question and its pending answer. Does not start generation."""
    text = (text or "").strip()
    if not text:
        raise QuestionRejected("Please type a question.")
    limit = settings.QUESTION_MAX_CHARS
    if len(text) > limit:
        raise QuestionRejected(
            f"Questions are limited to {limit} characters; this one has {len(text)}. "
            "Please shorten it."
        )
    with transaction.atomic():
        question = Question.objects.create(user=user, text=text)
        answer = Answer.objects.create(question=question, disclaimer=settings.DISCLAIMER)
        audit_record(
            action="question.asked",
            actor=user,
            object_type="answer",
            object_id=answer.pk,
            source_ip=source_ip,
            details={"question_id": question.pk, "chars": len(text)},
        )
    return answer


def answer_start(*, answer_id: int) -> None:
    """Queue generation of ``answer_id`` once the current transaction commits."""
    from clinic_app import tasks

    transaction.on_commit(lambda: tasks.enqueue_answer(answer_id))


def _cancel_key(answer_id: int) -> str:
    return f"answer:{answer_id}:cancel"


def answer_cancel(*, user: User, answer_id: int, source_ip: str = "") -> bool:
    """Ask for generation of the user's answer to stop; ``False`` if it is not theirs or done."""
    with transaction.atomic():
        answer = (
            Answer.objects.select_for_update().filter(pk=answer_id, question__user=user).first()
        )
        if answer is None or answer.is_final:
            return False
        if answer.status == AnswerStatus.PENDING:
            # Not started yet: the task will find it final and only re-announce it.
            answer.status = AnswerStatus.CANCELLED
            answer.message = "The answer was cancelled."
            answer.finished_at = timezone.now()
            answer.save(update_fields=["status", "message", "finished_at"])
        else:
            cache.set(_cancel_key(answer_id), True, timeout=3600)
        audit_record(
            action="answer.cancel_requested",
            actor=user,
            object_type="answer",
            object_id=answer_id,
            source_ip=source_ip,
        )
    return True


@dataclass
class _Outcome:
    status: AnswerStatus
    text: str = ""
    message: str = ""
    flags: list[dict[str, str]] = field(default_factory=list)


def _finish(answer: Answer, outcome: _Outcome, sink: AnswerSink, details: dict[str, Any]) -> Answer:
    with transaction.atomic():
        answer.status = outcome.status
        answer.text = outcome.text
        answer.message = outcome.message
        answer.flags = outcome.flags
        answer.finished_at = timezone.now()
        answer.save()
        audit_record(
            action=f"answer.{outcome.status}",
            actor=answer.question.user,
            object_type="answer",
            object_id=answer.pk,
            outcome="success" if outcome.status == AnswerStatus.COMPLETE else outcome.status,
            details=details,
        )
    sink.finish(answer_payload(answer))
    return answer


def answer_generate(*, answer_id: int, sink: AnswerSink) -> Answer:
    """Produce the answer: retrieve, refuse or prompt, stream, check citations, persist.

    Idempotent: an answer already in a final state is re-announced, not regenerated; one left
    half-streamed by a lost worker starts again from scratch.
    """
    with transaction.atomic():
        answer = (
            Answer.objects.select_for_update().select_related("question__user").get(pk=answer_id)
        )
        if answer.is_final:
            sink.finish(answer_payload(answer))
            return answer
        cache.delete(_cancel_key(answer_id))
        answer.status = AnswerStatus.STREAMING
        answer.text = ""
        answer.started_at = timezone.now()
        answer.citations.all().delete()
        answer.save()
    question = answer.question.text
    started = time.monotonic()

    # 1. Retrieve: embed the question and search the live index.
    result = runtime.get_retriever().search(question, k=settings.RETRIEVAL_TOP_K)
    passages = {
        p.pk: p
        for p in Passage.objects.filter(
            pk__in=[h.passage_id for h in result.hits], guideline__active=True
        ).select_related("guideline")
    }
    hits = [h for h in result.hits if h.passage_id in passages]
    answer.index_version = result.index_version
    # Relevance is judged on dense cosine (the calibrated scale), whatever the fused ranking.
    answer.top_score = max((h.score for h in hits), default=0.0)
    answer.save(update_fields=["index_version", "top_score"])

    # 2. Refuse without calling the model when the evidence is too weak.
    minimum = settings.RETRIEVAL_MIN_SCORE
    if not hits or answer.top_score < minimum:
        return _finish(
            answer,
            _Outcome(AnswerStatus.REFUSED, message=REFUSAL_NO_EVIDENCE),
            sink,
            {
                "reason": "no_evidence",
                "top_score": answer.top_score,
                "index_version": result.index_version,
                "passage_ids": [h.passage_id for h in hits],
                "latency_ms": int((time.monotonic() - started) * 1000),
            },
        )

    # 3. Build the prompt within the model's context.
    backend = runtime.get_backend()
    profile = runtime.get_profile()
    sources = [
        SourcePassage(
            passage_id=h.passage_id,
            title=passages[h.passage_id].guideline.title,
            section=passages[h.passage_id].section,
            text=passages[h.passage_id].text,
        )
        for h in hits
        # A passage is offered if it is semantically close, or if BM25 matched its exact terms
        # (drug names, scores, abbreviations that embeddings blur).
        if h.score >= minimum or (h.lexical or 0.0) > 0.0
    ]
    try:
        prompt = build_prompt(
            profile=profile,
            question=question,
            sources=sources,
            count_tokens=backend.count_tokens,
            context_tokens=backend.info.context_tokens,
            max_tokens=settings.ANSWER_MAX_TOKENS,
        )
    except (PromptTooLong, BackendError) as exc:
        message = str(exc) if isinstance(exc, PromptTooLong) else exc.user_message
        return _finish(
            answer,
            _Outcome(AnswerStatus.FAILED, message=message),
            sink,
            {
                "error": type(exc).__name__,
                "index_version": result.index_version,
                "latency_ms": int((time.monotonic() - started) * 1000),
            },
        )
    scores = {h.passage_id: h.score for h in hits}
    Citation.objects.bulk_create(
        Citation(answer=answer, number=i, passage_id=s.passage_id, score=scores[s.passage_id])
        for i, s in enumerate(prompt.sources, start=1)
    )
    answer.backend = backend.info.backend
    answer.model_name = backend.info.model
    answer.model_version = backend.info.version
    answer.prompt_sha256 = hashlib.sha256(prompt.text.encode()).hexdigest()
    answer.save(update_fields=["backend", "model_name", "model_version", "prompt_sha256"])

    # 4. Stream from the model, watching for a cancel request.
    details = {
        "passage_ids": [s.passage_id for s in prompt.sources],
        "index_version": result.index_version,
        "model": backend.info.model,
        "model_version": backend.info.version,
        "prompt_sha256": answer.prompt_sha256,
    }
    text, outcome = _stream(backend, prompt.text, prompt.stop, answer_id, sink)
    details["latency_ms"] = int((time.monotonic() - started) * 1000)
    if outcome is not None:
        outcome.text = text
        return _finish(answer, outcome, sink, {**details, "error": outcome.message})

    # 5. Check citations, persist, announce.
    checked = check_answer(
        text, source_count=len(prompt.sources), source_texts=[s.text for s in prompt.sources]
    )
    Citation.objects.filter(answer=answer, number__in=checked.cited).update(cited=True)
    flags = [{"kind": f.kind, "detail": f.detail} for f in checked.flags]
    if settings.SUPPORT_CHECK != "off":
        # Uncited sentences and invalid citations are already flagged by check_answer.
        embed = runtime.get_embedder().encode if settings.SUPPORT_CHECK == "combined" else None
        flags += [
            {"kind": "weak_support", "detail": s.reason, "sentence": s.sentence[:300]}
            for s in check_answer_support(
                checked.text, [src.text for src in prompt.sources], embed=embed
            )
            if not s.supported and s.kind not in (NO_CITATION, NO_CLAIM)
        ]
    if backend.count_tokens(text) >= settings.ANSWER_MAX_TOKENS:
        flags.append({"kind": "truncated", "detail": "the answer reached the length limit"})
    return _finish(
        answer, _Outcome(AnswerStatus.COMPLETE, text=checked.text, flags=flags), sink, details
    )


def _stream(
    backend: Backend, prompt: str, stop: tuple[str, ...], answer_id: int, sink: AnswerSink
) -> tuple[str, _Outcome | None]:
    """Run generation into ``sink``; returns the text and, if it did not complete, why."""
    cancel = threading.Event()
    parts: list[str] = []
    last_poll = 0.0
    request = GenerationRequest(
        prompt=prompt,
        max_tokens=settings.ANSWER_MAX_TOKENS,
        stop=stop,
        request_id=f"answer-{answer_id}",
    )
    try:
        for delta in backend.stream(request, cancel):
            parts.append(delta)
            sink.text(delta)
            now = time.monotonic()
            if now - last_poll >= CANCEL_POLL_S:
                last_poll = now
                if cache.get(_cancel_key(answer_id)):
                    cancel.set()
    except Cancelled:
        return "".join(parts), _Outcome(AnswerStatus.CANCELLED, message="The answer was cancelled.")
    except BackendError as exc:
        log.warning("answer %s: generation failed: %s: %s", answer_id, type(exc).__name__, exc)
        return "".join(parts), _Outcome(AnswerStatus.FAILED, message=exc.user_message)
    if cancel.is_set():
        return "".join(parts), _Outcome(AnswerStatus.CANCELLED, message="The answer was cancelled.")
    return "".join(parts), None


def answer_fail(*, answer_id: int, message: str, sink: AnswerSink) -> Answer | None:
    """Mark an unfinished answer failed (e.g. its task crashed); final answers are left alone."""
    with transaction.atomic():
        answer = (
            Answer.objects.select_for_update().select_related("question__user").get(pk=answer_id)
        )
        if answer.is_final:
            return None
    return _finish(
        answer, _Outcome(AnswerStatus.FAILED, text="", message=message), sink, {"error": message}
    )


# -------------------------------------------------------------------------------- guidelines


@dataclass
class IngestReport:
    """What an ingestion run did."""

    documents_added: int = 0
    documents_unchanged: int = 0
    passages_added: int = 0
    index_version: int | None = None


def _document_sha256(doc: Document) -> str:
    digest = hashlib.sha256()
    for section in doc.sections:
        digest.update("\x1f".join(section.path).encode())
        digest.update(b"\x1e")
        digest.update(section.text.encode())
        digest.update(b"\x1d")
    return digest.hexdigest()


def guidelines_ingest(*, documents: Iterable[Document], actor: str = "system") -> IngestReport:
    """Store new or changed documents with their passages, then publish a new index.

    A document whose content hash is unchanged is skipped. The index is published only if
    something changed.
    """
    report = IngestReport()
    embedder = runtime.get_embedder()
    for doc in documents:
        sha = _document_sha256(doc)
        existing = Guideline.objects.filter(key=doc.meta.key).first()
        if existing is not None and existing.sha256 == sha:
            report.documents_unchanged += 1
            continue
        chunks = chunk_sections(
            doc.sections, count_tokens=embedder.count_tokens, max_tokens=settings.CHUNK_MAX_TOKENS
        )
        with transaction.atomic():
            if existing is not None:
                existing.key = f"{existing.key}@superseded-{existing.pk}"
                existing.active = False
                existing.save(update_fields=["key", "active"])
            guideline = Guideline.objects.create(
                key=doc.meta.key,
                title=doc.meta.title,
                organisation=doc.meta.organisation,
                year=doc.meta.year,
                doi=doc.meta.doi,
                url=doc.meta.url,
                sha256=sha,
            )
            Passage.objects.bulk_create(
                Passage(
                    guideline=guideline,
                    ordinal=c.ordinal,
                    section=" > ".join(c.section_path),
                    text=c.text,
                )
                for c in chunks
            )
            audit_record(
                action="guideline.ingested",
                actor=actor,
                object_type="guideline",
                object_id=guideline.pk,
                details={"key": guideline.key, "sha256": sha, "passages": len(chunks)},
            )
        report.documents_added += 1
        report.passages_added += len(chunks)
    if report.documents_added or not IndexVersion.objects.filter(live=True).exists():
        report.index_version = index_publish(actor=actor)
    return report


def index_publish(*, actor: str = "system", batch: int = 256) -> int:
    """Embed every active passage into a new index version and make it live.

    The version holds the vectors and BM25 over the same passage texts, written together;
    exact search, or HNSW once the library is large (``kind="auto"``).
    """
    embedder = runtime.get_embedder()
    index = VectorIndex(embedder.dim, embedder=embedder.model_name, kind=settings.INDEX_KIND)
    queryset = (
        Passage.objects.filter(guideline__active=True).select_related("guideline").order_by("pk")
    )
    rows: list[Passage] = []
    for passage in queryset.iterator(chunk_size=batch):
        rows.append(passage)
        if len(rows) == batch:
            _index_add(index, rows)
            rows = []
    _index_add(index, rows)
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
            details={"passages": len(index), "embedder": embedder.model_name},
        )
    return version


def _index_add(index: VectorIndex, rows: list[Passage]) -> None:
    """Embed ``rows`` and add them with their texts, so BM25 covers the same passages."""
    if not rows:
        return
    texts = [
        embedding_text(
            p.guideline.title, tuple(p.section.split(" > ")) if p.section else (), p.text
        )
        for p in rows
    ]
    index.add([p.pk for p in rows], runtime.get_embedder().encode(texts), texts=texts)
