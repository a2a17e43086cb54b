"""Clinicians' feedback on answers, and its review by guideline admins (each audited)."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from clinic_app.audit.record import audit_record
from clinic_app.models import (
    FEEDBACK_COMMENT_MAX_CHARS,
    Answer,
    Feedback,
    FeedbackCategory,
)


class FeedbackRejected(ValueError):
    """Feedback that cannot be recorded; the message says why, for the user."""


class FeedbackNotFound(LookupError):
    """No such answer among the user's own, or no such unhelpful feedback."""


def feedback_submit(
    *,
    user: User,
    answer_id: int,
    helpful: bool,
    category: str = "",
    comment: str = "",
    source_ip: str = "",
) -> Feedback:
    """Record the clinician's verdict on their own finished answer (refusals included).

    One feedback per clinician and answer: a new submission replaces the previous one, and a
    change puts it back in the guideline admins' queue. An unhelpful verdict needs a category;
    a helpful one takes none. The audit event carries the ids, the verdict, the category and
    the comment's length, not the comment: it is free text that may hold patient details, and
    the audit log can never be redacted (the feedback row can).
    """
    category = (category or "").strip()
    comment = (comment or "").strip()
    if category and category not in FeedbackCategory.values:
        raise FeedbackRejected(
            f"Unknown category {category[:40]!r}; use one of: {', '.join(FeedbackCategory.values)}."
        )
    if helpful and category:
        raise FeedbackRejected(
            "A category says what was wrong; leave it empty for a helpful answer."
        )
    if not helpful and not category:
        raise FeedbackRejected("Choose what was wrong with the answer (a category).")
    if len(comment) > FEEDBACK_COMMENT_MAX_CHARS:
        raise FeedbackRejected(
            f"Comments are limited to {FEEDBACK_COMMENT_MAX_CHARS} characters; this one has "
            f"{len(comment)}."
        )
    with transaction.atomic():
        answer = (
            Answer.objects.select_for_update().filter(pk=answer_id, question__user=user).first()
        )
        if answer is not None:
            if not answer.is_final:
                raise FeedbackRejected("Feedback can be given once the answer has finished.")
            feedback = Feedback.objects.filter(answer=answer, user=user).first()
            updated = feedback is not None
            if feedback is None:
                feedback = Feedback(answer=answer, user=user)
            if (feedback.helpful, feedback.category, feedback.comment) != (
                helpful,
                category,
                comment,
            ):
                feedback.reviewed_at = None
                feedback.reviewed_by = None
            feedback.helpful, feedback.category, feedback.comment = helpful, category, comment
            feedback.save()
            audit_record(
                action="feedback.submitted",
                actor=user,
                object_type="answer",
                object_id=answer.pk,
                source_ip=source_ip,
                details={
                    "answer_id": answer.pk,
                    "feedback_id": feedback.pk,
                    "helpful": helpful,
                    "category": category,
                    "comment_chars": len(comment),
                    "updated": updated,
                },
            )
            return feedback
    # Attempts on answers that are not the user's are recorded too (as answer views are).
    audit_record(
        action="feedback.submitted",
        actor=user,
        object_type="answer",
        object_id=answer_id,
        outcome="failure",
        source_ip=source_ip,
        details={"reason": "not found among the user's answers"},
    )
    raise FeedbackNotFound("Answer not found.")


def feedback_review(*, user: User, feedback_id: int, source_ip: str = "") -> bool:
    """Mark unhelpful feedback reviewed by a guideline admin; ``False`` if it already was."""
    with transaction.atomic():
        feedback = (
            Feedback.objects.select_for_update().filter(pk=feedback_id, helpful=False).first()
        )
        if feedback is None:
            raise FeedbackNotFound("No such feedback in the review queue.")
        if feedback.reviewed_at is not None:
            return False
        feedback.reviewed_at = timezone.now()
        feedback.reviewed_by = user
        # updated_at stays: it says when the clinician last changed the feedback.
        feedback.save(update_fields=["reviewed_at", "reviewed_by"])
        audit_record(
            action="feedback.reviewed",
            actor=user,
            object_type="feedback",
            object_id=feedback.pk,
            source_ip=source_ip,
            details={"answer_id": feedback.answer_id, "category": feedback.category},
        )
    return True
