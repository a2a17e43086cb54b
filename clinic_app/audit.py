"""Writing audit events. Call inside the transaction of the action being recorded."""

from __future__ import annotations

import re
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from clinic_app.models import AuditEvent

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _clean(value: str, limit: int) -> str:
    """Neutralise control characters so a value cannot forge log lines."""
    return _CONTROL.sub(" ", value)[:limit]


def audit_record(
    *,
    action: str,
    actor: AbstractBaseUser | AnonymousUser | str | None,
    object_type: str = "",
    object_id: str | int = "",
    outcome: str = "success",
    source_ip: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one audit event: who, what, which object, outcome, from where, with details."""
    if isinstance(actor, str) or actor is None:
        name = actor or ""
    else:
        name = "" if not actor.is_authenticated else actor.get_username()
    return AuditEvent.objects.create(
        actor=_clean(name, 150),
        action=_clean(action, 60),
        object_type=_clean(object_type, 60),
        object_id=_clean(str(object_id), 64),
        outcome=_clean(outcome, 20),
        source_ip=_clean(source_ip, 64),
        details=details or {},
    )
