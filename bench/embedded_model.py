"""Benchmark: the embedded generator's engines and precisions, and the embedder's precisions,
against the defaults, on the machine it runs on.

The defaults (``INFERENCE_BACKEND=embedded`` with ``EMBEDDED_MODEL_DTYPE=auto``, and
``EMBEDDER_DTYPE=auto``) must never be more than 1.1x slower than the fastest alternative
measured here. Generator variants: transformers in bf16 and float32, and llama.cpp on the shipped
quantised GGUF, its Q8_0 copy and its bf16 conversion (``--with-f32`` adds llama.cpp float32, a
2 GB file). The default is what the app runs here: the engine and precision recorded by
``manage.py calibrate_engine`` (run in the background by ``make run``), else an unmeasured
install's.
Each streams a ~600-token ChatML prompt (guideline passages + question, the shape of a real
grounded prompt) with 2 threads; the embedder embeds 128 guideline-length passages. Variants are
interleaved run by run so drift in machine load hits all alike. The one-off build of llama.cpp
(scripts/install_llamacpp.sh) is reported when its record is found. Prints the results as JSON
(medians of ``--runs`` runs) and writes ``bench/results/embedded_model.json``.

    .venv/bin/python bench/embedded_model.py [--quick] [--with-f32] [--model-dir var/models/...]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import cpu_pressure, result, write_report  # noqa: E402
from clinic_app.core.progress import progress_reporter  # noqa: E402
from inference.backends import Backend, load_backend  # noqa: E402
from inference.backends.llamacpp_backend import Q8_0, SHIPPED_GGUF, gguf_precision  # noqa: E402
from inference.types import GenerationRequest  # noqa: E402
from retrieval.embedder import Embedder  # noqa: E402
from retrieval.hardware import AUTO, dtype_resolve  # noqa: E402

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


def build_prompt(backend: Backend, target_tokens: int) -> str:
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


def one_run(backend: Backend, prompt: str, max_tokens: int) -> dict[str, float]:
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


CPU_DTYPES = ("bfloat16", "float32")
EMBED_PASSAGES = 128
SLOWER_LIMIT = 1.1
ANSWER_TOKENS = 320  # ANSWER_MAX_TOKENS' default


def embed_run(embedder: Embedder, texts: list[str]) -> float:
    """Passages per second for one pass over ``texts``."""
    started = time.perf_counter()
    embedder.encode(texts)
    return len(texts) / (time.perf_counter() - started)


def default_rows(
    component: str,
    metric: str,
    unit: str,
    figures: dict[str, float],
    default: str,
    *,
    higher_is_better: bool,
    targeted: bool = True,
) -> list[dict[str, object]]:
    """One row per precision, then the default against the fastest (target <= 1.1x slower,
    unless ``targeted`` is false: a part of the wait, reported for information)."""
    rows: list[dict[str, object]] = [
        result(f"{component}_{metric}_{label}", value, unit) for label, value in figures.items()
    ]
    best = (max if higher_is_better else min)(figures, key=figures.__getitem__)
    # Slowdown of the default relative to the fastest: >= 1.0, 1.0 when the default is fastest.
    slowdown = (
        figures[best] / figures[default] if higher_is_better else figures[default] / figures[best]
    )
    rows.append(
        result(
            f"{component}_{metric}_default_slowdown",
            slowdown,
            "x",
            baseline=f"fastest alternative in this run ({best})",
            baseline_value=1.0,
            target=f"<= {SLOWER_LIMIT}" if targeted else None,
            meets=slowdown <= SLOWER_LIMIT if targeted else None,
            default=default,
        )
    )
    return rows


def default_generator(model_dir: Path) -> str:
    """The variant label the app's defaults pick on this machine: the engine and precision
    `manage.py calibrate_engine` measured here (clinic_app.core.runtime), else what an
    unmeasured install runs."""
    measured = _measured_default(model_dir)
    if measured:
        return measured
    if importlib.util.find_spec("llama_cpp") and (model_dir / SHIPPED_GGUF).is_file():
        return f"llamacpp_{gguf_precision(AUTO).dtype}"
    return f"transformers_{dtype_resolve(AUTO, device='cpu').dtype}"


def _measured_default(model_dir: Path) -> str:
    """``<engine>_<precision>`` from the app's recorded engine choice for ``model_dir`` with the
    default settings (``""`` when none is recorded, or the settings are not the defaults)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinic_app.settings")
    import django

    django.setup()
    from django.conf import settings

    from clinic_app.core import runtime

    installed = Path(settings.MODELS_DIR) / settings.EMBEDDED_MODEL
    if (
        settings.INFERENCE_BACKEND != "embedded"
        or settings.EMBEDDED_MODEL_DTYPE != AUTO
        or installed.resolve() != model_dir.resolve()
        or runtime.engine_choice_read() is None
    ):
        return ""
    engine = runtime.embedded_engine()[0]
    return f"{engine}_{runtime.embedded_precision(engine)}"


def generator_variants(model_dir: Path, *, with_f32: bool) -> dict[str, Backend]:
    """Every engine x precision installed here, by label (``<engine>_<precision>``)."""
    variants: dict[str, Backend] = {}
    if (model_dir / "model.safetensors").is_file():
        for dtype in CPU_DTYPES:
            variants[f"transformers_{dtype}"] = load_backend(
                "transformers", model_path=str(model_dir), dtype=dtype, threads=THREADS
            )
    if importlib.util.find_spec("llama_cpp") and (model_dir / SHIPPED_GGUF).is_file():
        for precision in ("quantized", Q8_0, "bfloat16", *(("float32",) if with_f32 else ())):
            variants[f"llamacpp_{precision}"] = load_backend(
                "llamacpp", model_path=str(model_dir), dtype=precision, threads=THREADS
            )
    return variants


def engine_build_record() -> dict[str, object] | None:
    """What scripts/install_llamacpp.sh recorded about building llama.cpp on this machine."""
    cache = Path(
        os.environ.get("LLAMA_CPP_WHEEL_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        / "clinic-app"
        / "llama-cpp"
    )
    records = sorted(cache.glob("*/build.json"), key=lambda path: path.stat().st_mtime)
    try:
        return json.loads(records[-1].read_text()) if records else None
    except (OSError, ValueError):
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--with-f32", action="store_true", help="also llama.cpp float32 (2 GB)")
    parser.add_argument("--quick", action="store_true", help="1 run of 16 tokens (CI smoke)")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.max_tokens = 1, 16

    started = time.perf_counter()
    load_average, pressure_at_start = os.getloadavg()[0], cpu_pressure()
    embedder_default = dtype_resolve(AUTO, device="cpu")
    generator_default = default_generator(args.model_dir)
    backends = generator_variants(args.model_dir, with_f32=args.with_f32)
    if generator_default not in backends:
        print(f"the default {generator_default} is not installed here", file=sys.stderr)
        return 1
    embedders = {dtype: Embedder("bundled", dtype=dtype) for dtype in CPU_DTYPES}
    reference = backends[generator_default]
    prompt = build_prompt(reference, PROMPT_TOKENS)
    prompt_tokens = reference.count_tokens(prompt)
    texts = [
        " ".join(PASSAGES[i % len(PASSAGES)] for i in range(n, n + 3))
        for n in range(EMBED_PASSAGES)
    ]
    for backend in backends.values():  # warm-up: loads, converts, allocates and picks kernels
        one_run(backend, prompt, 4)
    for embedder in embedders.values():
        embedder.encode(texts[:8])

    runs: dict[str, list[dict[str, float]]] = {label: [] for label in backends}
    embed_rates: dict[str, list[float]] = {dtype: [] for dtype in embedders}
    progress = progress_reporter("embedded_model", unit="run", stream=sys.stderr)
    total = args.runs * (len(backends) + len(embedders))
    done = 0
    for _ in range(args.runs):  # interleaved, so drift in machine load hits every variant alike
        for label, backend in backends.items():
            runs[label].append(one_run(backend, prompt, args.max_tokens))
            done += 1
            progress(done, total)
        for dtype, embedder in embedders.items():
            embed_rates[dtype].append(embed_run(embedder, texts))
            done += 1
            progress(done, total)

    def median(label: str, key: str) -> float:
        return round(statistics.median(run[key] for run in runs[label]), 2)

    def projected(label: str) -> float:
        return round(
            median(label, "ttft_ms") / 1000
            + ANSWER_TOKENS / max(median(label, "decode_tokens_per_s"), 1e-9),
            2,
        )

    results = [
        *default_rows(
            "generator",
            f"ttft_ms@{prompt_tokens}_prompt_tokens",
            "ms",
            {label: median(label, "ttft_ms") for label in backends},
            generator_default,
            higher_is_better=False,
        ),
        # Decoding alone is reported for information; what a clinician waits for is the whole
        # answer, below.
        *default_rows(
            "generator",
            "decode_tokens_per_s",
            "tokens/s",
            {label: median(label, "decode_tokens_per_s") for label in backends},
            generator_default,
            higher_is_better=True,
            targeted=False,
        ),
        *default_rows(
            "generator",
            f"whole_answer_s@{args.max_tokens}_tokens",
            "s",
            {label: median(label, "total_s") for label in backends},
            generator_default,
            higher_is_better=False,
        ),
        # The same at the answer length the app allows (ANSWER_MAX_TOKENS' default), projected
        # from this run's medians: time to first token + tokens / decode rate.
        *default_rows(
            "generator",
            f"whole_answer_s@{ANSWER_TOKENS}_tokens_projected",
            "s",
            {label: projected(label) for label in backends},
            generator_default,
            higher_is_better=False,
        ),
        *default_rows(
            "embedder",
            f"passages_per_s@{EMBED_PASSAGES}",
            "passages/s",
            {dtype: round(statistics.median(embed_rates[dtype]), 2) for dtype in embedders},
            embedder_default.dtype,
            higher_is_better=True,
        ),
    ]
    # The targets for the default, against torch float32 (the engine before this one).
    torch_f32 = "transformers_float32" if "transformers_float32" in backends else None
    for metric, value, target, base in (
        (
            f"generator_ttft_ms@{prompt_tokens}_prompt_tokens_default",
            median(generator_default, "ttft_ms"),
            3000.0,
            median(torch_f32, "ttft_ms") if torch_f32 else None,
        ),
        (
            f"generator_whole_answer_s@{ANSWER_TOKENS}_tokens_projected_default",
            projected(generator_default),
            15.0,
            projected(torch_f32) if torch_f32 else None,
        ),
    ):
        results.append(
            result(
                metric,
                value,
                "ms" if "ttft" in metric else "s",
                baseline="transformers float32, same run" if base is not None else None,
                baseline_value=base,
                target=f"<= {target:g}",
                meets=value <= target,
                default=generator_default,
            )
        )
    build = engine_build_record()
    if build is not None:
        results.append(
            result(
                "llamacpp_build_s_once_per_machine",
                float(str(build.get("seconds", 0))),
                "s",
                version=build.get("version"),
                built_at=build.get("built_at"),
            )
        )
    report = {
        "benchmark": "embedded_model",
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cpus": os.cpu_count(),
            "threads": {"torch": THREADS, "llama.cpp": THREADS},
            "default_generator": generator_default,
            "default_embedder_precision": {
                "dtype": embedder_default.dtype,
                "reason": embedder_default.reason,
            },
            "load_average_1m_at_start": round(load_average, 2),
            "cpu_pressure_avg10_pct": {"start": pressure_at_start, "end": cpu_pressure()},
        },
        "model": reference.info.model,
        "model_version": reference.info.version,
        "prompt_tokens": prompt_tokens,
        "max_tokens": args.max_tokens,
        "runs": args.runs,
        "generated_tokens": {label: [run["tokens"] for run in runs[label]] for label in runs},
        "results": results,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    write_report("embedded_model", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
