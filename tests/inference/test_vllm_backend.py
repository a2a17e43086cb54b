"""VLLMBackend against a real vLLM server (tiny random Llama), and against broken servers.

The model is random, so its text is gibberish, but greedy decoding in float32 is deterministic:
the tests compare the backend's stream with the server's own non-streamed answer.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import httpx
import pytest

from inference.backends import load_backend
from inference.backends.vllm_backend import VLLMBackend
from inference.errors import BackendTimeout, BackendUnavailable, Cancelled, ContextOverflow
from inference.types import GenerationRequest

if TYPE_CHECKING:
    from tests.inference.conftest import VLLMServer

PROMPT = "### Recommendation\nAdults with atrial fibrillation should receive"


@pytest.fixture
def vllm_backend(vllm_server: VLLMServer) -> Iterator[VLLMBackend]:
    backend = load_backend("vllm", base_url=f"{vllm_server.base_url}/v1", model=vllm_server.model)
    assert isinstance(backend, VLLMBackend)
    yield backend
    backend.close()


def plain_completion(base_url: str, model: str, prompt: str, max_tokens: int) -> str:
    """The server's non-streamed greedy completion, asked for without the backend."""
    response = httpx.post(
        f"{base_url}/v1/completions",
        json={"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0},
        timeout=30,
    )
    response.raise_for_status()
    return str(response.json()["choices"][0]["text"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- against the real server ---------------------------------------------------------------


def test_stream_yields_several_chunks_that_join_to_the_non_streamed_completion(
    vllm_backend: VLLMBackend, vllm_server: VLLMServer
) -> None:
    chunks = list(vllm_backend.stream(GenerationRequest(prompt=PROMPT, max_tokens=32)))

    assert len(chunks) > 1
    assert all(chunks)
    expected = plain_completion(vllm_server.base_url, vllm_server.model, PROMPT, 32)
    assert "".join(chunks) == expected


def test_stop_string_ends_the_output_before_it(vllm_backend: VLLMBackend) -> None:
    full = "".join(vllm_backend.stream(GenerationRequest(prompt=PROMPT, max_tokens=48)))
    # A stop string the model is known to produce, well inside its greedy output.
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    assert stop.strip(), f"pick a visible stop string from {full!r}"
    expected = full[: full.find(stop)]

    text = "".join(
        vllm_backend.stream(GenerationRequest(prompt=PROMPT, max_tokens=48, stop=(stop, "</s>")))
    )

    assert text == expected
    assert stop not in text
    assert len(text) < len(full)


def test_prompt_longer_than_the_context_raises_context_overflow(
    vllm_backend: VLLMBackend, vllm_server: VLLMServer
) -> None:
    prompt = "Adults with atrial fibrillation " * 200
    assert vllm_backend.count_tokens(prompt) > vllm_server.max_model_len

    with pytest.raises(ContextOverflow):
        list(vllm_backend.stream(GenerationRequest(prompt=prompt, max_tokens=8)))
    assert not vllm_backend.breaker.is_open  # the server answered: it is not a connection failure


def test_cancelling_mid_stream_raises_cancelled_and_the_server_aborts_the_request(
    vllm_backend: VLLMBackend, vllm_server: VLLMServer
) -> None:
    request_id = f"test-cancel-{uuid.uuid4().hex[:8]}"
    cancel = threading.Event()
    received: list[str] = []
    max_tokens = vllm_server.max_model_len - 64  # ~1 s of decoding: far from done when cancelled

    with pytest.raises(Cancelled):
        for chunk in vllm_backend.stream(
            GenerationRequest(prompt=PROMPT, max_tokens=max_tokens, request_id=request_id), cancel
        ):
            received.append(chunk)
            if len(received) == 3:
                cancel.set()

    assert len(received) == 3
    deadline = time.monotonic() + 10
    while f"Aborted request(s) cmpl-{request_id}" not in vllm_server.log():
        assert time.monotonic() < deadline, f"no abort of {request_id} in {vllm_server.log_path}"
        time.sleep(0.1)
    assert f"Request cmpl-{request_id}-0 aborted" in vllm_server.log()


def test_count_tokens_agrees_with_the_models_tokenizer(
    vllm_backend: VLLMBackend, vllm_server: VLLMServer
) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(vllm_server.model_dir)
    texts = [
        "Adults with AF should receive oral anticoagulation (Class I, Level A).",
        "eGFR < 60 mL/min/1.73 m² — naïve 😀 ###\nUser:",
        " leading space and  double  spaces",
        "",
    ]
    for text in texts:
        assert vllm_backend.count_tokens(text) == len(tokenizer(text)["input_ids"]), text


def test_info_names_the_served_weights_and_the_servers_context_limit(
    vllm_backend: VLLMBackend, vllm_server: VLLMServer
) -> None:
    info = vllm_backend.info

    assert info.backend == "vllm"
    assert info.model == vllm_server.model
    assert info.version == str(vllm_server.model_dir)
    assert info.context_tokens == vllm_server.max_model_len  # lowered from the 2048 default
    assert info.extra["vllm_version"]


# -- against servers that fail ---------------------------------------------------------------


class _CountingHandler(http.server.BaseHTTPRequestHandler):
    """Answers /tokenize like vLLM does (always 3 tokens)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps({"count": 3, "max_model_len": 512, "tokens": [1, 2, 3]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _CountingServer(http.server.ThreadingHTTPServer):
    """Counts the connections it accepts."""

    connections = 0

    def verify_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: object
    ) -> bool:
        self.connections += 1
        return True


def test_unreachable_server_is_unavailable_then_the_breaker_fails_fast_until_a_probe() -> None:
    port = free_port()  # nothing listens here
    backend = VLLMBackend(
        base_url=f"http://127.0.0.1:{port}",
        model="tiny-llama",
        retries=1,
        breaker_threshold=2,
        breaker_cooldown_s=1.0,
    )
    request = GenerationRequest(prompt="Hello", max_tokens=4)

    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match="cannot connect"):
        list(backend.stream(request))
    assert time.monotonic() - started < 1.0
    assert backend.breaker.is_open  # the call and its retry: two connection failures

    # The server comes back, but during the cooldown no connection is even tried.
    server = _CountingServer(("127.0.0.1", port), _CountingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match="not retrying"):
            list(backend.stream(request))
        with pytest.raises(BackendUnavailable, match="not retrying"):
            backend.count_tokens("Hello")
        assert time.monotonic() - started < 0.25
        assert server.connections == 0

        # After the cooldown one probe goes through; its success closes the breaker.
        time.sleep(1.1)
        assert backend.count_tokens("Hello") == 3
        assert not backend.breaker.is_open
        assert server.connections == 1
    finally:
        server.shutdown()
        server.server_close()
        backend.close()


@contextmanager
def stalling_server(mode: str) -> Iterator[tuple[int, list[float]]]:
    """A server that accepts and then stalls; yields its port and when clients hung up.

    ``silent``: never answers. ``headers``: sends streaming response headers, then nothing.
    ``trickle``: after the headers, one SSE text event every ~0.3 s, forever.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    port = listener.getsockname()[1]
    hung_up: list[float] = []
    stop = threading.Event()

    def handle(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(0.1)
            try:
                if mode != "silent":
                    conn.recv(65536)
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n"
                    )
                while not stop.is_set():
                    if mode == "trickle":
                        event = b'data: {"choices": [{"index": 0, "text": " tick"}]}\n\n'
                        conn.sendall(b"%x\r\n%s\r\n" % (len(event), event))
                        time.sleep(0.2)
                    try:
                        data = conn.recv(65536)
                    except TimeoutError:
                        continue
                    if not data:
                        hung_up.append(time.monotonic())
                        return
            except OSError:
                hung_up.append(time.monotonic())

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield port, hung_up
    finally:
        stop.set()
        acceptor.join(2)
        listener.close()


@pytest.mark.parametrize(
    ("mode", "limit_s", "which"),
    [("silent", 1.0, "first-token"), ("headers", 1.0, "first-token"), ("trickle", 2.0, "total")],
)
def test_stalled_server_times_out_on_schedule_and_the_connection_is_closed(
    mode: str, limit_s: float, which: str
) -> None:
    with stalling_server(mode) as (port, hung_up):
        backend = VLLMBackend(
            base_url=f"http://127.0.0.1:{port}",
            model="tiny-llama",
            connect_timeout=1.0,
            first_token_timeout=1.0,
            total_timeout=2.0,
            retries=1,
        )
        chunks: list[str] = []
        started = time.monotonic()
        with pytest.raises(BackendTimeout, match=which):
            for chunk in backend.stream(GenerationRequest(prompt="Hello", max_tokens=4)):
                chunks.append(chunk)
        elapsed = time.monotonic() - started
        backend.close()

        assert limit_s - 0.05 <= elapsed <= limit_s + 0.5
        assert (chunks != []) == (mode == "trickle")
        deadline = time.monotonic() + 2
        while not hung_up and time.monotonic() < deadline:
            time.sleep(0.05)
        assert hung_up, "the backend left the stalled connection open"
        assert hung_up[0] - started <= limit_s + 1.0
