"""Benchmark: the embedded generator's time-to-first-token and decode speed on CPU.

Streams a ~600-token ChatML prompt (guideline passages + question, the shape of a real grounded
prompt) through :class:`TransformersBackend` with bf16 weights and 2 torch threads; the baseline
is the same model in float32, measured in the same run, interleaved run by run. Prints the
results as JSON (medians of ``--runs`` runs) and writes ``bench/results/embedded_model.json``.

    .venv/bin/python bench/embedded_model.py [--quick] [--model-dir var/models/...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import cpu_pressure, write_report  # noqa: E402
from inference.backends.transformers_backend import TransformersBackend  # noqa: E402
from inference.types import GenerationRequest  # noqa: E402

DEFAULT_MODEL_DIR = ROOT / "var" / "models" / "qwen2.5-coder-0.5b-instruct"
THREADS = 2
PROMPT_TOKENS = 600

PASSAGES = (
    "Offer oral anticoagulation to people with atrial fibrillation and a CHA2DS2-VASc score of 2 "
    "or more in men or 3 or more in women, taking the bleeding risk into account.",
    "In adults with stage 1 hypertension and an estimated 10-year cardiovascular risk below 10%, "
    "start with lifestyle measures and reassess blood pressure within 3 to 6 months.",
    "For people with chronic kidney disease and type 2 diabetes, an SGLT2 inhibitor is recommended "
    "when the eGFR is 20 mL/min/1.73 m2 or higher, continued until dialysis or transplantation.",
    "Estimate burn size with the rule of nines or a Lund and Browder chart; start fluid "
    "resuscitation for burns over 20% of total body surface area in adults.",
)
QUESTION = "Which patients with atrial fibrillation should receive oral anticoagulation, and why?"


def build_prompt(backend: TransformersBackend, target_tokens: int) -> str:
    """A ChatML prompt of about ``target_tokens`` tokens: numbered passages, then the question."""
    head = (
        "<|im_start|>system\nAnswer from the numbered sources only and cite them as [S1].<|im_end|>"
        "\n<|im_start|>user\nSources:\n"
    )
    tail = f"\nQuestion: {QUESTION}<|im_end|>\n<|im_start|>assistant\n"
    sources: list[str] = []
    while True:
        line = f"[S{len(sources) + 1}] {PASSAGES[len(sources) % len(PASSAGES)]}\n"
        if backend.count_tokens(head + "".join(sources) + line + tail) > target_tokens:
            break
        sources.append(line)
    return head + "".join(sources) + tail


def one_run(backend: TransformersBackend, prompt: str, max_tokens: int) -> dict[str, float]:
    """Stream once; return TTFT (to the first text chunk) and decode tokens/s after it."""
    started = time.perf_counter()
    first = last = started
    chunks: list[str] = []
    for chunk in backend.stream(GenerationRequest(prompt=prompt, max_tokens=max_tokens)):
        last = time.perf_counter()
        if not chunks:
            first = last
        chunks.append(chunk)
    tokens = backend.count_tokens("".join(chunks))
    # Tokens after the first chunk, over the time after it: the steady decode rate.
    decode_s = max(last - first, 1e-9)
    return {
        "ttft_ms": (first - started) * 1000,
        "decode_tokens_per_s": max(tokens - 1, 0) / decode_s,
        "total_s": last - started,
        "tokens": tokens,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--quick", action="store_true", help="1 run of 16 tokens (CI smoke)")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.max_tokens = 1, 16

    started = time.perf_counter()
    load_average, pressure_at_start = os.getloadavg()[0], cpu_pressure()
    backends = {
        dtype: TransformersBackend(model_path=str(args.model_dir), dtype=dtype, threads=THREADS)
        for dtype in ("bfloat16", "float32")
    }
    for backend in backends.values():
        backend.load()
    prompt = build_prompt(backends["bfloat16"], PROMPT_TOKENS)
    prompt_tokens = backends["bfloat16"].count_tokens(prompt)
    for backend in backends.values():  # warm-up: first calls allocate and pick kernels
        one_run(backend, prompt, 4)

    runs: dict[str, list[dict[str, float]]] = {dtype: [] for dtype in backends}
    for _ in range(args.runs):  # interleaved, so drift in machine load hits both alike
        for dtype, backend in backends.items():
            runs[dtype].append(one_run(backend, prompt, args.max_tokens))

    def median(dtype: str, key: str) -> float:
        return round(statistics.median(run[key] for run in runs[dtype]), 2)

    ttft, ttft_base = median("bfloat16", "ttft_ms"), median("float32", "ttft_ms")
    speed, speed_base = (
        median("bfloat16", "decode_tokens_per_s"),
        median("float32", "decode_tokens_per_s"),
    )
    baseline = "same model in float32, same prompt and threads, interleaved in this run"
    results = [
        {
            "metric": f"ttft_ms@{prompt_tokens}_prompt_tokens_bf16",
            "value": ttft,
            "unit": "ms",
            "baseline": baseline,
            "baseline_value": ttft_base,
            "ratio": round(ttft / ttft_base, 3),
            "target": "<= 3000",
            "meets_target": ttft <= 3000,
        },
        {
            "metric": "decode_tokens_per_s_bf16",
            "value": speed,
            "unit": "tokens/s",
            "baseline": baseline,
            "baseline_value": speed_base,
            "ratio": round(speed / speed_base, 3),
            "target": ">= 8",
            "meets_target": speed >= 8,
        },
    ]
    report = {
        "benchmark": "embedded_model",
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cpus": os.cpu_count(),
            "threads": {"torch": THREADS},
            "load_average_1m_at_start": round(load_average, 2),
            "cpu_pressure_avg10_pct": {"start": pressure_at_start, "end": cpu_pressure()},
        },
        "model": backends["bfloat16"].info.model,
        "model_version": backends["bfloat16"].info.version,
        "prompt_tokens": prompt_tokens,
        "max_tokens": args.max_tokens,
        "runs": args.runs,
        "generated_tokens": [run["tokens"] for run in runs["bfloat16"]],
        "results": results,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    write_report("embedded_model", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
