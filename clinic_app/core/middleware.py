"""Who is acting, for audit records made where the request is out of reach (model signals)."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass

from django.http import HttpRequest, HttpResponse

from clinic_app.core.client_ip import client_ip


@dataclass(frozen=True)
class Acting:
    """The signed-in user of the request being served, and where it came from."""

    username: str
    source_ip: str


_acting: ContextVar[Acting | None] = ContextVar("clinic_acting", default=None)


def acting() -> Acting | None:
    """The request's user while a request is served (None in commands, tasks and shells)."""
    return _acting.get()


class ActingUserMiddleware:
    """Remembers the request's user for the duration of the request (after authentication)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        name = user.get_username() if user is not None and user.is_authenticated else ""
        token = _acting.set(Acting(name, client_ip(request)))
        try:
            return self.get_response(request)
        finally:
            _acting.reset(token)
