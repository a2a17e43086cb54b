"""A guideline's lifecycle: activate, deactivate, supersede, delete; each change republishes the
index."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from clinic_app.audit.record import audit_record
from clinic_app.library.errors import LibraryError
from clinic_app.library.index_versions import index_publish_on_commit
from clinic_app.models import (
    Citation,
    Guideline,
    Passage,
)


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
        index_publish_on_commit(user.get_username())
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
        index_publish_on_commit(user.get_username())
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
        index_publish_on_commit(user.get_username())
    return outcome
