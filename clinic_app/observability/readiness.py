"""Readiness: can this process answer a question right now? (``/readyz``)

``/healthz`` is the cheap liveness probe (the process serves HTTP). ``/readyz`` checks what an
answer needs: the database, Redis when one is configured (channel layer, cache, Celery broker),
the live guideline index, and the generation backend (vLLM's ``/health``, or an in-process model
that is installed). Each check is timed and bounded by ``READYZ_TIMEOUT_S`` seconds; details are
short and never carry host names, credentials or exception text, because load balancers and
orchestrators call this without signing in.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from django.conf import settings
from django.db import connection

from clinic_app.core import runtime

log = logging.getLogger(__name__)

READYZ_TIMEOUT_S = 2.0


class NotReady(Exception):
    """A check failed; the message is the short, public detail."""


@dataclass(frozen=True)
class CheckResult:
    """One readiness check: its name, whether it passed, a short detail and how long it took."""

    name: str
    ok: bool
    detail: str
    ms: int


def _database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return "reachable"


def _redis() -> str:
    import redis

    client = redis.Redis.from_url(
        settings.REDIS_URL,
        socket_timeout=READYZ_TIMEOUT_S,
        socket_connect_timeout=READYZ_TIMEOUT_S,
    )
    try:
        client.ping()
    finally:
        client.close()
    return "reachable"


def _index() -> str:
    index = runtime.get_retriever().index()
    if len(index) == 0:
        raise NotReady("the live index holds no passages")
    return f"version {index.version} loaded"


def _generation() -> str:
    if settings.INFERENCE_BACKEND == "vllm":
        headers = (
            {"Authorization": f"Bearer {settings.VLLM_API_KEY}"} if settings.VLLM_API_KEY else {}
        )
        # The server root; VLLM_BASE_URL may carry the API's "/v1".
        url = settings.VLLM_BASE_URL.rstrip("/").removesuffix("/v1") + "/health"
        try:
            response = httpx.get(url, headers=headers, timeout=READYZ_TIMEOUT_S)
        except httpx.HTTPError as exc:
            raise NotReady("the vLLM server is unreachable") from exc
        if response.status_code != 200:
            raise NotReady(f"the vLLM server answered HTTP {response.status_code}")
        return "vLLM server healthy"
    engine = (
        runtime.embedded_engine()[0]
        if settings.INFERENCE_BACKEND == "embedded"
        else settings.INFERENCE_BACKEND
    )
    needed = "model.gguf" if engine == "llamacpp" else "model.safetensors"
    if not (Path(settings.MODELS_DIR) / settings.EMBEDDED_MODEL / needed).is_file():
        raise NotReady(f"the embedded model for {engine} is not installed (`make models`)")
    loaded = runtime.get_backend.loaded()
    return f"{engine}: " + ("model loaded" if loaded else "installed, loads on the first question")


def _run(name: str, check: Callable[[], str]) -> CheckResult:
    started = time.monotonic()
    try:
        ok, detail = True, check()
    except NotReady as exc:
        ok, detail = False, str(exc)
    except Exception as exc:  # any failure means not ready; the log has the cause
        log.warning("readiness check %s failed", name, exc_info=True)
        ok, detail = False, f"failed ({type(exc).__name__})"
    return CheckResult(name, ok, detail, int((time.monotonic() - started) * 1000))


def readiness_check() -> list[CheckResult]:
    """Every readiness check, in order; Redis only when ``REDIS_URL`` is set."""
    checks: list[tuple[str, Callable[[], str]]] = [("database", _database)]
    if settings.REDIS_URL:
        checks.append(("redis", _redis))
    checks += [("index", _index), ("generation", _generation)]
    return [_run(name, check) for name, check in checks]
