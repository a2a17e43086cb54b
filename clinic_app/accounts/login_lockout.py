"""Sign-in throttling (django-axes): the page a locked-out sign-in gets, and its audit record.

Settings: ``LOGIN_FAILURE_LIMIT`` and ``LOGIN_COOLOFF_MINUTES``; the lockout is keyed on the
username and the client address together (``clinic_app.core.client_ip``). Admins lift one early with
``manage.py axes_reset_username USERNAME`` (or ``axes_reset`` for all).
"""

from __future__ import annotations

import math
from typing import Any

from axes.signals import user_locked_out
from django.conf import settings
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from clinic_app.audit.record import audit_record
from clinic_app.observability import metrics


def lockout_minutes() -> int:
    """How long a locked-out sign-in waits after its last failure, in whole minutes."""
    return max(1, math.ceil(settings.AXES_COOLOFF_TIME.total_seconds() / 60))


def login_locked_out(
    request: HttpRequest, original_response: Any = None, credentials: Any = None
) -> HttpResponse:
    """``AXES_LOCKOUT_CALLABLE``: the sign-in page again, saying why and for how long (429).

    django-axes passes its arguments differently on its sync and async paths, so only the
    request is relied on.
    """
    return render(
        request,
        "login.html",
        {
            "locked_out": True,
            "lockout_minutes": lockout_minutes(),
            "next": request.POST.get("next", request.GET.get("next", "")),
        },
        status=429,
    )


@receiver(user_locked_out, dispatch_uid="clinic_audit_locked_out")
def _locked_out(
    sender: Any, request: HttpRequest, username: str | None, ip_address: str | None, **kwargs: Any
) -> None:
    """Every sign-in refused for too many failures is recorded: when an account is locked, and
    each further attempt while it stays locked (each one restarts the cool-off)."""
    metrics.LOGIN_LOCKOUTS.inc()
    audit_record(
        action="auth.locked_out",
        actor=username or "",
        outcome="failure",
        source_ip=ip_address or "",
        details={
            "username": username or "",
            "failures": getattr(request, "axes_failures_since_start", None),
            "cooloff_minutes": lockout_minutes(),
        },
    )
