"""Benchmark: what the Prometheus metrics add to a streamed answer (metrics on vs off).

No metric is touched while tokens stream: an answer's metrics are written before its first
token (queue wait, retrieval time, index version, model info, the audit appends) and after its
last (first-token time, tokens/s, outcome, whole-answer time, the final audit append). The
added latency per token is therefore that per-answer work spread over the answer's tokens, and
the work before the first token is added to every token's delivery time. Two measurements, each
with its same-run baseline:

1. **Metric work per answer**, in a fresh process for each way the app runs: one registry in the
   process (embedded default) and ``PROMETHEUS_MULTIPROC_DIR`` (production: Celery workers write
   memory-mapped files). The same sequence of calls an answer makes, against the same sequence
   on no-op stand-ins (the baseline), in alternating batches; medians of the batches.
2. **The streaming path**: ``services.answer_generate`` end to end (retrieval on the demo index,
   prompt, streaming, checks, database, audit) with a scripted backend that streams ``--tokens``
   tokens, alternating answers with the real metrics and with every metric replaced by a no-op.
   Reported: median time per streamed token and the difference; this is noisy (database and
   retrieval vary by milliseconds per answer) and is the end-to-end check of (1), not its
   replacement.

Target: added latency per token < 0.05 ms, for the production mode, on a ``--tokens``-token
answer (default 300, close to ``ANSWER_MAX_TOKENS``) and, as the worst case, on the pre-first-
token work alone (added to every token's delivery). Needs the demo index (``make setup``); works
on a scratch copy of ``var/clinic.sqlite3``. Writes ``bench/results/metrics_overhead.json``.

    .venv/bin/python bench/metrics_overhead.py [--quick] [--tokens 300]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import cpu_pressure, django_on_scratch_copy, result, write_report  # noqa: E402

DATABASE = ROOT / "var" / "clinic.sqlite3"
TARGET_MS = 0.05
# The audit appends of one answer: asked, started, finished (each timed into a histogram).
AUDIT_APPENDS = 3


class _NoOp:
    """Stands in for any metric: every call does nothing."""

    def labels(self, *_a: Any, **_k: Any) -> _NoOp:
        return self

    def __getattr__(self, _name: str) -> Callable[..., None]:
        return lambda *_a, **_k: None


@contextmanager
def _no_timer(_histogram: Any) -> Iterator[None]:
    yield


def metrics_off(module: Any) -> dict[str, Any]:
    """Stand-ins for every metric of ``clinic_app.observability.metrics`` and its helpers, by
    name."""
    off: dict[str, Any] = {
        n: _NoOp() for n in dir(module) if n.isupper() and hasattr(getattr(module, n), "labels")
    }
    return off | {"timed": _no_timer, "model_seen": lambda *_a: None}


def answer_metric_calls(m: Any, timed: Callable[[Any], Any]) -> tuple[Callable[[], None], ...]:
    """One answer's metric work, split at the first token: (before, after)."""

    def before() -> None:
        m.QUEUE_WAIT.observe(0.012)
        with timed(m.RETRIEVAL_SECONDS):
            pass
        m.INDEX_VERSION.set(3)
        for _ in range(AUDIT_APPENDS - 1):
            with timed(m.AUDIT_APPEND_SECONDS):
                pass
        m.model_seen("llamacpp", "qwen2.5-0.5b-instruct", "q8_0")

    def after() -> None:
        m.FIRST_TOKEN.observe(1.7)
        m.TOKENS_PER_SECOND.observe(21.5)
        m.ANSWERS.labels(outcome="complete").inc()
        m.ANSWER_SECONDS.observe(12.4)
        with timed(m.AUDIT_APPEND_SECONDS):
            pass

    return before, after


def micro(rounds: int, batch: int) -> dict[str, float]:
    """In this process (its metrics mode set by the environment): median microseconds per
    answer of the metric calls before the first token and after the last, real vs no-op."""
    from clinic_app.observability import metrics

    real = answer_metric_calls(metrics, metrics.timed)
    off = metrics_off(metrics)
    baseline = answer_metric_calls(type("NoOpMetrics", (), off)(), off["timed"])
    samples: dict[str, list[float]] = {k: [] for k in ("before", "after", "noop_b", "noop_a")}
    for r in range(rounds):
        order = [(real, "before", "after"), (baseline, "noop_b", "noop_a")]
        for calls, kb, ka in order if r % 2 == 0 else order[::-1]:
            for fn, key in ((calls[0], kb), (calls[1], ka)):
                t0 = time.perf_counter_ns()
                for _ in range(batch):
                    fn()
                samples[key].append((time.perf_counter_ns() - t0) / batch / 1000)
    return {k: statistics.median(v) for k, v in samples.items()}


def micro_in_child(mode: str, rounds: int, batch: int) -> dict[str, float]:
    env = dict(os.environ)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    folder = None
    if mode == "multiprocess":
        folder = tempfile.mkdtemp(prefix="bench-metrics-")
        env["PROMETHEUS_MULTIPROC_DIR"] = folder
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--micro-child", str(rounds), str(batch)],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
    finally:
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def streaming_path(answers: int, tokens: int) -> dict[str, Any]:
    """Median ms per streamed token through ``answer_generate``, metrics on vs off."""
    scratch = django_on_scratch_copy(DATABASE, prefix="bench-metrics-db-")
    from django.conf import settings
    from django.contrib.auth.models import User

    from clinic_app.answers import services
    from clinic_app.answers.streaming import CollectingSink
    from clinic_app.core import runtime
    from clinic_app.observability import metrics
    from inference.testing import ScriptedBackend
    from tests.conftest import ANSWERABLE_QUESTION

    settings.ANSWER_MAX_TOKENS = tokens + 10
    settings.SUPPORT_CHECK = "off"  # the same in both arms; keeps the answer's tail short
    text = " ".join(f"word{i}" for i in range(tokens - 1)) + " [S1]."
    backend = ScriptedBackend(text, chunk_words=1)
    runtime.get_backend = lambda: backend  # type: ignore[assignment]
    user = User.objects.get(username="clinician")
    off = metrics_off(metrics)
    real = {n: getattr(metrics, n) for n in off}

    def one() -> tuple[float, int]:
        answer = services.question_ask(user=user, text=ANSWERABLE_QUESTION, enforce_limits=False)
        sink = CollectingSink()
        t0 = time.perf_counter()
        done = services.answer_generate(answer_id=answer.pk, sink=sink)
        elapsed = time.perf_counter() - t0
        if done.status != "complete":
            raise RuntimeError(f"scripted answer did not complete: {done.status} {done.message}")
        return elapsed, backend.count_tokens(done.text)

    one()  # warm: embedder, index, prompt template
    per_token: dict[str, list[float]] = {"on": [], "off": []}
    counted = 0
    try:
        for i in range(answers * 2):
            arm = "on" if (i % 4) in (0, 3) else "off"  # on, off, off, on: balanced order
            for name, value in (off if arm == "off" else real).items():
                setattr(metrics, name, value)
            elapsed, counted = one()
            per_token[arm].append(elapsed / counted * 1000)
    finally:
        for name, value in real.items():
            setattr(metrics, name, value)
        shutil.rmtree(scratch, ignore_errors=True)
    on, off_ = statistics.median(per_token["on"]), statistics.median(per_token["off"])
    spread = statistics.median(
        abs(a - b) for a, b in zip(per_token["off"][::2], per_token["off"][1::2], strict=False)
    )
    return {"on_ms": on, "off_ms": off_, "tokens": counted, "off_pair_spread_ms": spread}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer rounds and answers")
    parser.add_argument("--tokens", type=int, default=300, help="tokens per answer")
    parser.add_argument("--micro-child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.micro_child:
        print(json.dumps(micro(*args.micro_child)))
        return 0
    if not DATABASE.is_file():
        print(f"no demo database at {DATABASE}: run `make setup` first", file=sys.stderr)
        return 1
    rounds, batch, answers = (10, 200, 6) if args.quick else (40, 500, 20)
    pressure = cpu_pressure()
    rows: list[dict[str, Any]] = []
    micro_figures: dict[str, dict[str, float]] = {}
    for mode in ("in_process", "multiprocess"):
        m = micro_in_child(mode, rounds, batch)
        micro_figures[mode] = m
        before, after = m["before"] - m["noop_b"], m["after"] - m["noop_a"]
        per_token_us = (before + after) / args.tokens
        meets = per_token_us < TARGET_MS * 1000 and before < TARGET_MS * 1000
        rows.append(
            result(
                f"metric_work_per_answer_{mode}",
                m["before"] + m["after"],
                "us",
                baseline="the same calls on no-op stand-ins",
                baseline_value=m["noop_b"] + m["noop_a"],
                before_first_token_us=round(before, 2),
                after_last_token_us=round(after, 2),
            )
        )
        rows.append(
            result(
                f"added_latency_per_token_{mode}",
                per_token_us,
                "us",
                target=f"< {TARGET_MS * 1000:g} us per token (and < {TARGET_MS * 1000:g} us "
                "before the first)",
                meets=meets if mode == "multiprocess" else None,
                tokens=args.tokens,
            )
        )
    path = streaming_path(answers, args.tokens)
    rows.append(
        result(
            "streaming_path_ms_per_token_metrics_on",
            path["on_ms"],
            "ms",
            baseline="metrics off (no-op stand-ins), same run, interleaved",
            baseline_value=path["off_ms"],
            difference_ms=round(path["on_ms"] - path["off_ms"], 4),
            noise_ms=round(path["off_pair_spread_ms"], 4),
            tokens=path["tokens"],
            answers_per_arm=answers,
        )
    )
    report = {
        "benchmark": "metrics_overhead",
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cpus": os.cpu_count(),
            "cpu_pressure_avg10_start": pressure,
            "cpu_pressure_avg10_end": cpu_pressure(),
        },
        "setup": {
            "micro": f"{rounds} alternating rounds of {batch} answers' metric calls per mode",
            "path": "services.answer_generate, scripted backend one token per chunk, "
            "SUPPORT_CHECK=off in both arms, scratch copy of the demo database",
            "quick": args.quick,
        },
        "micro_us": micro_figures,
        "results": rows,
        "notes": [
            "No metric is written while tokens stream: the per-token figure is the per-answer "
            "work divided by the answer's tokens; the work before the first token delays "
            "every token by that much once.",
            "noise_ms: median difference between consecutive metrics-off answers, per token.",
        ],
    }
    write_report("metrics_overhead", report)
    return 0 if all(r.get("meets_target") is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
