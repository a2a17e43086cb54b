"""Session lifetime and validity, for HTTP requests and for open websockets alike.

A session ends ``SESSION_ABSOLUTE_SECONDS`` after sign-in, or after ``SESSION_IDLE_SECONDS``
without a request or websocket message. Both stamps live in the session itself, so the HTTP
middleware and the websocket consumer reach the same conclusion from the same data.

Open sockets learn that their session may have ended from a ``session.end`` event on their
user's channel-layer group (sign-out, password change, deactivation, role removal, expiry);
each socket then checks its own session, so signing out on one workstation leaves the same
clinician's other sessions alone. Every websocket message is checked as well, so a change the
event could not announce (another process on the in-memory layer, a session row deleted by
hand) still ends the socket at its next message.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from importlib import import_module
from typing import Any, cast

from django.conf import settings
from django.contrib.auth import get_user
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.contrib.sessions.backends.base import SessionBase, UpdateError
from django.db import transaction
from django.http import HttpRequest, HttpResponse

from clinic_app.accounts.permissions import user_has_role
from clinic_app.answers.streaming import publish, user_group
from clinic_app.audit.record import audit_record
from clinic_app.core.client_ip import client_ip
from clinic_app.models import Role

log = logging.getLogger(__name__)

LOGIN_AT = "_clinic_login_at"  # epoch seconds of the sign-in that created the session
ACTIVE_AT = "_clinic_active_at"  # epoch seconds of the last request or websocket message

# Saving the activity stamp is a database write: do it at most this often (or a quarter of the
# idle limit, when that is shorter), never on every request.
_TOUCH_MAX_INTERVAL_S = 60.0
# A socket re-reads its session at least this often even when nothing announces a change.
SOCKET_RECHECK_S = 60.0
# Waiting for the channel layer must not hold a sign-out request for long; the per-message
# check ends the socket anyway if the event is lost.
_BROADCAST_TIMEOUT_S = 2.0


class SessionState(StrEnum):
    VALID = "valid"
    ENDED = "ended"  # signed out, expired, password changed, deactivated: sign in again
    FORBIDDEN = "forbidden"  # still signed in, but no longer a clinician


@dataclass(frozen=True)
class SocketSession:
    """What a websocket's session check concluded, and when its session would next expire."""

    state: SessionState
    expires_in: float = 0.0  # seconds until the idle or absolute limit, from the stamps


def session_start(*, session: SessionBase, now: float | None = None) -> None:
    """Stamp a freshly signed-in session (called on ``user_logged_in``)."""
    now = time.time() if now is None else now
    session[LOGIN_AT] = now
    session[ACTIVE_AT] = now


def session_expired_reason(*, session: SessionBase, now: float) -> str | None:
    """``"absolute"``, ``"idle"`` or ``"unstamped"`` when the session is past its lifetime.

    A signed-in session without stamps predates them (or was forged around ``login()``): it
    is treated as expired rather than granted a fresh lifetime.
    """
    login_at, active_at = session.get(LOGIN_AT), session.get(ACTIVE_AT)
    if not isinstance(login_at, int | float) or not isinstance(active_at, int | float):
        return "unstamped"
    if now - login_at >= settings.SESSION_ABSOLUTE_SECONDS:
        return "absolute"
    if now - active_at >= settings.SESSION_IDLE_SECONDS:
        return "idle"
    return None


def session_expires_in(*, session: SessionBase, now: float) -> float:
    """Seconds until the session reaches its idle or absolute limit (stamps assumed present)."""
    deadline = min(
        float(session[LOGIN_AT]) + settings.SESSION_ABSOLUTE_SECONDS,
        float(session[ACTIVE_AT]) + settings.SESSION_IDLE_SECONDS,
    )
    return max(0.0, deadline - now)


def session_touch(*, session: SessionBase, now: float) -> bool:
    """Record activity; returns whether the stamp changed (the session then needs saving)."""
    interval = min(_TOUCH_MAX_INTERVAL_S, settings.SESSION_IDLE_SECONDS / 4)
    if now - float(session.get(ACTIVE_AT, 0.0)) < interval:
        return False
    session[ACTIVE_AT] = now
    return True


def session_digest(session_key: str | None) -> str:
    """Names a session in channel-layer events without putting the key itself on the wire."""
    return hashlib.sha256(session_key.encode()).hexdigest() if session_key else ""


def session_end_broadcast(*, user_id: int, reason: str, session_key: str | None = None) -> None:
    """Once the current transaction commits, tell the user's open sockets to check their
    session (``session_key``: the one that ended, whose sockets close without checking)."""
    event = {"type": "session.end", "reason": reason, "session": session_digest(session_key)}
    group = user_group(user_id)

    def send() -> None:
        try:
            publish(group, event, timeout=_BROADCAST_TIMEOUT_S)
        except Exception as exc:
            log.warning("user %s: session.end (%s) not delivered (%s)", user_id, reason, exc)

    # After commit: a socket that checks before the change is visible would stay open.
    transaction.on_commit(send)


def session_expire(
    *,
    session: SessionBase,
    user: AbstractBaseUser,
    reason: str,
    source_ip: str = "",
) -> None:
    """End a session that outlived its limits: record it, delete it, close its sockets."""
    key = session.session_key
    audit_record(
        action="auth.session_expired",
        actor=user,
        object_type="user",
        object_id=user.pk,
        source_ip=source_ip,
        details={"reason": reason},
    )
    session.flush()
    session_end_broadcast(user_id=user.pk, reason=f"expired:{reason}", session_key=key)


class SessionLifetimeMiddleware:
    """Signs out sessions past ``SESSION_ABSOLUTE_SECONDS`` or ``SESSION_IDLE_SECONDS``, and
    stamps activity (at most about once a minute) on the others. Sits after authentication."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        if user.is_authenticated:
            now = time.time()
            reason = session_expired_reason(session=request.session, now=now)
            if reason is not None:
                session_expire(
                    session=request.session,
                    user=user,
                    reason=reason,
                    source_ip=client_ip(request),
                )
                # As django.contrib.auth.logout leaves it: the view sees an anonymous visitor.
                request.user = AnonymousUser()
            else:
                session_touch(session=request.session, now=now)
        return self.get_response(request)


@dataclass
class _SessionOnly:
    """Just enough of a request for ``django.contrib.auth.get_user``."""

    session: SessionBase


def _session_store(session_key: str) -> SessionBase:
    engine: Any = import_module(settings.SESSION_ENGINE)
    return cast(SessionBase, engine.SessionStore(session_key))


def socket_session_check(
    *, session_key: str | None, user_id: int, touch: bool, source_ip: str = ""
) -> SocketSession:
    """Whether a websocket opened by ``user_id`` on ``session_key`` may go on.

    Reads the session afresh from the store (the socket's copy is as old as the socket) and
    concludes what an HTTP request would: ``get_user`` (the session still exists, its auth
    hash matches the current password, the account is active), then the idle and absolute
    limits, then the clinician role. ``touch``: the socket's user just acted (a message).
    """
    if not session_key:
        return SocketSession(SessionState.ENDED)
    session = _session_store(session_key)
    user = get_user(cast(HttpRequest, _SessionOnly(session)))
    if not user.is_authenticated or user.pk != user_id or not user.is_active:
        return SocketSession(SessionState.ENDED)
    now = time.time()
    reason = session_expired_reason(session=session, now=now)
    if reason is not None:
        session_expire(session=session, user=user, reason=reason, source_ip=source_ip)
        return SocketSession(SessionState.ENDED)
    if not user_has_role(user, Role.CLINICIAN):
        return SocketSession(SessionState.FORBIDDEN)
    if touch and session_touch(session=session, now=now):
        try:
            session.save()
        except UpdateError:  # deleted since it was read: signed out meanwhile
            return SocketSession(SessionState.ENDED)
    return SocketSession(SessionState.VALID, session_expires_in(session=session, now=now))
