"""Benchmark: what a clinician waits for on the embedded default, question by question.

Asks the answerable demo questions (``clinic_app/eval_data/demo_questions.jsonl``) through the
real answer path (``services.question_ask`` + ``services.answer_generate``: retrieval on the demo
index, prompt, generation, citation and support checks) and times the first streamed text and
the finished answer. The default (``INFERENCE_BACKEND=embedded``, ``auto`` precision, ``auto``
prompt sources: excerpts on a CPU) is measured against the same engine reading whole passages
(the default before excerpts), question by question in alternating order; ``--variants`` adds
the engines the default chooses between. Targets: time to first token p50 <= 3 s, whole answer
p50 <= 15 s.

Needs the demo index (``make setup``); works on a scratch copy of ``var/clinic.sqlite3`` so the
demo database gains no answers. Writes ``bench/results/answer_latency.json``.

    .venv/bin/python bench/answer_latency.py [--quick] [--questions 6] [--variants a,b]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import cpu_pressure, django_on_scratch_copy, result, write_report  # noqa: E402
from clinic_app.core.progress import progress_reporter  # noqa: E402

QUESTIONS = ROOT / "clinic_app" / "eval_data" / "demo_questions.jsonl"
DATABASE = ROOT / "var" / "clinic.sqlite3"
VARIANTS = {
    "default": {
        "INFERENCE_BACKEND": "embedded",
        "EMBEDDED_MODEL_DTYPE": "auto",
        "PROMPT_SOURCES": "auto",
    },
    # The default before excerpts (2026-12): the same engine reading five whole passages.
    "whole_passages": {
        "INFERENCE_BACKEND": "embedded",
        "EMBEDDED_MODEL_DTYPE": "auto",
        "PROMPT_SOURCES": "passages",
    },
    # The alternatives the default chooses between, for information.
    "transformers_float32": {
        "INFERENCE_BACKEND": "transformers",
        "EMBEDDED_MODEL_DTYPE": "float32",
        "PROMPT_SOURCES": "auto",
    },
    "llamacpp_quantized": {
        "INFERENCE_BACKEND": "llamacpp",
        "EMBEDDED_MODEL_DTYPE": "quantized",
        "PROMPT_SOURCES": "auto",
    },
    "llamacpp_q8_0": {
        "INFERENCE_BACKEND": "llamacpp",
        "EMBEDDED_MODEL_DTYPE": "q8_0",
        "PROMPT_SOURCES": "auto",
    },
    "llamacpp_bfloat16": {
        "INFERENCE_BACKEND": "llamacpp",
        "EMBEDDED_MODEL_DTYPE": "bfloat16",
        "PROMPT_SOURCES": "auto",
    },
}
BASELINE = "whole_passages"
TARGETS = {"ttft_s": 3.0, "total_s": 15.0}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ask_once(question: str, variant: dict[str, str]) -> dict[str, Any]:
    """Answer ``question`` with ``variant``'s settings; time the first text and the end."""
    from django.conf import settings
    from django.contrib.auth.models import User

    from clinic_app.answers import services
    from clinic_app.answers.streaming import CollectingSink
    from clinic_app.core import runtime

    for name, value in variant.items():
        setattr(settings, name, value)
    runtime.get_backend.cache_clear()
    runtime.get_backend()  # loaded before the clock starts, as in a running worker
    user = User.objects.get(username="clinician")
    started = time.perf_counter()
    first: list[float] = []
    quotes: list[float] = []

    def echo(delta: str) -> None:
        if not first and delta.strip():
            first.append(time.perf_counter())

    answer = services.question_ask(user=user, text=question, enforce_limits=False)
    answer = services.answer_generate(
        answer_id=answer.pk,
        sink=CollectingSink(
            echo=echo, on_evidence=lambda _items: quotes.append(time.perf_counter())
        ),
    )
    ended = time.perf_counter()
    return {
        "status": str(answer.status),
        "evidence_s": (quotes[0] if quotes else ended) - started,
        "ttft_s": (first[0] if first else ended) - started,
        "total_s": ended - started,
        # What the model wrote, in its own tokens: what the engine choice assumes
        # (inference.calibrate.EXCERPT_ANSWER_TOKENS, TYPICAL_ANSWER_TOKENS).
        "answer_tokens": runtime.get_backend().count_tokens(answer.text) if answer.text else 0,
        "engine": runtime.get_backend().info.backend,
        "precision": runtime.get_backend().info.extra.get("dtype", ""),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--questions", type=int, default=6)
    parser.add_argument("--quick", action="store_true", help="2 questions (CI smoke)")
    parser.add_argument(
        "--variants",
        default="default,whole_passages,transformers_float32,llamacpp_quantized",
        help=f"comma-separated, of {', '.join(VARIANTS)} (default and {BASELINE} always run)",
    )
    args = parser.parse_args()
    chosen = {"default", BASELINE, *args.variants.split(",")}
    unknown = chosen - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants: {', '.join(sorted(unknown))}")
    variants = {name: VARIANTS[name] for name in VARIANTS if name in chosen}
    if args.quick:
        args.questions = 2
    if not DATABASE.is_file():
        print(f"no demo database at {DATABASE}: run `make setup` first", file=sys.stderr)
        return 1

    started = time.perf_counter()
    load_average, pressure_at_start = os.getloadavg()[0], cpu_pressure()
    scratch = django_on_scratch_copy(DATABASE, prefix="answer-latency-")

    lines = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]
    questions = [q["question"] for q in lines if q.get("kind") == "answerable"][: args.questions]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    progress = progress_reporter("answer_latency", unit="answer", stream=sys.stderr)
    total = len(questions) * len(variants)
    try:
        for i, question in enumerate(questions):
            # Alternate which variant goes first, so neither always finds a warm cache.
            order = list(variants) if i % 2 == 0 else list(reversed(variants))
            for name in order:
                runs[name].append(ask_once(question, variants[name]))
                progress(sum(len(r) for r in runs.values()), total)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    results = []
    for key, target in TARGETS.items():
        value = statistics.median(run[key] for run in runs["default"])
        base = statistics.median(run[key] for run in runs[BASELINE])
        results.append(
            result(
                f"answer_{key.removesuffix('_s')}_p50_s@{len(questions)}_demo_questions",
                value,
                "s",
                baseline="same engine reading whole passages, same run",
                baseline_value=base,
                target=f"<= {target:g}",
                meets=value <= target,
            )
        )
        results.append(
            result(
                f"answer_{key.removesuffix('_s')}_p95_s@{len(questions)}_demo_questions",
                percentile([run[key] for run in runs["default"]], 0.95),
                "s",
                baseline="same engine reading whole passages, same run",
                baseline_value=percentile([run[key] for run in runs[BASELINE]], 0.95),
            )
        )
    results.append(
        result(
            f"answer_evidence_shown_p50_s@{len(questions)}_demo_questions",
            statistics.median(run["evidence_s"] for run in runs["default"]),
            "s",
            note="the sources' own sentences, shown before the model's first token",
        )
    )
    results.append(
        result(
            f"answer_tokens_p50@{len(questions)}_demo_questions",
            statistics.median(run["answer_tokens"] for run in runs["default"]),
            "tokens",
            baseline="same engine reading whole passages, same run",
            baseline_value=statistics.median(run["answer_tokens"] for run in runs[BASELINE]),
            note="every question; a refusal counts 0",
        )
    )
    for name in variants:
        if name in ("default", BASELINE):
            continue
        for key in TARGETS:
            results.append(
                result(
                    f"answer_{key.removesuffix('_s')}_p50_s@{len(questions)}_demo_questions_{name}",
                    statistics.median(run[key] for run in runs[name]),
                    "s",
                )
            )
    report = {
        "benchmark": "answer_latency",
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_1m_at_start": round(load_average, 2),
            "cpu_pressure_avg10_pct": {"start": pressure_at_start, "end": cpu_pressure()},
        },
        "default": {k: runs["default"][0][k] for k in ("engine", "precision")} if questions else {},
        "questions": questions,
        "runs": {
            name: [
                {k: (round(v, 3) if isinstance(v, float) else v) for k, v in run.items()}
                for run in variant_runs
            ]
            for name, variant_runs in runs.items()
        },
        "results": results,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    write_report("answer_latency", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
