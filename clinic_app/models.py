"""Persistent state: guidelines and their passages, index versions, questions and answers."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models

from retrieval.urls import safe_http_url


class Role(models.TextChoices):
    """Django group names that grant each role."""

    CLINICIAN = "clinician", "Clinician"
    GUIDELINE_ADMIN = "guideline-admin", "Guideline admin"
    AUDITOR = "auditor", "Auditor"


class Guideline(models.Model):
    """One ingested guideline document (for the demo corpus: one section file of a guideline)."""

    key = models.CharField(max_length=200, unique=True)
    title = models.CharField(max_length=500)
    organisation = models.CharField(max_length=200, blank=True)
    year = models.PositiveIntegerField(null=True, blank=True)
    doi = models.CharField(max_length=200, blank=True)
    url = models.URLField(max_length=500, blank=True)
    sha256 = models.CharField(max_length=64)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    jurisdiction = models.CharField(max_length=100, blank=True)
    review_date = models.DateField(null=True, blank=True, help_text="When it is due for review")
    # The upload as received (stored under its sha256, never under the uploader's filename).
    source_name = models.CharField(max_length=255, blank=True, help_text="Uploaded file's name")
    original_sha256 = models.CharField(max_length=64, blank=True)
    original_type = models.CharField(max_length=20, blank=True, help_text="Detected format")
    extracted_text = models.TextField(blank=True)
    superseded_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="supersedes"
    )
    # Deleted guidelines whose passages answers cited are kept (hidden) for the record.
    deleted_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.title} ({self.key})"

    @property
    def safe_url(self) -> str:
        """``url`` if it is http(s), else "": rows stored before URLs were checked may hold any."""
        return safe_http_url(self.url) or ""

    @property
    def state(self) -> str:
        """``deleted``, ``superseded``, ``active`` or ``inactive``."""
        if self.deleted_at is not None:
            return "deleted"
        if self.superseded_by_id is not None:
            return "superseded"
        return "active" if self.active else "inactive"


class Passage(models.Model):
    """A chunk of a guideline; its primary key is its id in the vector index."""

    guideline = models.ForeignKey(Guideline, on_delete=models.PROTECT, related_name="passages")
    ordinal = models.PositiveIntegerField()
    section = models.CharField(max_length=500, blank=True)
    text = models.TextField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["guideline", "ordinal"], name="passage_unique_ordinal")
        ]
        ordering = ["guideline_id", "ordinal"]

    def __str__(self) -> str:
        return f"passage {self.pk} ({self.section})"


class IndexVersion(models.Model):
    """A published vector index; exactly one is live."""

    version = models.PositiveIntegerField(unique=True)
    embedder = models.CharField(max_length=200)
    passage_count = models.PositiveIntegerField()
    live = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"index v{self.version}{' (live)' if self.live else ''}"


class IngestStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"


class IngestPhase(models.TextChoices):
    """What a running upload job is doing (shown on its page as it goes)."""

    QUEUED = "queued"
    PARSING = "parsing"
    INDEXING = "indexing"
    COMPLETE = "complete"
    FAILED = "failed"


class IngestItemOutcome(models.TextChoices):
    """What happened to one document of an upload job (``IngestJob.items[*]["outcome"]``)."""

    ADDED = "added"
    DUPLICATE = "duplicate"
    FAILED = "failed"
    WARNING = "warning"  # added, with something the admin should check (a row of its own)


class IngestJob(models.Model):
    """One upload of one or many files, ingested by a Celery task; progress survives reloads.

    ``files``: ``[{"name", "size", "sha256", "path"}]`` staged under the job's own folder
    (``path`` is ours, never the uploader's filename). ``items``: one entry per document, with
    its outcome (``IngestItemOutcome``) and, when it failed or warns, the reason.
    """

    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(
        max_length=16, choices=IngestStatus.choices, default=IngestStatus.QUEUED
    )
    files = models.JSONField(default=list)
    metadata = models.JSONField(default=dict, blank=True)
    total = models.PositiveIntegerField(default=0, help_text="Documents found so far")
    done = models.PositiveIntegerField(default=0, help_text="Documents processed")
    added = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    phase = models.CharField(max_length=40, choices=IngestPhase.choices, default=IngestPhase.QUEUED)
    message = models.TextField(blank=True)
    items = models.JSONField(default=list, blank=True)
    index_version = models.PositiveIntegerField(null=True, blank=True)
    # Saved with every progress update: a redelivered task leaves a job with a fresh heartbeat
    # alone (its first run is still working) and restarts one whose heartbeat went stale.
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"ingest job {self.pk} ({self.status})"


class Question(models.Model):
    """A clinician's question. Questions form conversations (threads): a follow-up names the
    answer it follows (``follow_up_of``, one of the same user's answers); ``thread`` is the
    conversation's first question (itself for a first question) and ``turn`` counts from 1."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    thread = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="thread_questions"
    )
    follow_up_of = models.ForeignKey(
        "Answer", null=True, blank=True, on_delete=models.PROTECT, related_name="follow_ups"
    )
    turn = models.PositiveSmallIntegerField(default=1)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"question {self.pk}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        """A question saved without a thread is the first turn of its own conversation."""
        super().save(*args, **kwargs)
        if self.thread_id is None:
            self.thread_id = self.pk
            type(self).objects.filter(pk=self.pk).update(thread_id=self.pk)


class AnswerStatus(models.TextChoices):
    PENDING = "pending"
    STREAMING = "streaming"
    COMPLETE = "complete"
    REFUSED = "refused"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_STATUSES = (
    AnswerStatus.COMPLETE,
    AnswerStatus.REFUSED,
    AnswerStatus.FAILED,
    AnswerStatus.CANCELLED,
)


class Answer(models.Model):
    """The answer to one question, with what it was based on."""

    question = models.OneToOneField(Question, on_delete=models.PROTECT, related_name="answer")
    status = models.CharField(
        max_length=16, choices=AnswerStatus.choices, default=AnswerStatus.PENDING
    )
    text = models.TextField(blank=True)
    message = models.TextField(blank=True, help_text="Refusal or error message shown to the user")
    disclaimer = models.TextField(blank=True)
    backend = models.CharField(max_length=40, blank=True)
    model_name = models.CharField(max_length=200, blank=True)
    model_version = models.CharField(max_length=100, blank=True)
    index_version = models.PositiveIntegerField(null=True, blank=True)
    top_score = models.FloatField(null=True, blank=True)
    prompt_sha256 = models.CharField(max_length=64, blank=True)
    flags = models.JSONField(default=list, blank=True)
    # "What the guidelines say": the verbatim sentences of the sources chosen before generation,
    # exactly as shown (source number, text, guideline, organisation, year, section).
    evidence = models.JSONField(default=list, blank=True)
    # While streaming: the sequence number of the last chunk in the saved ``text``.
    chunks_sent = models.PositiveIntegerField(default=0)
    # Generation attempts: a task whose worker died is redelivered and starts the answer over.
    attempts = models.PositiveSmallIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Milliseconds from the worker starting the answer to the model's first token (none when
    # the model was not called): the quality page's time-to-first-token over time.
    first_token_ms = models.PositiveIntegerField(null=True, blank=True)

    def __str__(self) -> str:
        return f"answer {self.pk} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


class Citation(models.Model):
    """A source given to the model as ``[S<number>]``; ``cited`` when the answer used it."""

    answer = models.ForeignKey(Answer, on_delete=models.CASCADE, related_name="citations")
    number = models.PositiveSmallIntegerField()
    passage = models.ForeignKey(Passage, on_delete=models.PROTECT)
    score = models.FloatField()
    cited = models.BooleanField(default=False)

    class Meta:
        ordering = ["number"]
        constraints = [
            models.UniqueConstraint(fields=["answer", "number"], name="citation_unique_number")
        ]

    def __str__(self) -> str:
        return f"[S{self.number}] of answer {self.answer_id}"


class AuditEvent(models.Model):
    """An append-only record of who did what, when, from where, to which object, and the outcome.

    Events form a hash chain (see ``clinic_app/audit/chain.py``): ``seq`` counts from 1 without
    gaps, ``prev_hash`` is the previous event's ``hash``. The database refuses UPDATE, DELETE and
    TRUNCATE on this table (triggers in migration 0002). Write through ``audit.audit_record``.
    """

    seq = models.PositiveBigIntegerField(unique=True)
    at = models.DateTimeField(db_index=True)
    actor = models.CharField(max_length=150, blank=True, db_index=True)
    action = models.CharField(max_length=60, db_index=True)
    object_type = models.CharField(max_length=60, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    outcome = models.CharField(max_length=20, default="success")
    source_ip = models.CharField(max_length=64, blank=True)
    details = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["-seq"]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} by {self.actor or '-'} ({self.outcome})"


class AuditHead(models.Model):
    """The chain's head, one row: appending an event locks it, so appends are serialised."""

    seq = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64)
    at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"audit head at seq {self.seq}"


class AuditCheckpoint(models.Model):
    """A signed copy of the chain head; also exported to storage outside the database."""

    seq = models.PositiveBigIntegerField()
    hash = models.CharField(max_length=64)
    at = models.CharField(max_length=32)
    signature = models.CharField(max_length=64)

    class Meta:
        ordering = ["seq"]

    def __str__(self) -> str:
        return f"checkpoint at seq {self.seq}"


FEEDBACK_COMMENT_MAX_CHARS = 1000


class FeedbackCategory(models.TextChoices):
    """What was wrong with an unhelpful answer."""

    OUTDATED = "outdated", "Outdated guidance"
    UNSUPPORTED = "unsupported", "Not supported by the sources"
    UNSAFE = "unsafe", "Unsafe"
    WRONG_CITATION = "wrong_citation", "Wrong citation"
    OTHER = "other", "Other"


class Feedback(models.Model):
    """A clinician's verdict on one of their answers; one per user and answer, updated in place
    (every submission is in the audit log). Unhelpful ones wait in the guideline admins' queue
    until ``reviewed_at`` is set; changing the feedback puts it back in the queue."""

    answer = models.ForeignKey(Answer, on_delete=models.PROTECT, related_name="feedback")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    helpful = models.BooleanField()
    category = models.CharField(max_length=20, choices=FeedbackCategory.choices, blank=True)
    comment = models.TextField(max_length=FEEDBACK_COMMENT_MAX_CHARS, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="feedback_reviewed",
    )

    class Meta:
        ordering = ["-updated_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["answer", "user"], name="feedback_one_per_user_answer")
        ]

    def __str__(self) -> str:
        return f"feedback {self.pk} on answer {self.answer_id}"


class EvaluationRun(models.Model):
    """An evaluation report kept for comparison over time (``manage.py evaluate --record``):
    the dataset and its hash, what answered (index version, backend, model), the settings that
    shape answers, every summary figure and one row per question. Recording it is audited."""

    recorded_at = models.DateTimeField(auto_now_add=True)
    ran_at = models.CharField(max_length=32)  # the report's own UTC timestamp
    format = models.CharField(max_length=32)
    dataset_name = models.CharField(max_length=255)
    dataset_sha256 = models.CharField(max_length=64)
    evaluated = models.PositiveIntegerField()
    index_version = models.IntegerField(null=True, blank=True)
    backend = models.CharField(max_length=64, blank=True)
    model_name = models.CharField(max_length=255, blank=True)
    model_version = models.CharField(max_length=64, blank=True)
    config = models.JSONField(default=dict)
    summary = models.JSONField(default=dict)
    items = models.JSONField(default=list)
    recorded_by = models.CharField(max_length=150)

    class Meta:
        ordering = ["-recorded_at", "-id"]
        indexes = [models.Index(fields=["dataset_sha256", "recorded_at"])]

    def __str__(self) -> str:
        return f"evaluation {self.pk} of {self.dataset_name}"
