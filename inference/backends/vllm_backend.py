"""Streaming completions from a vLLM server (OpenAI-compatible ``/v1/completions``, SSE).

Meditron's released weights are base models without a chat template, so this backend uses the
completion endpoint with a fully formatted prompt, never ``/v1/chat/completions``.

Each stream is read on the caller's thread, so a chunk costs no thread hand-off. One watchdog
thread per backend enforces the first-token and total timeouts and notices ``cancel`` within
50 ms, even while the server is still prefilling: it shuts the stream's socket down, which wakes
the blocked read. Cancelling (or a timeout, or closing the iterator) therefore disconnects, and
vLLM aborts the request, freeing its KV cache.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Generator, Iterator
from typing import Any

import httpx

from inference.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    BadResponse,
    Cancelled,
    ContextOverflow,
)
from inference.types import GenerationRequest, ModelInfo

logger = logging.getLogger(__name__)

# How often a waiting stream wakes to notice ``cancel`` when no chunk arrives.
_POLL_S = 0.05
# How often ``info`` may ask the server for its model metadata until it gets an answer.
_METADATA_RETRY_S = 30.0
# Error bodies are short JSON documents; cap what is read of a misbehaving server's.
_MAX_ERROR_BODY = 16_384
# vLLM's words for a prompt that does not fit max_model_len (HTTP 400).
_OVERFLOW_MARKERS = ("maximum context length", "context length", "max_model_len")
# Statuses worth another try before the first token: the server is starting or overloaded.
_RETRY_STATUSES = frozenset({502, 503, 504})


class _ConnectFailure(Exception):
    """The TCP connection could not be made (counts towards the circuit breaker)."""

    def __init__(self, error: BackendError) -> None:
        super().__init__(str(error))
        self.error = error


class _Retryable(Exception):
    """A failure before any output that another attempt may not hit."""

    def __init__(self, error: BackendError) -> None:
        super().__init__(str(error))
        self.error = error


class CircuitBreaker:
    """Fails fast after ``threshold`` consecutive connection failures, for ``cooldown_s``.

    After the cooldown one call is let through as a probe (others keep failing fast until it
    ends): a connection closes the breaker, another failure opens it for a new cooldown.
    """

    def __init__(self, threshold: int = 3, cooldown_s: float = 30.0) -> None:
        self.threshold = max(1, threshold)
        self.cooldown_s = cooldown_s
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def is_open(self) -> bool:
        with self._lock:
            return self._opened_at is not None

    def before_call(self) -> bool:
        """Raise BackendUnavailable while open; return True when this call is the probe."""
        with self._lock:
            if self._opened_at is None:
                return False
            waited = time.monotonic() - self._opened_at
            if waited < self.cooldown_s or self._probing:
                raise BackendUnavailable(
                    f"vLLM server unreachable {self._failures} times in a row; not retrying "
                    f"for another {max(0.0, self.cooldown_s - waited):.0f} s"
                )
            self._probing = True
            return True

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._probing = False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            self._probing = False
            if self._failures >= self.threshold:
                self._opened_at = time.monotonic()

    def release_probe(self) -> None:
        """End a probe that got no verdict (cancelled before connecting), so another may run."""
        with self._lock:
            self._probing = False


class _Guard:
    """Cancel and deadlines of one stream, enforced from outside the thread reading it.

    The caller's thread reads the HTTP stream itself (no hand-off per chunk). When ``cancel`` is
    set or a deadline passes, the watchdog calls :meth:`trip`, which shuts the socket down: the
    blocked read wakes with an error, the caller sees :attr:`reason`, and vLLM sees the
    disconnect and aborts the request.
    """

    def __init__(
        self, cancel: threading.Event | None, first_deadline: float, total_deadline: float
    ) -> None:
        self.cancel = cancel
        self.first_deadline = first_deadline
        self.total_deadline = total_deadline
        self.got_text = False
        self.reason: str | None = None  # "cancelled", "first-token" or "total" once tripped
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def due(self, now: float) -> str | None:
        """Why this stream must stop now, or None."""
        if self.cancel is not None and self.cancel.is_set():
            return "cancelled"
        if not self.got_text and now >= self.first_deadline:
            return "first-token"
        if now >= self.total_deadline:
            return "total"
        return None

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's ``trace`` hook: hands over the socket as soon as it is connected."""
        if event.endswith("connect_tcp.complete"):
            stream = info.get("return_value")
            sock = stream.get_extra_info("socket") if stream is not None else None
            with self._lock:
                self._sock = sock
                if self.reason is not None:  # tripped while connecting
                    self._shutdown()

    def trip(self, reason: str) -> None:
        with self._lock:
            if self.reason is None:
                self.reason = reason
            self._shutdown()

    def detach(self) -> None:
        """Forget the socket, so that nothing shuts it down once the stream is over."""
        with self._lock:
            self._sock = None

    def _shutdown(self) -> None:
        if self._sock is not None:
            # shutdown, not close: it wakes a read blocked in recv() and sends FIN.
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)


class _Watchdog:
    """One thread per backend that trips the guards of streams past a deadline or cancelled.

    It runs only while streams are open and wakes every 50 ms, so a cancel is seen within that
    even while the server has not sent a byte.
    """

    def __init__(self) -> None:
        self._guards: set[_Guard] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, guard: _Guard) -> None:
        with self._lock:
            self._guards.add(guard)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="vllm-watchdog", daemon=True)
                self._thread.start()

    def forget(self, guard: _Guard) -> None:
        with self._lock:
            self._guards.discard(guard)

    def _run(self) -> None:
        while True:
            time.sleep(_POLL_S)
            with self._lock:
                if not self._guards:
                    self._thread = None
                    return
                guards = list(self._guards)
            now = time.monotonic()
            for guard in guards:
                reason = guard.due(now)
                if reason is not None:
                    guard.trip(reason)


def _status_error(response: httpx.Response) -> BackendError | _Retryable:
    """Map a non-2xx response to the error the caller should see (wrapped if worth a retry)."""
    try:
        body = response.read()[:_MAX_ERROR_BODY].decode("utf-8", "replace")
    except httpx.HTTPError:
        body = ""
    message = body
    try:
        payload = json.loads(body)
        if isinstance(payload, dict):
            error = payload.get("error", payload)
            if isinstance(error, dict):
                message = str(error.get("message") or error.get("detail") or body)
            else:
                message = str(payload.get("message") or payload.get("detail") or error)
    except ValueError:
        pass
    status = response.status_code
    if status == 400 and any(marker in message.lower() for marker in _OVERFLOW_MARKERS):
        return ContextOverflow(message)
    error = BadResponse(f"vLLM answered HTTP {status}: {message[:500]}")
    return _Retryable(error) if status in _RETRY_STATUSES else error


def _transport_error(exc: Exception, base_url: str) -> Exception:
    """Map an httpx exception to a backend error (wrapped when it is worth another try)."""
    if isinstance(exc, httpx.ConnectTimeout):
        return _ConnectFailure(BackendTimeout(f"connecting to vLLM at {base_url} timed out"))
    if isinstance(exc, httpx.ConnectError):
        return _ConnectFailure(BackendUnavailable(f"cannot connect to vLLM at {base_url}: {exc}"))
    if isinstance(exc, httpx.TimeoutException):
        return BackendTimeout(f"vLLM at {base_url} timed out: {exc!r}")
    if isinstance(exc, httpx.TransportError):
        return _Retryable(BackendUnavailable(f"connection to vLLM at {base_url} lost: {exc!r}"))
    if isinstance(exc, BackendError | _Retryable):
        return exc
    return BadResponse(f"unexpected error reading from vLLM: {exc!r}")


class VLLMBackend:
    """Streams completions from a vLLM server (``backend="vllm"``).

    ``base_url`` is the server root (``http://host:8000``; a trailing ``/v1`` is accepted).
    ``first_token_timeout`` counts from the start of the call, connecting included;
    ``total_timeout`` bounds the whole stream. ``retries`` extra attempts are made only before
    the first token, on connection failures and 502/503/504. After ``breaker_threshold``
    consecutive connection failures every call fails fast for ``breaker_cooldown_s``.

    ``info.context_tokens`` is ``context_tokens``, lowered to the server's ``max_model_len`` once
    ``/v1/models`` has answered; ``info.version`` is the weights the server loaded (its
    ``root``), and ``info.extra`` holds the vLLM version.
    """

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str = "",
        connect_timeout: float = 5.0,
        first_token_timeout: float = 60.0,
        total_timeout: float = 300.0,
        context_tokens: int = 2048,
        retries: int = 1,
        breaker_threshold: int = 3,
        breaker_cooldown_s: float = 30.0,
    ) -> None:
        base = base_url.rstrip("/")
        self.base_url = base.removesuffix("/v1")
        self.model = model
        self.connect_timeout = connect_timeout
        self.first_token_timeout = first_token_timeout
        self.total_timeout = total_timeout
        self.retries = max(0, retries)
        self.breaker = CircuitBreaker(breaker_threshold, breaker_cooldown_s)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=self.base_url, headers=headers)
        # Streams get a connection each (no keep-alive pool), so every stream's socket is seen
        # connecting and an abort never touches a connection another request could reuse. The
        # read timeout is only a backstop: the caller's side enforces the deadlines itself.
        self._stream_client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            limits=httpx.Limits(max_keepalive_connections=0),
            timeout=httpx.Timeout(
                connect=connect_timeout,
                read=max(first_token_timeout, total_timeout),
                write=connect_timeout,
                pool=connect_timeout,
            ),
        )
        self._watchdog = _Watchdog()
        self._info = ModelInfo(backend="vllm", model=model, context_tokens=context_tokens)
        self._info_resolved = False
        self._info_checked_at = float("-inf")
        self._info_lock = threading.Lock()

    # -- metadata -------------------------------------------------------------------------

    @property
    def info(self) -> ModelInfo:
        """What the server serves; asks it once (at most every 30 s until it answers)."""
        with self._info_lock:
            now = time.monotonic()
            if not self._info_resolved and now - self._info_checked_at >= _METADATA_RETRY_S:
                self._info_checked_at = now
                try:
                    self._info = self._fetch_info()
                    self._info_resolved = True
                except BackendError as exc:
                    logger.warning("vLLM model metadata unavailable: %s", exc)
            return self._info

    @info.setter
    def info(self, value: ModelInfo) -> None:
        with self._info_lock:
            self._info = value
            self._info_resolved = True

    def _fetch_info(self) -> ModelInfo:
        models = self._get_json("/v1/models")
        entries = models.get("data") if isinstance(models, dict) else None
        entry = next(
            (e for e in entries or [] if isinstance(e, dict) and e.get("id") == self.model), None
        )
        if entry is None:
            served = [e.get("id") for e in entries or [] if isinstance(e, dict)]
            raise BadResponse(f"vLLM does not serve model {self.model!r} (it serves {served})")
        context = self._info.context_tokens
        max_model_len = entry.get("max_model_len")
        if isinstance(max_model_len, int) and 0 < max_model_len < context:
            context = max_model_len
        extra = {"base_url": self.base_url}
        try:
            server = self._get_json("/version")
            if isinstance(server, dict) and server.get("version"):
                extra["vllm_version"] = str(server["version"])
        except BackendError:
            pass
        return ModelInfo(
            backend="vllm",
            model=self.model,
            version=str(entry.get("root") or ""),
            context_tokens=context,
            extra=extra,
        )

    # -- plain requests -------------------------------------------------------------------

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, read: float
    ) -> Any:
        """One JSON request with the breaker and retries; return the decoded JSON body."""
        attempts = self.retries + 1
        for attempt in range(attempts):
            probe = self.breaker.before_call()
            try:
                response = self._client.request(
                    method, path, json=body, timeout=self._timeout(read)
                )
            except httpx.HTTPError as exc:
                mapped = _transport_error(exc, self.base_url)
                if isinstance(mapped, _ConnectFailure):
                    self.breaker.record_failure()
                    mapped = _Retryable(mapped.error)
                elif probe:
                    self.breaker.release_probe()
                if isinstance(mapped, _Retryable):
                    if attempt + 1 < attempts:
                        continue
                    raise mapped.error from exc
                raise mapped from exc
            self.breaker.record_success()
            if not response.is_success:
                error = _status_error(response)
                if isinstance(error, _Retryable):
                    if attempt + 1 < attempts:
                        continue
                    raise error.error
                raise error
            try:
                return response.json()
            except ValueError as exc:
                raise BadResponse(f"vLLM {path} returned invalid JSON") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _timeout(self, read: float) -> httpx.Timeout:
        connect = self.connect_timeout
        return httpx.Timeout(connect=connect, read=read, write=connect, pool=connect)

    def _get_json(self, path: str) -> Any:
        # Metadata answers at once from a live server: don't hold ``info`` up for long.
        return self._call("GET", path, read=self.connect_timeout)

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes as a prompt (BOS included), from the server's ``/tokenize``."""
        body = {"model": self.model, "prompt": text, "add_special_tokens": True}
        payload = self._call("POST", "/tokenize", body, read=self.first_token_timeout)
        count = payload.get("count") if isinstance(payload, dict) else None
        if not isinstance(count, int):
            raise BadResponse("vLLM /tokenize answered without a token count")
        return count

    # -- streaming ------------------------------------------------------------------------

    def stream(
        self, request: GenerationRequest, cancel: threading.Event | None = None
    ) -> Iterator[str]:
        """Yield the completion of ``request.prompt`` in text chunks as vLLM produces them.

        Stop strings are applied by the server and never emitted. Raises Cancelled once
        ``cancel`` is set, BackendTimeout past a deadline, ContextOverflow when the prompt does
        not fit, BackendUnavailable when the server cannot be reached, BadResponse otherwise.
        """
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": request.prompt,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "stream": True,
        }
        if request.stop:
            body["stop"] = list(request.stop)
        headers = {"Accept": "text/event-stream"}
        if request.request_id:
            # vLLM names the request after this header, so its logs match our audit trail.
            headers["X-Request-Id"] = request.request_id
        started = time.monotonic()
        first_deadline = started + self.first_token_timeout
        total_deadline = started + self.total_timeout
        attempts = self.retries + 1
        for attempt in range(attempts):
            probe = self.breaker.before_call()
            guard = _Guard(cancel, first_deadline, total_deadline)
            request_ = self._stream_client.build_request(
                "POST", "/v1/completions", json=body, headers=headers
            )
            request_.extensions["trace"] = guard.trace
            emitted = False
            verdict = False  # whether the breaker heard how this attempt went
            self._watchdog.watch(guard)
            try:
                with contextlib.closing(self._read_stream(guard, request_)) as chunks:
                    for text in chunks:
                        if not verdict:
                            self.breaker.record_success()
                            verdict = True
                            continue  # the first chunk only says the stream is open
                        emitted = True
                        yield text
                return
            except _ConnectFailure as failure:
                self.breaker.record_failure()
                verdict = True
                error: BackendError = failure.error
                if attempt + 1 < attempts and time.monotonic() < first_deadline:
                    logger.info("vLLM connect failed (%s); retrying", error)
                    continue
                raise error from None
            except _Retryable as retryable:
                if not emitted and attempt + 1 < attempts and time.monotonic() < first_deadline:
                    logger.info("vLLM attempt failed (%s); retrying", retryable.error)
                    continue
                raise retryable.error from None
            finally:
                self._watchdog.forget(guard)
                guard.detach()
                if probe and not verdict:
                    self.breaker.release_probe()

    def _read_stream(self, guard: _Guard, request: httpx.Request) -> Generator[str, None, None]:
        """Yield ``""`` once the server answered, then each text chunk; map every failure.

        Runs on the caller's thread. A failure caused by the watchdog (cancel, deadline) is
        reported as that cause, whatever the transport made of the shut-down socket.
        """
        if guard.cancel is not None and guard.cancel.is_set():
            raise Cancelled("generation cancelled")
        try:
            response = self._stream_client.send(request, stream=True)
        except Exception as exc:
            raise self._failure(guard, exc) from None
        try:
            if not response.is_success:
                raise _status_error(response)
            yield ""
            cancel = guard.cancel
            data: list[str] = []
            for line in response.iter_lines():
                if guard.reason is not None or (cancel is not None and cancel.is_set()):
                    guard.trip("cancelled" if guard.reason is None else guard.reason)
                    raise self._failure(guard, None)
                if line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))
                elif line == "" and data:
                    # A blank line ends one SSE event; its data lines join with newlines.
                    payload, data = "\n".join(data), []
                    if payload == "[DONE]":
                        return
                    text = _completion_text(payload)
                    if text:
                        guard.got_text = True
                        yield text
                # Other SSE fields (event:, id:, retry:) and ":" comments carry nothing we use.
            raise BadResponse("vLLM stream ended without [DONE]")
        except Exception as exc:
            raise self._failure(guard, exc) from None
        finally:
            response.close()

    def _failure(self, guard: _Guard, exc: Exception | None) -> Exception:
        """The error to raise for ``exc``: the watchdog's reason first, else the mapped cause."""
        if guard.reason == "cancelled":
            return Cancelled("generation cancelled")
        if guard.reason == "first-token":
            return BackendTimeout(
                f"vLLM exceeded the first-token timeout of {self.first_token_timeout:g} s"
            )
        if guard.reason == "total":
            return BackendTimeout(f"vLLM exceeded the total timeout of {self.total_timeout:g} s")
        assert exc is not None
        return _transport_error(exc, self.base_url)

    def close(self) -> None:
        """Close the connection pools (streams in progress end with an error)."""
        self._client.close()
        self._stream_client.close()


def _completion_text(payload: str) -> str:
    """The text of one ``/v1/completions`` stream event; errors become exceptions."""
    try:
        event = json.loads(payload)
    except ValueError as exc:
        raise BadResponse(f"vLLM sent a malformed stream event: {payload[:200]!r}") from exc
    if not isinstance(event, dict):
        raise BadResponse(f"vLLM sent a malformed stream event: {payload[:200]!r}")
    if "error" in event:
        error = event["error"]
        message = str(error.get("message", error) if isinstance(error, dict) else error)
        if any(marker in message.lower() for marker in _OVERFLOW_MARKERS):
            raise ContextOverflow(message)
        raise BadResponse(f"vLLM reported an error mid-stream: {message[:500]}")
    choices = event.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise BadResponse(f"vLLM stream event has no choices: {payload[:200]!r}")
    text = choices[0].get("text", "")
    if not isinstance(text, str):
        raise BadResponse(f"vLLM stream event has no text: {payload[:200]!r}")
    return text
