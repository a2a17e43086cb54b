"""Request body limits enforced at the ASGI edge, before Django buffers anything.

Django's ASGI handler spools the whole request body to a temporary file before a view runs, so
a view cannot refuse an oversized upload in time. This wrapper refuses a declared
``Content-Length`` above the limit without reading the body, and cuts off a body (chunked, or
lying about its length) as soon as it passes the limit.

The limit may depend on who is asking (a large upload only for a signed-in guideline admin):
:func:`session_key` and :func:`session_user` tell who that is from the session cookie alone,
before the body is read and without changing the session.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import (
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    get_user_model,
    load_backend,
)
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.http.cookie import parse_cookie
from django.utils.crypto import constant_time_compare

from clinic_app.accounts.sessions import session_expired_reason

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
LimitFor = Callable[[Scope], Awaitable[int]]


class BodySizeLimit:
    """Wraps an ASGI app; ``await limit_for(scope)`` is the largest body accepted for a request.

    ``limit_for`` sees only the request line and headers: it runs before any body is read.
    """

    def __init__(self, app: Any, limit_for: LimitFor) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = await self.limit_for(scope)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send, limit)
            return
        received = 0
        exceeded = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    return {"type": "http.disconnect"}  # Django stops reading and gives up
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, limited_receive, tracking_send)
        if exceeded and not started:
            await _refuse(send, limit)


def session_key(scope: Scope) -> str | None:
    """The session cookie's value in the request's headers, if any."""
    cookies = "; ".join(
        value.decode("latin-1") for name, value in scope.get("headers", []) if name == b"cookie"
    )
    return parse_cookie(cookies).get(settings.SESSION_COOKIE_NAME) or None


def session_user(*, session_key: str) -> AbstractBaseUser | None:
    """The active user signed in with this session, or ``None``; reads the database (sync).

    Checks what Django's own authentication checks (session exists and has not expired, the
    backend is configured, the password has not changed since sign-in) but never writes: the
    request itself has not started, so a stale session is left for Django to flush.
    """
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key=session_key)
    try:
        user_id = get_user_model()._meta.pk.to_python(store[SESSION_KEY])
        backend_path = store[BACKEND_SESSION_KEY]
    except (KeyError, ValidationError):
        return None
    if backend_path not in settings.AUTHENTICATION_BACKENDS:
        return None
    # Past its idle or absolute lifetime the session no longer signs anyone in.
    if session_expired_reason(session=store, now=time.time()) is not None:
        return None
    user = load_backend(backend_path).get_user(user_id)
    if user is None or not user.is_active:
        return None
    signed = str(store.get(HASH_SESSION_KEY) or "")
    if not signed or not constant_time_compare(signed, user.get_session_auth_hash()):
        return None
    return user


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(send: Send, limit: int) -> None:
    body = (
        f"The request is larger than the limit of {limit / 1_000_000:.0f} MB and was refused "
        "before it was read. Upload fewer or smaller files.\n"
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
