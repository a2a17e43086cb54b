"""Benchmark: N clinicians asking at once, streamed end to end, against a fixed-rate backend.

The real production path: websocket clients -> uvicorn (AskConsumer) -> Celery worker processes
(``--workers``, thread pools adding up to N) -> VLLMBackend -> the channel layer on Redis -> back
to the clients, with PostgreSQL as the database (the worker checkpoints the streamed text).
The model is a tiny vLLM-compatible server in its own process that streams ``M`` tokens at a
fixed rate; every token's text carries its index and the server's send time (`` w17@<unix us>``),
so each client computes the latency the app adds per token (receive time - send time) and checks
that tokens 0..M-1 arrive exactly once, in order, and that the streamed text equals the persisted
answer of the ``done`` event. Chunks are checked by their sequence numbers (lost, duplicated,
reordered).

The app batches text every ``STREAM_FLUSH_MS`` on purpose, so the added p50 is dominated by that
interval. The baseline, measured in the same run before and after each app round at the same
concurrency, is a bare streaming httpx client reading the same fixed-rate server directly.
Targets: zero lost or duplicated chunks and tokens (hard); latency is reported with its ratio to
the baseline, without a hard target. Writes ``bench/results/streaming.json``.

    .venv/bin/python bench/streaming.py [--quick] [--tokens 300] [--interval-ms 20] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from clinic_app.core.progress import progress_reporter  # noqa: E402

MODEL = "fixed-rate-model"
REDIS_URL = "redis://127.0.0.1:6379/11"
PG_ADMIN = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_DATABASE = "clinic_bench_streaming"
TOKEN = re.compile(r" w(\d+)@(\d+)")
STREAM_TIMEOUT_S = 240.0


def now_us() -> int:
    return time.time_ns() // 1000


# ------------------------------------------------------------- fixed-rate backend (own process)


def _http(writer: asyncio.StreamWriter, status: str, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    writer.write(
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        "Connection: close\r\n\r\n".encode()
        + data
    )


def _chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")


async def _serve_one(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, interval: float, tokens: int
) -> None:
    try:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        method, target, _ = head[0].split(" ", 2)
        headers = {
            k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in head[1:] if ":" in h)
        }
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        payload = json.loads(body) if body else {}
        path = target.split("?", 1)[0]
        if method == "GET" and path == "/v1/models":
            entry = {"id": MODEL, "root": "fixed-rate", "max_model_len": 4096}
            _http(writer, "200 OK", {"object": "list", "data": [entry]})
        elif method == "GET" and path == "/version":
            _http(writer, "200 OK", {"version": "fixed-rate"})
        elif method == "POST" and path == "/tokenize":
            _http(writer, "200 OK", {"count": len(str(payload.get("prompt", ""))) // 4 + 1})
        elif method == "POST" and path == "/v1/completions" and payload.get("stream"):
            count = min(tokens, int(payload.get("max_tokens") or tokens))
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            )
            await writer.drain()
            start = time.monotonic()
            for i in range(count):
                # On a fixed schedule: a late wake-up does not shift the tokens after it.
                await asyncio.sleep(max(0.0, start + i * interval - time.monotonic()))
                text = f" w{i}@{now_us()}"
                event = {"choices": [{"index": 0, "text": text}]}
                _chunk(writer, f"data: {json.dumps(event)}\n\n".encode())
                await writer.drain()
            _chunk(writer, b"data: [DONE]\n\n")
            writer.write(b"0\r\n\r\n")
        else:
            _http(writer, "404 Not Found", {"error": f"no route {method} {path}"})
        await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, ValueError):
        pass
    finally:
        writer.close()


def serve_backend(port: int, interval_ms: float, tokens: int) -> None:
    async def main() -> None:
        server = await asyncio.start_server(
            lambda r, w: _serve_one(r, w, interval_ms / 1000, tokens),
            "127.0.0.1",
            port,
            backlog=1024,
        )
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# ------------------------------------------------------------------------------- measurement


@dataclass
class Stream:
    """What one client saw: (receive time us, seq, text) per chunk, and how it ended."""

    chunks: list[tuple[int, int, str]] = field(default_factory=list)
    asked_us: int = 0
    done: dict[str, Any] | None = None
    done_us: int = 0
    error: str | None = None


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@dataclass
class Round:
    """Per-token added latencies (ms), first-token latencies (ms), wall time and integrity."""

    latencies: list[float] = field(default_factory=list)
    first: list[float] = field(default_factory=list)
    ask_to_first: list[float] = field(default_factory=list)
    wall_s: list[float] = field(default_factory=list)
    peak_streaming: list[int] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)


def analyse(streams: list[Stream], tokens: int, out: Round, *, app: bool) -> None:
    """Fold the streams into ``out``: latencies per token (first arrival) and every defect."""
    for n, s in enumerate(streams):
        c = out.counts
        c["streams"] += 1
        seqs = [seq for _, seq, _ in s.chunks]
        text = "".join(t for _, _, t in s.chunks)
        if app:
            last = max([*seqs, int((s.done or {}).get("seq") or 0)], default=0)
            seen = Counter(seqs)
            c["lost_chunks"] += sum(1 for q in range(1, last + 1) if q not in seen)
            c["duplicated_chunks"] += sum(k - 1 for k in seen.values())
            c["reordered_chunks"] += sum(1 for a, b in itertools.pairwise(seqs) if b < a)
            c["chunks"] += len(seqs)
        order = [int(m.group(1)) for m in TOKEN.finditer(text)]
        got = Counter(order)
        lost = sum(1 for i in range(tokens) if i not in got)
        c["lost_tokens"] += lost
        c["duplicated_tokens"] += sum(k - 1 for k in got.values())
        c["reordered_tokens"] += sum(1 for a, b in itertools.pairwise(order) if b < a)
        c["unexpected_tokens"] += sum(1 for i in got if not 0 <= i < tokens)
        if app:
            answer = (s.done or {}).get("answer") or {}
            status = answer.get("status") if s.done else f"no done ({s.error or 'timeout'})"
            c[f"status_{status}"] += 1
            persisted = str(answer.get("text"))
            if s.done and persisted != text:
                # check_answer() strips the persisted text: leading/trailing space is no loss.
                if persisted.strip() == text.strip():
                    c["persisted_differs_only_by_outer_whitespace"] += 1
                else:
                    c["streamed_text_differs_from_persisted"] += 1
                    at = next(
                        (
                            i
                            for i, (a, b) in enumerate(zip(text, persisted, strict=False))
                            if a != b
                        ),
                        min(len(text), len(persisted)),
                    )
                    if len(out.problems) < 5:
                        out.problems.append(
                            f"stream {n}: streamed text differs from persisted at {at}: "
                            f"{text[at : at + 60]!r} vs {persisted[at : at + 60]!r}"
                        )
        if s.error and len(out.problems) < 5:
            out.problems.append(f"stream {n}: {s.error}")
        if lost and len(out.problems) < 5:
            out.problems.append(f"stream {n}: {lost} tokens missing; seqs {seqs}")
        seen_tokens: set[int] = set()
        for recv, _, chunk in s.chunks:
            for m in TOKEN.finditer(chunk):
                i, sent = int(m.group(1)), int(m.group(2))
                if i in seen_tokens:
                    continue
                seen_tokens.add(i)
                out.latencies.append((recv - sent) / 1000)
                if i == 0:
                    out.first.append((recv - sent) / 1000)
                    out.ask_to_first.append((recv - s.asked_us) / 1000)
    # How many answers were streaming at the same moment (first to last chunk received).
    edges = sorted(
        e for s in streams if s.chunks for e in ((s.chunks[0][0], 1), (s.chunks[-1][0], -1))
    )
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    out.peak_streaming.append(peak)
    ends = [s.done_us for s in streams if s.done_us]
    starts = [s.asked_us for s in streams if s.asked_us]
    if ends and starts:
        out.wall_s.append((max(ends) - min(starts)) / 1e6)


async def bare_round(base_url: str, n: int, tokens: int) -> list[Stream]:
    """The baseline: ``n`` bare httpx SSE clients reading the fixed-rate server at once."""
    import httpx

    async def one(client: httpx.AsyncClient, s: Stream) -> None:
        body = {"model": MODEL, "prompt": "baseline", "max_tokens": tokens, "stream": True}
        s.asked_us = now_us()
        try:
            async with client.stream("POST", "/v1/completions", json=body) as response:
                async for line in response.aiter_lines():
                    recv = now_us()
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    event = json.loads(line[6:])
                    s.chunks.append((recv, len(s.chunks) + 1, event["choices"][0]["text"]))
            s.done_us = now_us()
        except httpx.HTTPError as exc:
            s.error = f"{type(exc).__name__}: {exc}"

    streams = [Stream() for _ in range(n)]
    limits = httpx.Limits(max_connections=n + 4, max_keepalive_connections=0)
    timeout = httpx.Timeout(STREAM_TIMEOUT_S, connect=30)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout) as client:
        await asyncio.gather(*(one(client, s) for s in streams))
    return streams


async def app_round(ws_url: str, headers: dict[str, str], questions: list[str]) -> list[Stream]:
    """Open one websocket per question, then ask them all at once and follow each to ``done``."""
    from websockets.asyncio.client import connect

    sockets = await asyncio.gather(
        *(connect(ws_url, additional_headers=headers, open_timeout=60) for _ in questions)
    )
    streams = [Stream() for _ in questions]

    async def one(ws: Any, question: str, s: Stream) -> None:
        s.asked_us = now_us()
        await ws.send(json.dumps({"action": "ask", "question": question}))
        while True:
            raw = await ws.recv()
            recv = now_us()
            event = json.loads(raw)
            kind = event.get("type")
            if kind == "chunk":
                s.chunks.append((recv, int(event["seq"]), str(event["text"])))
            elif kind == "done":
                s.done, s.done_us = event, recv
                return
            elif kind == "error":
                s.error = f"error event: {event.get('message')}"
                return

    async def guarded(ws: Any, question: str, s: Stream) -> None:
        try:
            await asyncio.wait_for(one(ws, question, s), STREAM_TIMEOUT_S)
        except (TimeoutError, OSError, Exception) as exc:  # recorded, not hidden
            s.error = s.error or f"{type(exc).__name__}: {exc}"

    try:
        await asyncio.gather(
            *(guarded(ws, q, s) for ws, q, s in zip(sockets, questions, streams, strict=True))
        )
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return streams


# ---------------------------------------------------------------------------------- the stack


def start_stack(args: argparse.Namespace, concurrency: int, work: Path) -> tuple[Any, ...]:
    """Fixed-rate backend, seeded app on a scratch PostgreSQL database, ``--workers`` Celery
    worker processes (thread pools sharing ``concurrency``) and uvicorn; returns them."""
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    processes: list[Any] = []
    try:
        return _start_stack(args, concurrency, work, processes)
    except BaseException:
        for p in reversed(processes):  # main() never sees these: stop them here
            p.stop()
        raise


def _start_stack(
    args: argparse.Namespace, concurrency: int, work: Path, processes: list[Any]
) -> tuple[Any, ...]:
    import httpx
    import psycopg

    from tests.live import BIN, PYTHON, app_env, free_port, seed, spawn, start_server

    # Steps: the backend, the seeded database, each worker, the server (uneven, but each shown).
    steps = progress_reporter("streaming stack", unit="step", stream=sys.stderr)
    total = 3 + args.workers
    port = free_port()
    backend = spawn(
        "bench-streaming-backend",
        [
            *(PYTHON, str(Path(__file__).resolve()), "--serve-backend", str(port)),
            *("--interval-ms", str(args.interval_ms), "--tokens", str(args.tokens)),
        ],
        dict(os.environ),
    )
    processes.append(backend)
    backend_url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(f"{backend_url}/version", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        raise RuntimeError(f"fixed-rate backend did not start:\n{backend.log()}")
    steps(1, total)
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')
    env = app_env(
        work,
        DATABASE_URL=PG_ADMIN.rsplit("/", 1)[0] + f"/{PG_DATABASE}",
        REDIS_URL=REDIS_URL,
        INFERENCE_BACKEND="vllm",
        VLLM_BASE_URL=backend_url,
        VLLM_MODEL=MODEL,
        VLLM_CONTEXT_TOKENS="4096",
        ANSWER_MAX_TOKENS=str(max(256, args.tokens)),
        QUESTION_MAX_CONCURRENT="0",  # 0: no limit (settings.py)
        QUESTION_RATE_PER_MINUTE="0",
        STREAM_FLUSH_MS=str(args.flush_ms),
    )
    seed(env)
    steps(2, total)
    threads = -(-concurrency // args.workers)
    workers = [
        spawn(
            f"bench-streaming-worker-{i}",
            [
                *(str(BIN / "celery"), "-A", "clinic_app.celery", "worker", "--loglevel=INFO"),
                *("--pool=threads", f"--concurrency={threads}", "-n", f"bench{i}@%h"),
                *("--without-gossip", "--without-mingle", "--without-heartbeat"),
            ],
            env,
        )
        for i in range(args.workers)
    ]
    processes.extend(workers)
    deadline = time.monotonic() + 180
    for i, worker in enumerate(workers, start=3):
        while not re.search(r"\S+@\S+ ready\.", worker.log()):
            if worker.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{worker.log()}")
            time.sleep(0.3)
        steps(i, total)
    server = start_server(env, name="bench-streaming-server")
    processes.append(server.process)
    steps(total, total)
    return processes, server, env, backend_url


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 5 and 25 instead of 25 and 100")
    # 300 tokens at 20 ms: each answer streams for 6 s, long enough that all N overlap.
    parser.add_argument("--tokens", type=int, default=300, help="tokens per answer (M)")
    parser.add_argument(
        "--workers", type=int, default=2, help="Celery worker processes (threads split evenly)"
    )
    parser.add_argument("--interval-ms", type=float, default=20.0, help="backend token interval")
    parser.add_argument("--flush-ms", type=int, default=75, help="STREAM_FLUSH_MS for the app")
    parser.add_argument("--serve-backend", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_backend:
        serve_backend(args.serve_backend, args.interval_ms, args.tokens)
        return 0

    import redis

    from bench.common import cpu_pressure, write_report
    from tests.conftest import ANSWERABLE_QUESTION
    from tests.live import login_cookies

    # SIGTERM runs the same clean-up as Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sizes = [5, 25] if args.quick else [25, 100]
    work = Path(tempfile.mkdtemp(prefix="bench-streaming-"))
    processes: list[Any] = []
    machine: dict[str, Any] = {"cpus": os.cpu_count(), "cpu_pressure_avg10_start": cpu_pressure()}
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    try:
        t0 = time.monotonic()
        processes, server, env, backend_url = start_stack(args, max(sizes), work)
        print(f"stack up in {time.monotonic() - t0:.0f} s", flush=True)
        cookies = login_cookies(server.base_url, "clinician", env["DEMO_PASSWORD"])
        headers = {
            "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items()),
            "Origin": server.base_url,
        }
        ws_url = f"ws://{server.host}:{server.port}/ws/ask/"
        # Progress per round (the warm-up, then baseline, app, baseline for each N), shown
        # between rounds: never while streaming.
        progress = progress_reporter("streaming", unit="round", stream=sys.stderr)
        rounds, total = 1, 1 + 3 * len(sizes)
        # Warm-up: loads the worker's embedder, index and the backend's model info.
        warm = asyncio.run(app_round(ws_url, headers, [ANSWERABLE_QUESTION]))
        if not warm[0].done or warm[0].done["answer"]["status"] != "complete":
            raise RuntimeError(f"warm-up answer did not complete: {warm[0]}")
        progress(rounds, total)
        for n in sizes:
            base, app = Round(), Round()
            pressure = cpu_pressure()
            analyse(
                asyncio.run(bare_round(backend_url, n, args.tokens)), args.tokens, base, app=False
            )
            rounds += 1
            progress(rounds, total)
            questions = [
                ANSWERABLE_QUESTION if i % 2 else f"{ANSWERABLE_QUESTION} ({i})" for i in range(n)
            ]
            analyse(asyncio.run(app_round(ws_url, headers, questions)), args.tokens, app, app=True)
            rounds += 1
            progress(rounds, total)
            analyse(
                asyncio.run(bare_round(backend_url, n, args.tokens)), args.tokens, base, app=False
            )
            rounds += 1
            progress(rounds, total)
            machine[f"cpu_pressure_avg10@{n}"] = [pressure, cpu_pressure()]
            print(f"N={n}: app {dict(app.counts)}; baseline {dict(base.counts)}", flush=True)
            notes += [f"N={n}: {p}" for p in app.problems + base.problems]
            rows += rows_for(n, app, base, args)
    finally:
        for p in reversed(processes):
            p.stop()
        try:
            redis.Redis.from_url(REDIS_URL).flushdb()
            import psycopg

            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)')
        finally:
            shutil.rmtree(work, ignore_errors=True)
    machine["cpu_pressure_avg10_end"] = cpu_pressure()
    report = {
        "benchmark": "streaming",
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine,
        "setup": {
            "path": "websockets -> uvicorn -> Celery worker (threads) -> VLLMBackend; "
            "chunks via RedisPubSubChannelLayer on Redis; PostgreSQL database; text "
            "checkpointed at most every STREAM_SNAPSHOT_MS (default 250 ms)",
            "stream_flush_ms": args.flush_ms,
            "backend": f"fixed-rate server, {args.tokens} tokens every {args.interval_ms:g} ms",
            "worker_pool": f"{args.workers} processes, threads, "
            f"concurrency {-(-max(sizes) // args.workers)} each",
            "concurrency": sizes,
            "quick": args.quick,
        },
        "results": rows,
        "notes": notes,
    }
    write_report("streaming", report)
    return 0 if all(r.get("meets_target") is not False for r in rows) else 1


def rows_for(n: int, app: Round, base: Round, args: argparse.Namespace) -> list[dict[str, Any]]:
    from bench.common import result

    rows = []
    c = app.counts
    for name in ("lost_chunks", "duplicated_chunks", "lost_tokens", "duplicated_tokens"):
        rows.append(result(f"{name}@{n}", c[name], "count", target="== 0", meets=c[name] == 0))
    complete = c["status_complete"]
    rows.append(
        result(
            f"streams_complete_and_intact@{n}",
            complete - c["streamed_text_differs_from_persisted"],
            "streams",
            target=f"== {n}",
            meets=complete - c["streamed_text_differs_from_persisted"] == n
            and c["reordered_chunks"] + c["reordered_tokens"] == 0,
            reordered_chunks=c["reordered_chunks"],
            reordered_tokens=c["reordered_tokens"],
            streamed_text_differs_from_persisted=c["streamed_text_differs_from_persisted"],
            persisted_differs_only_by_outer_whitespace=c[
                "persisted_differs_only_by_outer_whitespace"
            ],
            statuses={k: v for k, v in c.items() if k.startswith("status_")},
            chunks=c["chunks"],
        )
    )
    base_name = "bare httpx SSE client on the same fixed-rate server, same N, same run"
    no_target = f"none (reported); the app batches every STREAM_FLUSH_MS={args.flush_ms} ms"
    for q in (0.5, 0.95):
        rows.append(
            result(
                f"added_latency_per_token_p{int(q * 100)}_ms@{n}",
                percentile(app.latencies, q),
                "ms",
                baseline=base_name,
                baseline_value=percentile(base.latencies, q),
                target=no_target,
                meets=None,
                stream_flush_ms=args.flush_ms,
                tokens_measured=len(app.latencies),
            )
        )
    rows.append(
        result(
            f"first_token_added_p50_ms@{n}",
            percentile(app.first, 0.5),
            "ms",
            baseline=base_name,
            baseline_value=percentile(base.first, 0.5),
            target=no_target,
            meets=None,
            p95_ms=round(percentile(app.first, 0.95), 2),
            baseline_p95_ms=round(percentile(base.first, 0.95), 2),
            ask_to_first_token_p50_ms=round(percentile(app.ask_to_first, 0.5), 1),
            ask_to_first_token_p95_ms=round(percentile(app.ask_to_first, 0.95), 1),
        )
    )
    peak = max(app.peak_streaming, default=0)
    rows.append(
        result(
            f"concurrent_streams@{n}",
            peak,
            "streams",
            target=f"== {n} (every answer streaming at the same moment)",
            meets=peak == n,
            note="most answers between their first and last chunk at one instant",
        )
    )
    rows.append(
        result(
            f"wall_s@{n}",
            app.wall_s[0] if app.wall_s else float("nan"),
            "s",
            baseline=base_name + " (median of before/after)",
            baseline_value=percentile(base.wall_s, 0.5),
            target="none (reported)",
            meets=None,
            backend_nominal_s=round(args.tokens * args.interval_ms / 1000, 2),
            peak_concurrent_streams=max(app.peak_streaming, default=0),
            baseline_peak_concurrent_streams=max(base.peak_streaming, default=0),
        )
    )
    return rows


if __name__ == "__main__":
    try:
        raise SystemExit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        raise SystemExit(130) from None
