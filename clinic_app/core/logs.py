"""Structured logs: one JSON object per line with the ids of what is being done (``LOG_FORMAT``).

Every record gets the ids in context, whatever the format: ``request_id`` (one per HTTP request,
from :class:`RequestIdMiddleware`, echoed in the ``X-Request-ID`` response header),
``answer_id`` (while an answer is generated, in a worker or an in-process thread) and ``job_id``
(while an upload job is ingested). ``LOG_FORMAT=json`` writes them as fields beside the time,
level, logger and message, so a log pipeline can follow one answer across the web process and
the workers. Log messages carry ids, never question or answer text (see docs/audit.md); this
module adds nothing but ids.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from django.http import HttpRequest, HttpResponse

CONTEXT_FIELDS = ("request_id", "answer_id", "job_id")
_context: dict[str, ContextVar[str | int | None]] = {
    name: ContextVar(f"clinic_log_{name}", default=None) for name in CONTEXT_FIELDS
}
# An incoming X-Request-ID (from a proxy) is kept only if it is short and plain.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


@contextmanager
def log_context(**ids: str | int) -> Iterator[None]:
    """Attach ``ids`` (``request_id``, ``answer_id``, ``job_id``) to every record logged inside."""
    unknown = set(ids) - set(CONTEXT_FIELDS)
    if unknown:
        raise ValueError(f"unknown log context field(s): {', '.join(sorted(unknown))}")
    tokens = [(_context[name], _context[name].set(value)) for name, value in ids.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class ContextFilter(logging.Filter):
    """Copies the ids in context onto each record (``None`` where there is none)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name in CONTEXT_FIELDS:
            setattr(record, name, _context[name].get())
        # Django logs a response's status ("Not Found: /x") after the middleware has returned,
        # with the request attached: its id is on the request.
        if record.request_id is None:  # type: ignore[attr-defined]
            request = getattr(record, "request", None)
            record.request_id = getattr(request, "request_id", None)
        return True


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ids..., "exception"?}``, one line per record."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                event[name] = value
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        return json.dumps(event, ensure_ascii=False, default=str)


class RequestIdMiddleware:
    """Gives each request an id for its log records and its ``X-Request-ID`` response header."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        with log_context(request_id=request_id):
            response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response
