"""Domain operations. Views, consumers, tasks and commands call these and nothing deeper."""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, cast

from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from clinic_app.answers.contracts import EvidencePayload, FlagPayload
from clinic_app.answers.identifiers import identifier_kinds
from clinic_app.answers.selectors import answer_get_for_user, answer_payload
from clinic_app.answers.streaming import AnswerSink, CollectingSink
from clinic_app.audit.record import audit_record
from clinic_app.core import jobs, runtime
from clinic_app.library.index_versions import passage_embedding_text
from clinic_app.models import (
    Answer,
    AnswerStatus,
    Citation,
    Passage,
    Question,
)
from clinic_app.observability import metrics
from inference.backends.base import Backend
from inference.citations import check_answer, summary_withheld_reason
from inference.errors import BackendError, Cancelled
from inference.prompts import BuiltPrompt, PromptTooLong, SourcePassage, Turn, build_prompt
from inference.safety import question_screen
from inference.sanitize import backend_control_tokens
from inference.support import NO_CITATION, NO_CLAIM, check_answer_support
from inference.types import FlagKind, GenerationRequest
from retrieval.coverage import (
    SUMMARY_MAX_UNMENTIONED,
    Coverage,
    LibraryVocabulary,
    coverage_check,
    terms_unmentioned,
)
from retrieval.evidence import RankedUnit, evidence_pick, evidence_rank, passage_excerpts
from retrieval.followup import FollowUpMode, follow_up_queries, hits_merge
from retrieval.search import SearchResult
from retrieval.types import Hit

log = logging.getLogger(__name__)

REFUSAL_NO_EVIDENCE = (
    "No sufficiently relevant passage was found in the guideline library for this question, "
    "so no answer was generated. Rephrase the question, or consult other sources."
)
CANCEL_POLL_S = 0.1


class QuestionRejected(ValueError):
    """The question cannot be accepted; the message says why, for the user."""


# --------------------------------------------------------------------------------- questions


class FollowUpNotYours(QuestionRejected):
    """The answer a follow-up names is not one of the user's own (or does not exist)."""


def question_ask(
    *,
    user: User,
    text: str,
    source_ip: str = "",
    enforce_limits: bool = True,
    follow_up_of: int | None = None,
    via: str = "websocket",
) -> Answer:
    """Record a clinician's question and its pending answer. Does not start generation.

    ``enforce_limits``: the per-user limits on answers in flight and questions per minute
    (``QUESTION_MAX_CONCURRENT``, ``QUESTION_RATE_PER_MINUTE``). Server-side batch tools that
    ask one question at a time (evaluation) may turn them off. Patient identifiers still in the
    question (the clinician chose to send them) are recorded by kind, never by value.

    ``follow_up_of``: the id of one of the user's own finished answers, the latest of its
    conversation; the question continues that conversation (at most ``THREAD_MAX_TURNS``
    questions). Someone else's answer id is refused as any unauthorised access is (audited,
    :class:`FollowUpNotYours`).
    """
    text = (text or "").strip()
    if not text:
        raise QuestionRejected("Please type a question.")
    limit = settings.QUESTION_MAX_CHARS
    if len(text) > limit:
        raise QuestionRejected(
            f"Questions are limited to {limit} characters; this one has {len(text)}. "
            "Please shorten it."
        )
    if follow_up_of is not None and not answer_access_check(
        user=user, answer_id=follow_up_of, source_ip=source_ip, request="follow_up", via=via
    ):
        raise FollowUpNotYours("No such answer of yours.")
    with transaction.atomic():
        if enforce_limits:
            _question_limits_check(user=user)
        parent = None if follow_up_of is None else _thread_parent(user=user, answer_id=follow_up_of)
        question = Question.objects.create(
            user=user,
            text=text,
            follow_up_of=parent,
            thread_id=None if parent is None else parent.question.thread_id,
            turn=1 if parent is None else parent.question.turn + 1,
        )
        answer = Answer.objects.create(question=question, disclaimer=settings.DISCLAIMER)
        details: dict[str, Any] = {
            "question_id": question.pk,
            "chars": len(text),
            "thread_id": question.thread_id,
            "turn": question.turn,
        }
        if parent is not None:
            details["follow_up_of"] = parent.pk
        kinds = identifier_kinds(text)
        if kinds:
            details["identifiers_found"] = kinds
        audit_record(
            action="question.asked",
            actor=user,
            object_type="answer",
            object_id=answer.pk,
            source_ip=source_ip,
            details=details,
        )
    return answer


def _thread_parent(*, user: User, answer_id: int) -> Answer:
    """The user's answer a follow-up continues, locked; :class:`QuestionRejected` unless it is
    finished, the latest of its conversation, and the conversation has a turn left."""
    parent = (
        Answer.objects.select_for_update()
        .select_related("question")
        .filter(pk=answer_id, question__user=user)
        .first()
    )
    if parent is None:  # deleted since the access check
        raise FollowUpNotYours("No such answer of yours.")
    if not parent.is_final:
        raise QuestionRejected("Wait for that answer to finish before asking a follow-up.")
    if Question.objects.filter(follow_up_of=parent).exists():
        raise QuestionRejected(
            "That answer already has a follow-up: continue the conversation from its latest "
            "answer, or start a new question."
        )
    limit = settings.THREAD_MAX_TURNS
    if parent.question.turn >= limit:
        raise QuestionRejected(
            f"This conversation has reached its limit of {limit} questions. Start a new "
            "question; the conversation stays in your history."
        )
    return parent


def _question_limits_check(*, user: User) -> None:
    """Raise :class:`QuestionRejected` when ``user`` is at a limit. Call inside the transaction
    that creates the question: the user's row is locked, so two asks from two tabs or two
    server processes are counted one after the other and neither slips past the limit."""
    list(User.objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True))
    now = timezone.now()
    concurrent = settings.QUESTION_MAX_CONCURRENT
    if concurrent:
        # An answer in flight for longer than a task may run lost its worker: it no longer
        # counts, so a crash cannot lock the clinician out.
        in_flight = Answer.objects.filter(
            question__user=user,
            status__in=(AnswerStatus.PENDING, AnswerStatus.STREAMING),
            question__created_at__gte=now - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT),
        ).count()
        if in_flight >= concurrent:
            log.info("user %s: question refused, %s answers in flight", user.pk, in_flight)
            noun = "answer" if in_flight == 1 else "answers"
            raise QuestionRejected(
                f"You already have {in_flight} {noun} in progress; wait for one to finish or "
                "cancel it."
            )
    rate = settings.QUESTION_RATE_PER_MINUTE
    if rate:
        recent = list(
            Question.objects.filter(user=user, created_at__gt=now - timedelta(seconds=60))
            .order_by("created_at")
            .values_list("created_at", flat=True)
        )
        if len(recent) >= rate:
            # A new question is allowed once enough of these have left the 60 s window.
            frees_at = recent[len(recent) - rate] + timedelta(seconds=60)
            wait = max(1, math.ceil((frees_at - now).total_seconds()))
            log.info("user %s: question refused, %s in the last minute", user.pk, len(recent))
            raise QuestionRejected(
                f"You can ask up to {rate} questions a minute; please wait {wait} seconds "
                "before asking another."
            )


def answer_start(*, answer_id: int) -> None:
    """Queue generation of ``answer_id`` once the current transaction commits."""
    jobs.enqueue_on_commit(jobs.Task.GENERATE_ANSWER, answer_id)


def _cancel_key(answer_id: int) -> str:
    return f"answer:{answer_id}:cancel"


def _cancel_requested(answer_id: int) -> bool:
    """Whether a cancel was asked for; an unreachable cache never stops an answer."""
    try:
        return bool(cache.get(_cancel_key(answer_id)))
    except Exception as exc:
        log.warning("answer %s: cannot read the cancel flag (%s); continuing", answer_id, exc)
        return False


def _cancel_clear(answer_id: int) -> None:
    try:
        cache.delete(_cancel_key(answer_id))
    except Exception as exc:
        log.warning("answer %s: cannot clear the cancel flag (%s)", answer_id, exc)


def answer_access_check(
    *, user: User, answer_id: int, source_ip: str, request: str, via: str = "websocket"
) -> bool:
    """Whether ``answer_id`` is the user's own answer; a refusal is audited (an attempt to
    read, stop or follow up someone else's answer, or to subscribe to one not yet asked)."""
    if answer_get_for_user(user=user, answer_id=answer_id) is not None:
        return True
    audit_record(
        action="answer.access_denied",
        actor=user,
        object_type="answer",
        object_id=answer_id,
        outcome="failure",
        source_ip=source_ip,
        details={"request": request, "via": via},
    )
    return False


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
    flags: list[FlagPayload] = field(default_factory=list)


def _finish(
    answer: Answer,
    outcome: _Outcome,
    sink: AnswerSink,
    details: dict[str, Any],
    *,
    counted_as: str = "",
) -> Answer:
    question = answer.question
    # Every answer event names its conversation, so an export can be read thread by thread.
    details = {"thread_id": question.thread_id or question.pk, "turn": question.turn, **details}
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
    metrics.ANSWERS.labels(outcome=counted_as or outcome.status).inc()
    if outcome.status == AnswerStatus.COMPLETE and answer.started_at is not None:
        whole = (answer.finished_at - answer.started_at).total_seconds()
        metrics.ANSWER_SECONDS.observe(whole)
    return answer


def answer_generate(*, answer_id: int, sink: AnswerSink) -> Answer:
    """Produce the answer: retrieve, refuse or prompt, stream, check citations, persist.

    Idempotent: an answer already in a final state is re-announced, not regenerated; one left
    half-streamed by a lost worker starts again from scratch.
    """
    answer, fresh = _attempt_start(answer_id)
    if not fresh:
        sink.finish(answer_payload(answer))
        return answer
    if answer.attempts > settings.ANSWER_MAX_ATTEMPTS:
        # Its worker died every time (e.g. out of memory): stop redelivering it.
        message = (
            f"The answer could not be generated: the worker writing it stopped "
            f"{answer.attempts - 1} times. Try again later or contact support."
        )
        return _finish(
            answer,
            _Outcome(AnswerStatus.FAILED, message=message),
            sink,
            {"error": "attempts_exhausted", "attempts": answer.attempts},
        )
    sink.begin(answer.attempts)
    question = answer.question.text
    started = time.monotonic()
    assert answer.started_at is not None  # set by _attempt_start
    metrics.QUEUE_WAIT.observe(
        max(0.0, (answer.started_at - answer.question.created_at).total_seconds())
    )

    # 1. The safety gate, before anything is looked up: requests for harm, self-harm means, to
    # override the rules or reveal them, role-play, pasted "sources" are refused with the reason.
    screen = question_screen(question)
    if not screen.allowed:
        log.info("answer %s: refused by the safety gate (%s)", answer.pk, screen.rule)
        return _finish(
            answer,
            _Outcome(
                AnswerStatus.REFUSED,
                message=screen.message,
                flags=[{"kind": FlagKind.SAFETY_GATE, "detail": screen.category or ""}],
            ),
            sink,
            {
                "reason": "safety_gate",
                "category": screen.category,
                "rule": screen.rule,
                "latency_ms": int((time.monotonic() - started) * 1000),
            },
        )

    # 2. Retrieve: embed the question (a follow-up with its conversation's earlier questions,
    # FOLLOW_UP_QUERY) and search the live index.
    earlier = thread_earlier(answer.question)
    result, passages = _retrieve(question, earlier)
    hits = [h for h in result.hits if h.passage_id in passages]
    answer.index_version = result.index_version
    # Relevance is judged on dense cosine (the calibrated scale), whatever the fused ranking.
    answer.top_score = max((h.score for h in hits), default=0.0)
    answer.save(update_fields=["index_version", "top_score"])

    # 3. Refuse without calling the model when the evidence is too weak.
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

    # 3b. Refuse, naming it, what the library does not cover although the topic matched: a
    # specialised term no guideline uses, or a population no retrieved passage addresses.
    coverage = question_coverage(question, [passages[h.passage_id] for h in hits])
    if not coverage.covered:
        return _finish(
            answer,
            _Outcome(
                AnswerStatus.REFUSED,
                message=coverage_refusal_message(coverage),
                flags=[{"kind": FlagKind.NOT_COVERED, "detail": coverage.describe()}],
            ),
            sink,
            {
                "reason": "not_covered",
                "missing_terms": list(coverage.missing_terms),
                "missing_populations": list(coverage.missing_populations),
                "top_score": answer.top_score,
                "index_version": result.index_version,
                "passage_ids": [h.passage_id for h in hits],
                "latency_ms": int((time.monotonic() - started) * 1000),
            },
        )

    # 4. Score the sources' sentences for the question (the evidence block, and the excerpts a
    # CPU model reads instead of whole passages), then build the prompt within the context.
    backend = runtime.get_backend()
    offered = _sources_offered(hits, passages)
    ranked = evidence_rank(question, [s.text for s in offered], embed=runtime.get_embedder().encode)
    try:
        prompt, excerpted = _prompt_build(backend, question, offered, ranked, earlier)
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
    # The passages may be about something near the question, not the question (too many of its
    # less common words in none of them): then the quotes are the answer, the model is not asked.
    unmentioned = summary_unmentioned(question, [passages[h.passage_id] for h in hits])
    if not unmentioned:
        answer.backend = backend.info.backend
        answer.model_name = backend.info.model
        answer.model_version = backend.info.version
        answer.prompt_sha256 = hashlib.sha256(prompt.text.encode()).hexdigest()
    # 5. Evidence first: the sources' own sentences that best answer the question, shown
    # before the model's first token and kept whatever the model then writes.
    answer.evidence = evidence_build(
        ranked=ranked, offered=offered, sources=prompt.sources, passages=passages
    )
    answer.save(
        update_fields=["backend", "model_name", "model_version", "prompt_sha256", "evidence"]
    )
    sink.evidence(answer.evidence)
    details: dict[str, Any] = {
        "passage_ids": [s.passage_id for s in prompt.sources],
        "evidence": [{"source": e["source"], "text": e["text"]} for e in answer.evidence],
        "index_version": result.index_version,
    }
    if earlier:
        details["history_turns"] = prompt.turns

    # 6. No summary: the quotes, and which of the question's words the passages do not use.
    if unmentioned:
        details.update(
            summary="skipped",
            unmentioned_terms=list(unmentioned),
            latency_ms=int((time.monotonic() - started) * 1000),
        )
        return _finish(
            answer,
            _Outcome(
                AnswerStatus.COMPLETE,
                message=summary_skipped_message(unmentioned),
                flags=[
                    {
                        "kind": FlagKind.SUMMARY_SKIPPED,
                        "detail": Coverage(missing_terms=unmentioned).describe(),
                    }
                ],
            ),
            sink,
            details,
            counted_as="summary_skipped",
        )

    # 7. Stream from the model, watching for a cancel request.
    details.update(
        model=backend.info.model,
        model_version=backend.info.version,
        prompt_sha256=answer.prompt_sha256,
        prompt_tokens=prompt.prompt_tokens,
        prompt_sources="excerpts" if excerpted else "passages",
    )
    _release_database()  # the model may write for minutes
    metrics.model_seen(backend.info.backend, backend.info.model, backend.info.version)
    text, outcome, first_at = _stream(backend, prompt, answer_id, sink)
    ended = time.monotonic()
    details["latency_ms"] = int((ended - started) * 1000)
    if first_at is not None:
        metrics.FIRST_TOKEN.observe(first_at - started)
        # Kept with the answer for the quality page's time-to-first-token over time.
        answer.first_token_ms = details["first_token_ms"] = round((first_at - started) * 1000)
    if outcome is not None:
        outcome.text = text
        return _finish(answer, outcome, sink, {**details, "error": outcome.message})

    # 8. Check citations, persist, announce.
    tokens = backend.count_tokens(text)
    if first_at is not None and tokens > 1 and ended > first_at:
        metrics.TOKENS_PER_SECOND.observe((tokens - 1) / (ended - first_at))
    checked_text, cited, flags = answer_checks(
        text,
        # Checked against the whole passages, which the clinician opens from each citation.
        sources=[passages[s.passage_id].text for s in prompt.sources],
        truncated=tokens >= settings.ANSWER_MAX_TOKENS,
    )
    Citation.objects.filter(answer=answer, number__in=cited).update(cited=True)
    return _finish(
        answer, _Outcome(AnswerStatus.COMPLETE, text=checked_text, flags=flags), sink, details
    )


def _attempt_start(answer_id: int) -> tuple[Answer, bool]:
    """Lock the answer and start a new attempt at it: ``(answer, True)``; an answer already in
    a final state is left alone: ``(answer, False)``. A half-streamed attempt of a lost worker
    is discarded (text, evidence, citations), so the new one starts from scratch."""
    with transaction.atomic():
        answer = (
            Answer.objects.select_for_update().select_related("question__user").get(pk=answer_id)
        )
        if answer.is_final:
            return answer, False
        _cancel_clear(answer_id)
        answer.attempts += 1
        answer.status = AnswerStatus.STREAMING
        answer.text = ""
        answer.evidence = []
        answer.chunks_sent = 0
        answer.started_at = timezone.now()
        answer.citations.all().delete()
        answer.save()
    return answer, True


def _retrieve(question: str, earlier: list[Question]) -> tuple[SearchResult, dict[int, Passage]]:
    """Search the live index for ``question`` (with its conversation's earlier questions, per
    ``FOLLOW_UP_QUERY``); the passages found that are still citable (active guidelines)."""
    _release_database()  # embedding can queue behind other answers' for a while
    with metrics.timed(metrics.RETRIEVAL_SECONDS):
        result = thread_search(question, [q.text for q in earlier])
    metrics.INDEX_VERSION.set(result.index_version)
    passages = {
        p.pk: p
        for p in Passage.objects.filter(
            pk__in=[h.passage_id for h in result.hits], guideline__active=True
        ).select_related("guideline")
    }
    return result, passages


def _sources_offered(hits: list[Hit], passages: dict[int, Passage]) -> list[SourcePassage]:
    """The retrieved passages the model may be given, best first: those semantically close, or
    matched by BM25 on their exact terms (drug names, scores, abbreviations embeddings blur)."""
    return [
        SourcePassage(
            passage_id=h.passage_id,
            title=passages[h.passage_id].guideline.title,
            section=passages[h.passage_id].section,
            text=passages[h.passage_id].text,
        )
        for h in hits
        if h.passage_id in passages
        and (h.score >= settings.RETRIEVAL_MIN_SCORE or (h.lexical or 0.0) > 0.0)
    ]


def _prompt_build(
    backend: Backend,
    question: str,
    offered: list[SourcePassage],
    ranked: list[RankedUnit],
    earlier: list[Question],
) -> tuple[BuiltPrompt, bool]:
    """The prompt for ``question``: numbered sources, the conversation so far, within the
    model's context (raises :class:`PromptTooLong`, or the backend's error); and whether the
    sources in it are excerpts (``PROMPT_SOURCES``) rather than whole passages.

    Excerpts keep each passage's best sentences (``ranked``) within ``PROMPT_EXCERPT_TOKENS``
    under a short header (the section's own heading); a passage none of whose sentences made it
    is not offered.
    """
    sources = offered
    budget = runtime.prompt_excerpt_budget(backend)
    if budget and ranked:
        excerpts = passage_excerpts(
            ranked, sources=len(offered), budget_tokens=budget, count_tokens=backend.count_tokens
        )
        # Short headers too: the section's own heading only (a guideline title and section path
        # take 30-50 tokens per source, as much as its excerpt).
        sources = [
            replace(s, text=text, title="", section=s.section.rsplit(">", 1)[-1].strip())
            for s, text in zip(offered, excerpts, strict=True)
            if text
        ]
    prompt = build_prompt(
        profile=runtime.get_profile(),
        question=question,
        sources=sources,
        count_tokens=backend.count_tokens,
        context_tokens=backend.info.context_tokens,
        max_tokens=settings.ANSWER_MAX_TOKENS,
        # Passages and the question must not carry any special token the tokenizer knows.
        control_tokens=backend_control_tokens(backend),
        # The conversation so far as the clinician saw it; the oldest turns go first.
        history=[Turn(q.text, q.answer.text or q.answer.message) for q in earlier],
    )
    return prompt, sources is not offered


def answer_checks(
    text: str, *, sources: list[str], truncated: bool
) -> tuple[str, list[int], list[FlagPayload]]:
    """The checks of a generated answer against the sources it was given: ``(cleaned text,
    cited source numbers, flags)``.

    Citations to sources not given and URLs or markup no source contained are removed and
    flagged; uncited sentences and, unless ``SUPPORT_CHECK=off``, sentences the cited passages
    do not support are flagged; an answer cut at the length limit is flagged as truncated; and
    a summary mostly unsupported (or only markers) is withheld behind the quotes.
    """
    checked = check_answer(text, source_count=len(sources), source_texts=sources)
    flags: list[FlagPayload] = [{"kind": f.kind, "detail": f.detail} for f in checked.flags]
    if settings.SUPPORT_CHECK != "off":
        # Uncited sentences and invalid citations are already flagged by check_answer.
        embed = runtime.get_embedder().encode if settings.SUPPORT_CHECK == "combined" else None
        flags += [
            {"kind": FlagKind.WEAK_SUPPORT, "detail": s.reason, "sentence": s.sentence[:300]}
            for s in check_answer_support(checked.text, sources, embed=embed)
            if not s.supported and s.kind not in (NO_CITATION, NO_CLAIM)
        ]
    if truncated:
        flags.append({"kind": FlagKind.TRUNCATED, "detail": "the answer reached the length limit"})
    # Contain what the model got wrong: a summary mostly unsupported (or only markers) is
    # folded away on the page behind the quotes, and counted.
    withheld = summary_withheld_reason(
        checked.text,
        flagged_sentences=sum(
            f["kind"] in (FlagKind.WEAK_SUPPORT, FlagKind.UNCITED_SENTENCE) for f in flags
        ),
        max_share=settings.SUMMARY_WITHHOLD_SHARE,
    )
    if withheld:
        flags.append({"kind": FlagKind.SUMMARY_WITHHELD, "detail": withheld})
    return checked.text, checked.cited, flags


def thread_earlier(question: Question) -> list[Question]:
    """The questions before ``question`` in its conversation, oldest first, with answers."""
    if question.turn <= 1 or question.thread_id is None:
        return []
    return list(
        Question.objects.filter(thread_id=question.thread_id, turn__lt=question.turn)
        .select_related("answer")
        .order_by("turn")
    )


def thread_search(question: str, earlier: list[str], *, k: int | None = None) -> SearchResult:
    """Search for ``question`` asked after ``earlier`` questions of its conversation (oldest
    first), as ``FOLLOW_UP_QUERY`` says (``retrieval.followup``); a first question as it is.
    ``k``: passages wanted (``RETRIEVAL_TOP_K``)."""
    retriever = runtime.get_retriever()
    k = k or settings.RETRIEVAL_TOP_K
    mode = cast(FollowUpMode, settings.FOLLOW_UP_QUERY)  # one of FOLLOW_UP_MODES (settings)
    queries = follow_up_queries(question, earlier, mode)
    if mode == "fallback":
        # The follow-up's own words first; the previous question only when they find too little.
        first = retriever.search(queries[0], k=k)
        if first.top_score >= settings.RETRIEVAL_MIN_SCORE or len(queries) == 1:
            return first
        return retriever.search(queries[1], k=k)
    results = [retriever.search(query, k=k) for query in queries]
    if len(results) == 1:
        return results[0]
    hits = hits_merge([r.hits for r in results], k)
    return SearchResult(
        hits=hits,
        index_version=results[0].index_version,
        top_score=max((h.score for h in hits), default=0.0),
    )


def question_coverage(question: str, passages: list[Passage]) -> Coverage:
    """What of ``question`` the library and the retrieved ``passages`` do not cover."""
    if settings.COVERAGE_CHECK == "off":
        return Coverage()
    vocabulary = runtime.get_retriever().vocabulary()
    # The texts as indexed, the same ones the library vocabulary is built from.
    texts = [passage_embedding_text(p) for p in passages]
    if vocabulary is None:  # an index without texts: only the populations can be checked
        vocabulary = LibraryVocabulary(texts)
    return coverage_check(question, texts, vocabulary, rare_below=settings.COVERAGE_RARE_ZIPF)


def summary_unmentioned(question: str, passages: list[Passage]) -> tuple[str, ...]:
    """The question's less common words no retrieved passage uses, when there are too many of
    them for a summary (empty: write one). ``SUMMARY_COVERAGE_CHECK=off`` always writes one."""
    if settings.SUMMARY_COVERAGE_CHECK == "off":
        return ()
    missing = terms_unmentioned(question, [passage_embedding_text(p) for p in passages])
    return missing if len(missing) > SUMMARY_MAX_UNMENTIONED else ()


def summary_skipped_message(unmentioned: tuple[str, ...]) -> str:
    """Why the answer has the guideline's sentences but no summary, naming the missing words."""
    words = Coverage(missing_terms=unmentioned).describe()
    return (
        f"No summary was written: the guideline passages found do not mention {words}, so they "
        "are probably about a nearby topic rather than this question. The guideline sentences "
        "shown are the closest the library comes; check them and consult other sources."
    )


def coverage_refusal_message(coverage: Coverage) -> str:
    """The refusal for a question the library does not cover, naming what is missing."""
    if coverage.missing_terms:
        terms = Coverage(missing_terms=coverage.missing_terms).describe()
        them = "it" if len(coverage.missing_terms) == 1 else "them"
        return (
            f"The guidelines in the library do not cover {terms}: none of them mentions {them}, "
            "so no answer was generated. If that is a brand name, an abbreviation or a "
            "misspelling, ask again with the generic or full name; otherwise consult other "
            "sources."
        )
    groups = Coverage(missing_populations=coverage.missing_populations).describe()
    return (
        f"The guideline passages found for this question do not address {groups}: none of "
        "them mentions it, so no answer was generated. Consult other sources for this question."
    )


def evidence_build(
    *,
    ranked: list[RankedUnit],
    offered: list[SourcePassage],
    sources: list[SourcePassage],
    passages: dict[int, Passage],
) -> list[EvidencePayload]:
    """The evidence block: the best verbatim sentences (``ranked`` over ``offered``) of the
    passages the prompt gave as ``sources``, numbered as in the prompt, each with its
    guideline's title, organisation and year, in reading order."""
    number = {source.passage_id: i for i, source in enumerate(sources, start=1)}
    in_prompt = [
        replace(unit, source=number[offered[unit.source - 1].passage_id])
        for unit in ranked
        if offered[unit.source - 1].passage_id in number
    ]
    block: list[EvidencePayload] = []
    for item in evidence_pick(in_prompt, max_items=settings.EVIDENCE_MAX_ITEMS):
        source = sources[item.source - 1]
        guideline = passages[source.passage_id].guideline
        block.append(
            {
                "source": item.source,
                "text": item.text,
                "score": item.score,
                "passage_id": source.passage_id,
                "section": passages[source.passage_id].section,
                "guideline": {
                    "key": guideline.key,
                    "title": guideline.title,
                    "organisation": guideline.organisation,
                    "year": guideline.year,
                },
            }
        )
    return block


def _release_database() -> None:
    """Give this thread's database connection back before work that needs none.

    A worker writes many answers at once, one thread each; threads holding idle connections
    through retrieval and generation would cap concurrent answers at the database's connection
    limit (PostgreSQL's default is 100) instead of the model server's capacity. The next query
    reconnects; streamed-text snapshots are saved by the sink's writer on its own connection.
    Inside a transaction (the tests' own) the connection is kept.
    """
    if not connection.in_atomic_block:
        connection.close()


def _stream(
    backend: Backend, prompt: BuiltPrompt, answer_id: int, sink: AnswerSink
) -> tuple[str, _Outcome | None, float | None]:
    """Run generation into ``sink``; returns the text, if it did not complete why, and when
    (``time.monotonic()``) its first text arrived (``None``: none did)."""
    cancel = threading.Event()
    parts: list[str] = []
    first_at: float | None = None
    last_poll = 0.0
    request = GenerationRequest(
        prompt=prompt.text,
        max_tokens=settings.ANSWER_MAX_TOKENS,
        stop=prompt.stop,
        request_id=f"answer-{answer_id}",
        prefix=prompt.prefix,
    )
    try:
        for delta in backend.stream(request, cancel):
            if first_at is None:
                first_at = time.monotonic()
            parts.append(delta)
            sink.text(delta)
            now = time.monotonic()
            if now - last_poll >= CANCEL_POLL_S:
                last_poll = now
                if _cancel_requested(answer_id):
                    cancel.set()
    except Cancelled:
        return (
            "".join(parts),
            _Outcome(AnswerStatus.CANCELLED, message="The answer was cancelled."),
            first_at,
        )
    except BackendError as exc:
        log.warning("answer %s: generation failed: %s: %s", answer_id, type(exc).__name__, exc)
        return "".join(parts), _Outcome(AnswerStatus.FAILED, message=exc.user_message), first_at
    if cancel.is_set():
        return (
            "".join(parts),
            _Outcome(AnswerStatus.CANCELLED, message="The answer was cancelled."),
            first_at,
        )
    return "".join(parts), None, first_at


STALE_MESSAGE = (
    "The answer did not finish: the worker writing it stopped responding. Please ask again."
)


def answer_stale_after() -> timedelta:
    """How long an unfinished answer may go without finishing before it is declared failed.

    An attempt ends by its task's time limit; one whose worker died is redelivered within the
    broker's visibility timeout and starts again (resetting ``started_at``). Past both, nothing
    is coming. A queued answer gets the same allowance from when it was asked."""
    return timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + settings.CELERY_VISIBILITY_TIMEOUT)


def answer_expire_if_stale(*, user: User, answer_id: int) -> bool:
    """Mark the user's unfinished answer failed if it is past ``answer_stale_after``.

    Called when a page resumes an answer, so a clinician never waits on one whose task was lost
    (for example while the database was unreachable). A task that turns up later finds the
    answer final and only re-announces it. Returns whether it expired the answer."""
    with transaction.atomic():
        answer = (
            Answer.objects.select_for_update()
            .select_related("question__user")
            .filter(pk=answer_id, question__user=user)
            .first()
        )
        if answer is None or answer.is_final:
            return False
        since = answer.started_at or answer.question.created_at
        if timezone.now() - since < answer_stale_after():
            return False
        _finish(
            answer,
            _Outcome(AnswerStatus.FAILED, text=answer.text, message=STALE_MESSAGE),
            CollectingSink(),
            {"error": "stale", "since": since.isoformat(), "attempts": answer.attempts},
            counted_as="expired",
        )
    return True


def answer_snapshot_save(answer_id: int, attempt: int, seq: int, text: str) -> bool:
    """Save the text streamed so far and the sequence number of its last chunk.

    Only while that attempt is still the one streaming: a late write from a worker whose task
    was redelivered, or one racing the final save, changes nothing. Returns whether it saved.
    """
    return bool(
        Answer.objects.filter(pk=answer_id, attempts=attempt, status=AnswerStatus.STREAMING).update(
            text=text, chunks_sent=seq
        )
    )


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
