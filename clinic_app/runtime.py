"""Process-wide engines (embedder, retriever, generator), built once from settings."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import os
import threading
import time
from pathlib import Path

from django.conf import settings

from inference.backends import Backend, load_backend
from inference.prompts import PROFILES, Profile
from retrieval.embedder import Embedder
from retrieval.index import set_faiss_threads
from retrieval.rerank import CrossEncoderReranker
from retrieval.search import Retriever
from retrieval.vector_seed import VectorSeed, seed_for

log = logging.getLogger(__name__)


@functools.cache
def configure_threads() -> dict[str, int]:
    """Set FAISS and torch thread counts deliberately (see DESIGN.md) and log them."""
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


def embedded_engine() -> tuple[str, str]:
    """The in-process engine to use and why: ``INFERENCE_BACKEND`` unless it is ``embedded``.

    ``embedded`` picks llama.cpp when ``llama-cpp-python`` is installed and the model folder holds
    the GGUF (the fastest engine for CPU inference measured here: bench/embedded_model.py), else
    transformers on the de-quantised safetensors.
    """
    chosen = settings.INFERENCE_BACKEND
    if chosen != "embedded":
        return chosen, "set by INFERENCE_BACKEND"
    model_dir = settings.MODELS_DIR / settings.EMBEDDED_MODEL
    if importlib.util.find_spec("llama_cpp") is None:
        return "transformers", "llama-cpp-python is not installed (`make install` builds it)"
    if not (model_dir / "model.gguf").is_file():
        return "transformers", f"no model.gguf in {model_dir} (`make models` installs it)"
    return "llamacpp", "llama.cpp is installed and the model folder holds the GGUF"


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
    options: dict[str, object] = {
        "model_path": str(settings.MODELS_DIR / settings.EMBEDDED_MODEL),
        "dtype": settings.EMBEDDED_MODEL_DTYPE,
        "model_name": settings.EMBEDDED_MODEL,
    }
    if engine == "llamacpp":
        options["threads"] = settings.TORCH_THREADS or None
    return load_backend(engine, **options)


class _BackendHolder:
    """``get_backend()``: the generator, built once per process and shared.

    On a machine that has never built llama.cpp, ``make run`` serves at once on the transformers
    engine while llama.cpp builds in the background (``scripts/install_llamacpp.sh
    --background``). A backend that is that fallback looks again, at most every
    ``UPGRADE_CHECK_S`` seconds when a question needs the model, whether llama.cpp has arrived,
    and switches to it: answers already streaming finish on the engine they started with.
    ``cache_clear()`` forgets the backend (tests, and the evaluate command's ``--backend``).
    """

    UPGRADE_CHECK_S = 15.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._backend: Backend | None = None
        self._checked = 0.0

    def __call__(self) -> Backend:
        with self._lock:
            if self._backend is None:
                self._backend = _backend_build()
                self._checked = time.monotonic()
            elif self._is_fallback() and time.monotonic() - self._checked >= self.UPGRADE_CHECK_S:
                self._checked = time.monotonic()
                self._upgrade()
            return self._backend

    def _is_fallback(self) -> bool:
        return (
            settings.INFERENCE_BACKEND == "embedded"
            and self._backend is not None
            and self._backend.info.backend == "transformers"
        )

    def _upgrade(self) -> None:
        importlib.invalidate_caches()  # a package installed since start-up becomes visible
        if embedded_engine()[0] != "llamacpp":
            return
        try:
            backend = _backend_build()
        except Exception:  # a half-finished install: keep serving, look again later
            log.warning("llama.cpp is not usable yet; staying on transformers", exc_info=True)
            return
        log.info("llama.cpp is installed now: the embedded engine switches to it")
        self._backend = backend

    def cache_clear(self) -> None:
        with self._lock:
            self._backend = None


get_backend = _BackendHolder()


def get_profile() -> Profile:
    """Prompt layout: ``PROMPT_PROFILE`` if set, else Meditron's for vLLM and ChatML in-process."""
    name = settings.PROMPT_PROFILE or (
        "meditron" if settings.INFERENCE_BACKEND == "vllm" else "chatml"
    )
    return PROFILES[name]
