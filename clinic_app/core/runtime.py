"""Process-wide engines (embedder, retriever, generator), built once from settings."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import logging
import os
import threading
import time
from pathlib import Path

from django.conf import settings

from inference.backends import Backend, load_backend
from inference.calibrate import (
    CHOICE_RULE,
    EXCERPT_ANSWER_TOKENS,
    EXCERPT_PROMPT_OVERHEAD,
    TYPICAL_ANSWER_TOKENS,
    TYPICAL_PROMPT_TOKENS,
    machine_fingerprint,
)
from inference.prompts import PROFILES, Profile
from retrieval.embedder import Embedder
from retrieval.index import set_faiss_threads
from retrieval.rerank import CrossEncoderReranker
from retrieval.search import Retriever
from retrieval.vector_seed import VectorSeed, seed_for

log = logging.getLogger(__name__)


@functools.cache
def configure_threads() -> dict[str, int]:
    """Set FAISS and torch thread counts deliberately (settings ``FAISS_THREADS`` and
    ``TORCH_THREADS``; docs/settings.md) and log them."""
    faiss_threads = settings.FAISS_THREADS
    set_faiss_threads(faiss_threads)
    torch_threads = settings.TORCH_THREADS or max(1, (os.cpu_count() or 2))
    try:
        import torch

        torch.set_num_threads(torch_threads)
    except ImportError:  # pragma: no cover - torch is a hard dependency of the embedder
        pass
    log.info("threads: faiss=%s torch=%s", faiss_threads, torch_threads)
    return {"faiss": faiss_threads, "torch": torch_threads}


@functools.cache
def get_embedder() -> Embedder:
    configure_threads()
    return Embedder(
        settings.EMBEDDER_MODEL, device=settings.EMBEDDER_DEVICE, dtype=settings.EMBEDDER_DTYPE
    )


def build_reranker() -> CrossEncoderReranker | None:
    """The cross-encoder named by ``RERANKER_MODEL`` (it loads on first use), or ``None``."""
    if not settings.RERANKER_MODEL:
        return None
    configure_threads()
    # Same hardware choice as the embedder: both run in the worker for every question.
    return CrossEncoderReranker(
        settings.RERANKER_MODEL, device=settings.EMBEDDER_DEVICE, dtype=settings.EMBEDDER_DTYPE
    )


@functools.cache
def get_vector_seed() -> VectorSeed | None:
    """``EMBEDDING_SEED`` when it was made by the configured embedder, else ``None``."""
    if not settings.EMBEDDING_SEED:
        return None
    embedder = get_embedder()
    path = Path(settings.EMBEDDING_SEED)
    path = path if path.is_absolute() else Path(settings.BASE_DIR) / path
    seed = seed_for(path, fingerprint=embedder.fingerprint, dim=embedder.dim)
    if seed is not None:
        log.info("vector seed: %s vectors (%s)", len(seed.keys), seed.source)
    return seed


@functools.cache
def get_retriever() -> Retriever:
    return Retriever(
        get_embedder(),
        settings.INDEX_DIR,
        fusion=settings.RETRIEVAL_FUSION,
        reranker=build_reranker(),
        rerank_candidates=settings.RERANKER_CANDIDATES,
        device=settings.FAISS_DEVICE,
    )


def _model_dir() -> Path:
    return Path(settings.MODELS_DIR) / settings.EMBEDDED_MODEL


def engines_missing() -> str:
    """Why both in-process engines cannot be run here (``""`` when they can)."""
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed (`make install` builds it)"
    if not (_model_dir() / "model.gguf").is_file():
        return f"no model.gguf in {_model_dir()} (`make models` installs it)"
    if not (_model_dir() / "model.safetensors").is_file():
        return (
            f"no model.safetensors in {_model_dir()} (`make models MODEL_FORMATS=gguf,safetensors`)"
        )
    return ""


def engine_choice_path() -> Path:
    """Where `manage.py calibrate_engine` records which engine is faster on this machine."""
    return _model_dir() / "engine-choice.json"


def engine_choice_key() -> str:
    """What a recorded choice is valid for: this CPU, the engines' versions, the settings."""
    from importlib.metadata import PackageNotFoundError, version

    parts = [
        settings.EMBEDDED_MODEL,
        settings.EMBEDDED_MODEL_DTYPE,
        str(settings.TORCH_THREADS),
        settings.PROMPT_SOURCES,
        str(settings.PROMPT_EXCERPT_TOKENS),
        CHOICE_RULE,
    ]
    for package in ("llama-cpp-python", "torch", "transformers"):
        try:
            parts.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            parts.append(f"{package} missing")
    return machine_fingerprint(*parts)


def engine_choice_read() -> dict[str, object] | None:
    """The recorded engine choice if it was measured on this machine with these versions."""
    try:
        record = json.loads(engine_choice_path().read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("key") != engine_choice_key():
        return None
    if record.get("engine") not in ("llamacpp", "transformers"):
        return None
    return record


def embedded_engine() -> tuple[str, str]:
    """The in-process engine to use and why: ``INFERENCE_BACKEND`` unless it is ``embedded``.

    ``embedded`` picks the engine measured faster on this machine (`manage.py calibrate_engine`,
    run in the background by `make run`: llama.cpp wins where the CPU computes bf16 natively,
    and on AVX2-only CPUs it depends on the answers' length); unmeasured, llama.cpp when it is
    installed and the model folder holds the GGUF, else transformers on the de-quantised
    safetensors.
    """
    chosen = settings.INFERENCE_BACKEND
    if chosen != "embedded":
        return chosen, "set by INFERENCE_BACKEND"
    model_dir = _model_dir()
    if importlib.util.find_spec("llama_cpp") is None:
        return "transformers", "llama-cpp-python is not installed (`make install` builds it)"
    if not (model_dir / "model.gguf").is_file():
        return "transformers", f"no model.gguf in {model_dir} (`make models` installs it)"
    record = engine_choice_read() if not engines_missing() else None
    if record is not None:
        return str(record["engine"]), f"measured faster on this machine ({engine_choice_path()})"
    return "llamacpp", "llama.cpp is installed and the model folder holds the GGUF"


def embedded_precision(engine: str) -> str:
    """The precision to run ``engine`` in: ``EMBEDDED_MODEL_DTYPE``, except that ``auto`` takes
    the precision `manage.py calibrate_engine` measured fastest for that engine on this machine
    (llama.cpp: the shipped quantised file, its Q8_0 copy, or bf16 where native)."""
    chosen = settings.EMBEDDED_MODEL_DTYPE
    if chosen != "auto":
        return chosen
    record = engine_choice_read()
    if record is not None and record.get("engine") == engine and record.get("precision"):
        return str(record["precision"])
    return chosen


def embedded_backend_build(engine: str, dtype: str | None = None) -> Backend:
    """An in-process backend on ``engine`` (``llamacpp`` or ``transformers``) with the settings;
    ``dtype`` overrides the precision (the calibration measures each candidate)."""
    configure_threads()
    options: dict[str, object] = {
        "model_path": str(_model_dir()),
        "dtype": dtype or embedded_precision(engine),
        "model_name": settings.EMBEDDED_MODEL,
    }
    if engine == "llamacpp":
        options["threads"] = settings.TORCH_THREADS or None
    return load_backend(engine, **options)


def _backend_build() -> Backend:
    """Build the generator selected by ``INFERENCE_BACKEND``."""
    configure_threads()
    if settings.INFERENCE_BACKEND == "vllm":
        return load_backend(
            "vllm",
            base_url=settings.VLLM_BASE_URL,
            model=settings.VLLM_MODEL,
            api_key=settings.VLLM_API_KEY,
            context_tokens=settings.VLLM_CONTEXT_TOKENS,
            first_token_timeout=settings.VLLM_FIRST_TOKEN_TIMEOUT,
            total_timeout=settings.VLLM_TOTAL_TIMEOUT,
        )
    engine, why = embedded_engine()
    log.info("embedded engine: %s (%s)", engine, why)
    return embedded_backend_build(engine)


class _BackendHolder:
    """``get_backend()``: the generator, built once per process and shared.

    ``make run`` serves at once, before the engines are settled: on a machine that has never
    built llama.cpp it builds in the background (``scripts/install_llamacpp.sh --background``)
    and the app answers on transformers meanwhile; and which engine is faster here is measured
    in the background (``calibrate_engine``). Until the choice rests on a measurement, the
    holder looks again, at most every ``UPGRADE_CHECK_S`` seconds when a question needs the
    model, and switches when ``embedded_engine()`` names another engine: answers already
    streaming finish on the engine they started with. ``cache_clear()`` forgets the backend
    (tests, and the evaluate command's ``--backend``).
    """

    UPGRADE_CHECK_S = 15.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._backend: Backend | None = None
        self._checked = 0.0
        self._settled = False

    def __call__(self) -> Backend:
        with self._lock:
            if self._backend is None:
                self._backend = _backend_build()
                self._checked = time.monotonic()
                self._settled = not self._is_fallback()
            elif not self._settled and time.monotonic() - self._checked >= self.UPGRADE_CHECK_S:
                self._checked = time.monotonic()
                self._upgrade()
                self._settled = not self._is_fallback()
            return self._backend

    def _is_fallback(self) -> bool:
        """Whether the engine in use was picked without a measurement made here."""
        return (
            settings.INFERENCE_BACKEND == "embedded"
            and self._backend is not None
            and engine_choice_read() is None
        ) or (self._backend is not None and self._backend.info.backend != embedded_engine()[0])

    def _upgrade(self) -> None:
        importlib.invalidate_caches()  # a package installed since start-up becomes visible
        engine, why = embedded_engine()
        precision = embedded_precision(engine)
        if self._backend is None or (
            engine == self._backend.info.backend
            and precision in ("auto", self._backend.info.extra.get("dtype"))
        ):
            return
        try:
            backend = _backend_build()
        except Exception:  # a half-finished install: keep serving, look again later
            log.warning("%s is not usable yet; staying on the engine in use", engine, exc_info=True)
            return
        log.info("the embedded engine switches to %s, %s (%s)", engine, precision, why)
        self._backend = backend

    def loaded(self) -> bool:
        """Whether this process has built its generator already (``/readyz`` reports it)."""
        return self._backend is not None

    def cache_clear(self) -> None:
        with self._lock:
            self._backend = None


get_backend = _BackendHolder()


def prompt_excerpt_budget(backend: Backend) -> int:
    """Tokens of source text the prompt may carry as excerpts; 0: whole passages.

    ``PROMPT_SOURCES=auto`` gives excerpts to an in-process model on a CPU (which reads a
    prompt at 40-100 tokens/s on two cores) and whole passages to vLLM or a GPU.
    """
    mode = settings.PROMPT_SOURCES
    if mode == "auto":
        in_process_cpu = (
            backend.info.backend in ("transformers", "llamacpp")
            and str(backend.info.extra.get("device", "cpu")) == "cpu"
        )
        mode = "excerpts" if in_process_cpu else "passages"
    return settings.PROMPT_EXCERPT_TOKENS if mode == "excerpts" else 0


def typical_prompt_tokens(backend: Backend) -> int:
    """Tokens a typical grounded prompt has for ``backend`` (excerpts or whole passages), for
    choosing the engine (``inference.calibrate.engine_choose``)."""
    budget = prompt_excerpt_budget(backend)
    return budget + EXCERPT_PROMPT_OVERHEAD if budget else TYPICAL_PROMPT_TOKENS


def typical_answer_tokens(backend: Backend) -> int:
    """Tokens of a typical answer by ``backend`` to such a prompt (median on the demo
    questions: longer from excerpts than from whole passages)."""
    return EXCERPT_ANSWER_TOKENS if prompt_excerpt_budget(backend) else TYPICAL_ANSWER_TOKENS


def get_profile() -> Profile:
    """Prompt layout: ``PROMPT_PROFILE`` if set, else Meditron's for vLLM and ChatML in-process."""
    name = settings.PROMPT_PROFILE or (
        "meditron" if settings.INFERENCE_BACKEND == "vllm" else "chatml"
    )
    return PROFILES[name]
