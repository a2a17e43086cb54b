"""The auditor's reads, each recorded in the log it reads: viewing pages of the log, opening
an event, exporting, verifying the chain. A refused request (invalid filters) is recorded as a
failure with what was asked; the export and its record share one transaction, so the rows
exported are exactly those the record describes (``upto_seq``).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from django.contrib.auth.models import User
from django.core.paginator import Page
from django.db import transaction

from clinic_app.answers.contracts import AuditAnswerPayload
from clinic_app.audit import selectors
from clinic_app.audit.record import audit_record, audit_verify, default_checkpoint_files
from clinic_app.audit.selectors import AuditExport, AuditFilters
from clinic_app.models import AuditEvent


def audit_request_refused(
    *,
    user: User,
    action: str,
    params: dict[str, str],
    errors: list[str],
    source_ip: str = "",
    fmt: str | None = None,
) -> None:
    """Record a refused view or export (``action``): the parameters given, the fields at fault."""
    details: dict[str, Any] = {"params": params, "errors": errors}
    if fmt is not None:
        details = {"format": fmt, **details}
    audit_record(action=action, actor=user, outcome="failure", source_ip=source_ip, details=details)


def audit_log_view(
    *, user: User, filters: AuditFilters, page: str | int | None, source_ip: str = ""
) -> Page[AuditEvent]:
    """A page of the log, newest first; the view is recorded with its filters."""
    shown = selectors.audit_event_page(filters=filters, page=page)
    audit_record(
        action="audit.viewed",
        actor=user,
        source_ip=source_ip,
        details={"filters": filters.as_details(), "page": shown.number, "events": len(shown)},
    )
    return shown


def audit_event_view(
    *, user: User, seq: int, source_ip: str = ""
) -> tuple[AuditEvent, AuditAnswerPayload | None] | None:
    """One event, and for an answer's event what the clinician saw; None when there is none."""
    event = selectors.audit_event_get(seq=seq)
    if event is None:
        return None
    answer = selectors.audit_answer_view(event)
    audit_record(
        action="audit.event_viewed",
        actor=user,
        object_type="audit_event",
        object_id=seq,
        source_ip=source_ip,
        details={"answer_id": answer["id"]} if answer else {},
    )
    return event, answer


def audit_export(
    *, user: User, filters: AuditFilters, fmt: str, max_rows: int, source_ip: str = ""
) -> AuditExport:
    """The rows to export (at most ``max_rows``), selected and recorded in one transaction."""
    with transaction.atomic():
        export = selectors.audit_export_select(filters=filters, max_rows=max_rows)
        audit_record(
            action="audit.exported",
            actor=user,
            source_ip=source_ip,
            details={
                "format": fmt,
                "filters": filters.as_details(),
                "rows": export.rows,
                "matching": export.matching,
                "capped": export.capped,
                "upto_seq": export.upto,
            },
        )
    return export


def audit_chain_check(*, user: User, source_ip: str = "") -> dict[str, Any]:
    """Verify the whole chain and its checkpoints, and record the result (which it returns)."""
    try:
        result: dict[str, Any] = asdict(audit_verify(checkpoint_files=default_checkpoint_files()))
    except ValueError as exc:  # an unreadable checkpoint export file
        result = {"ok": False, "first_bad_seq": None, "problem": str(exc)}
    audit_record(
        action="audit.verify",
        actor=user,
        outcome="success" if result["ok"] else "failure",
        source_ip=source_ip,
        details=result,
    )
    return result
