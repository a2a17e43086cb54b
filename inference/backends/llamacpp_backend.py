"""In-process generation with llama.cpp (``llama-cpp-python``): the embedded default on CPUs.

The model folder is what ``scripts/install_models.py`` writes; this backend reads the shipped,
sha256-verified GGUF (``model.gguf``) directly, so no de-quantised copy is needed. Precision
follows the machine (``dtype="auto"``, see :mod:`retrieval.hardware`):

- bf16 where the CPU computes it natively (AVX512-BF16 or AMX): the weights are converted once
  to ``model-bf16.gguf`` beside the shipped file (lossless for the de-quantised values, a few
  seconds); prefill runs on the bf16 units, 2x faster than the quantised file here;
- the shipped quantised file (``quantized``) everywhere else: llama.cpp's integer kernels are
  what it is built for, and bf16 would be emulated;
- ``q8_0``: the shipped weights re-stored in llama.cpp's 8-bit blocks (``model-q8_0.gguf``,
  converted once). Every 4/6-bit value of the shipped file is kept to within 1/254 of its block's
  range: perplexity on guideline text +0.2% (docs/performance.md), while some CPUs read prompts
  faster with the Q8_0 kernels than with the K-quant ones (2-core AVX2 EPYC: 1.25x). Where the
  CPU has no native bf16, ``manage.py calibrate_engine`` measures ``quantized`` and ``q8_0`` and
  ``auto`` follows that measurement (clinic_app/core/runtime.py); this module alone never guesses;
- ``float32`` on request: the exact de-quantised weights, the same numbers transformers uses.

Measured on a 2-core AVX512-BF16 EPYC (bench/embedded_model.py): ~2 s to the first token of a
600-token grounded prompt and 25+ tokens/s after it, against 1.6 s and 7 tokens/s for
transformers bf16. Weights load once per (file, threads, context) and are shared by every
backend instance in the process; one generation runs at a time per model.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from inference.backends.base import read_json_object
from inference.errors import BackendError, BackendUnavailable, Cancelled, ContextOverflow
from inference.types import GenerationRequest, ModelInfo
from retrieval.hardware import AUTO, DtypeChoice, dtype_log_once, dtype_resolve

logger = logging.getLogger(__name__)

SHIPPED_GGUF = "model.gguf"
QUANTIZED = "quantized"
Q8_0 = "q8_0"
PRECISIONS = (AUTO, "bfloat16", "float32", QUANTIZED, Q8_0)
# How often a waiting stream looks at its cancel event while another generation holds the model.
_POLL_S = 0.05


def gguf_precision(requested: str) -> DtypeChoice:
    """The weights llama.cpp should run for ``requested`` (one of :data:`PRECISIONS`).

    ``auto`` is bf16 where the CPU computes it natively and the shipped quantised file elsewhere,
    until a measurement made here says otherwise (:func:`auto_candidates`).
    """
    if requested not in PRECISIONS:
        raise ValueError(f"unsupported precision {requested!r}; use one of {PRECISIONS}")
    if requested in (QUANTIZED, Q8_0):
        return DtypeChoice(requested, "set explicitly")
    choice = dtype_resolve(requested, device="cpu")
    if requested == AUTO and choice.dtype != "bfloat16":
        return DtypeChoice(QUANTIZED, f"llama.cpp's integer kernels; {choice.reason}")
    return choice


def auto_candidates() -> tuple[str, ...]:
    """The precisions ``auto`` may stand for on this CPU, to be measured against each other,
    the one used until then first.

    The shipped quantised file and its Q8_0 copy everywhere, which trade places from one CPU to
    another (which integer kernels are faster depends on the instruction set and the cache
    sizes); bf16 too, first, where the CPU computes it natively: it reads prompts fastest there,
    but writes slower than the integer files (2-core AVX512-BF16 EPYC: 40 vs 61-64 tokens/s),
    so which wins depends on the answer's length and the machine. Emulated bf16 is never a
    candidate (2-6x slower on AVX2).
    """
    choice = gguf_precision(AUTO)
    integer = (QUANTIZED, Q8_0)
    return integer if choice.dtype == QUANTIZED else (choice.dtype, *integer)


def gguf_variant(model_dir: Path, precision: str) -> Path:
    """The GGUF file for ``precision`` in ``model_dir``, converting the shipped one if needed.

    Conversion writes to a temporary name and renames, so a crash never leaves a half file;
    concurrent processes converting at once each write their own and the last rename wins.
    """
    shipped = model_dir / SHIPPED_GGUF
    if precision == QUANTIZED:
        return shipped
    ftypes = {
        "bfloat16": ("bf16", "LLAMA_FTYPE_MOSTLY_BF16"),
        "float32": ("f32", "LLAMA_FTYPE_ALL_F32"),
        Q8_0: ("q8_0", "LLAMA_FTYPE_MOSTLY_Q8_0"),
    }
    if precision not in ftypes:
        raise ValueError(f"no GGUF variant for precision {precision!r}")
    suffix, ftype_name = ftypes[precision]
    target = model_dir / f"model-{suffix}.gguf"
    if target.is_file() and target.stat().st_mtime >= shipped.stat().st_mtime:
        return target
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, ftype_name)
    params.allow_requantize = True
    params.nthread = os.cpu_count() or 1
    scratch = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    started = time.perf_counter()
    status = llama_cpp.llama_model_quantize(
        str(shipped).encode(), str(scratch).encode(), ctypes.byref(params)
    )
    if status != 0 or not scratch.is_file():
        scratch.unlink(missing_ok=True)
        raise BackendUnavailable(f"could not convert {shipped} to {precision} (status {status})")
    scratch.replace(target)
    logger.info(
        "converted %s to %s in %.1f s", shipped.name, target.name, time.perf_counter() - started
    )
    return target


@dataclass(frozen=True)
class LoadedGGUF:
    """A llama.cpp model and context, loaded once and shared by backends on the same key."""

    llm: Any
    # llama.cpp contexts are not thread-safe, and two generations on 2 cores would each run at
    # less than half speed: one at a time.
    lock: threading.Lock
    control_tokens: tuple[str, ...]
    # The fixed prefix whose key/value cache the context holds, read alone (see _context_prepare).
    prefix: list[list[int]] = field(default_factory=list)


def _control_tokens(llm: Any) -> tuple[str, ...]:
    """Every token the vocabulary marks as control or user-defined, as text (e.g. <|im_end|>)."""
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    wanted = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED
    found: dict[str, None] = {}
    for token in range(llama_cpp.llama_vocab_n_tokens(vocab)):
        if llama_cpp.llama_vocab_get_attr(vocab, token) & wanted:
            text = llama_cpp.llama_vocab_get_text(vocab, token)
            if text:
                found.setdefault(text.decode("utf-8", errors="replace"))
    return tuple(found)


class LlamaCppBackend:
    """Streams completions from a GGUF model with llama.cpp (``backend="llamacpp"``).

    ``model_path`` is the installed model folder (holding ``model.gguf``). ``dtype`` is one of
    :data:`PRECISIONS`. ``context_tokens`` sizes the KV cache (8,192 by default: a grounded prompt
    plus its answer needs about 2,000).
    ``threads`` defaults to the CPU count. Nothing is loaded until first use.
    """

    _cache: ClassVar[dict[tuple[str, int, int], LoadedGGUF]] = {}
    _cache_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        *,
        model_path: str,
        dtype: str = AUTO,
        threads: int | None = None,
        context_tokens: int = 8192,
        model_name: str = "",
    ) -> None:
        self.model_path = Path(model_path).expanduser().resolve()
        self.requested_dtype = dtype
        self.dtype_choice = gguf_precision(dtype)
        self.dtype = self.dtype_choice.dtype
        self.threads = threads or os.cpu_count() or 1
        manifest = read_json_object(self.model_path / "install.json")
        sha256 = str(manifest.get("sha256", ""))
        self.info = ModelInfo(
            backend="llamacpp",
            model=model_name or self.model_path.name,
            version=sha256[:12],
            context_tokens=context_tokens,
            extra={"device": "cpu", "dtype": self.dtype, "sha256": sha256, "engine": "llama.cpp"},
        )

    def load(self) -> LoadedGGUF:
        """Load (once per process) and return the model; raise BackendUnavailable if it can't."""
        if not (self.model_path / SHIPPED_GGUF).is_file():
            raise BackendUnavailable(
                f"no GGUF model installed at {self.model_path}: run `make models` "
                "(scripts/install_models.py) to install the embedded model"
            )
        with self._cache_lock:
            path = gguf_variant(self.model_path, self.dtype)
            key = (str(path), self.threads, self.info.context_tokens)
            loaded = self._cache.get(key)
            if loaded is None:
                loaded = self._cache[key] = self._load_uncached(path)
        return loaded

    def _load_uncached(self, path: Path) -> LoadedGGUF:
        try:
            import llama_cpp
        except ImportError as error:
            raise BackendUnavailable(
                "llama-cpp-python is not installed: run `make install` (it builds llama.cpp for "
                "this CPU), or set INFERENCE_BACKEND=transformers"
            ) from error
        started = time.perf_counter()
        try:
            llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=self.info.context_tokens,
                n_threads=self.threads,
                n_threads_batch=self.threads,
                n_batch=512,
                flash_attn=True,
                verbose=False,
            )
        except (OSError, ValueError, RuntimeError) as error:
            raise BackendUnavailable(
                f"cannot load {path} ({error}); reinstall it with `make models`"
            ) from error
        logger.info(
            "loaded %s with llama.cpp (%s, %d threads, context %d) in %.1f s",
            path.name,
            self.dtype,
            self.threads,
            self.info.context_tokens,
            time.perf_counter() - started,
        )
        dtype_log_once("embedded model (llama.cpp)", self.requested_dtype, self.dtype_choice)
        return LoadedGGUF(llm=llm, lock=threading.Lock(), control_tokens=_control_tokens(llm))

    def _tokenize(self, loaded: LoadedGGUF, text: str) -> list[int]:
        # special=True: the prompt's template markers are single tokens, as with transformers.
        return list(loaded.llm.tokenize(text.encode("utf-8"), add_bos=True, special=True))

    def count_tokens(self, text: str) -> int:
        """Number of tokens ``text`` takes, counted exactly as ``stream`` tokenizes a prompt.

        Not behind the generation lock: tokenizing only reads the vocabulary, so another
        clinician's prompt (and the quotes shown before it) is not held up by a running answer.
        """
        return len(self._tokenize(self.load(), text))

    def control_tokens(self) -> tuple[str, ...]:
        """The vocabulary's control tokens, for prompts to neutralise in untrusted text."""
        return self.load().control_tokens

    def stream(
        self, request: GenerationRequest, cancel: threading.Event | None = None
    ) -> Iterator[str]:
        """Yield the completion of ``request.prompt`` (already formatted) in text chunks.

        Greedy when ``temperature`` is 0. Ends at ``max_tokens``, at end-of-sequence, or before
        the first stop string. Raises Cancelled once ``cancel`` is set (checked while waiting
        for the model and after every token), ContextOverflow when the prompt plus
        ``max_tokens`` exceeds the context, BackendUnavailable without a model.
        """
        loaded = self.load()
        tokens = self._tokenize(loaded, request.prompt)
        if len(tokens) + request.max_tokens > self.info.context_tokens:
            raise ContextOverflow(
                f"prompt ({len(tokens)} tokens) + max_tokens ({request.max_tokens}) exceeds "
                f"the context of {self.info.context_tokens} tokens"
            )
        if request.max_tokens <= 0:
            return
        while not loaded.lock.acquire(timeout=_POLL_S):
            if cancel is not None and cancel.is_set():
                raise Cancelled("generation cancelled by the caller")
        try:
            prefix = self._tokenize(loaded, request.prefix) if request.prefix else []
            self._context_prepare(loaded, tokens, prefix)
            yield from self._generate(loaded, tokens, request, cancel)
        finally:
            loaded.lock.release()

    @staticmethod
    def _context_prepare(loaded: LoadedGGUF, tokens: list[int], prefix: list[int]) -> None:
        """Leave in the context only what ``tokens`` may reuse: the fixed ``prefix`` (the
        instructions every prompt starts with), always read alone in a batch of its own, so the
        output depends on the prompt only; else nothing.

        llama-cpp-python by itself reuses whatever the previous prompt happened to share, read
        in a batch with other tokens: greedy output would then depend on what was asked before.
        Called under the model's lock.
        """
        llm = loaded.llm
        n = len(prefix)
        if not n or len(tokens) <= n or tokens[:n] != prefix:
            llm.reset()
            loaded.prefix.clear()
            return
        held = loaded.prefix == [prefix] and llm.n_tokens >= n
        if held and [int(t) for t in llm.input_ids[:n]] == prefix:
            llm._ctx.kv_cache_seq_rm(-1, n, -1)  # keep the prefix's cache, drop the rest
            llm.n_tokens = n
            return
        llm.reset()
        llm.eval(prefix)
        loaded.prefix[:] = [prefix]

    def _generate(
        self,
        loaded: LoadedGGUF,
        tokens: list[int],
        request: GenerationRequest,
        cancel: threading.Event | None,
    ) -> Iterator[str]:
        sampling: dict[str, Any] = (
            {"temperature": request.temperature, "top_p": 0.95, "top_k": 40, "min_p": 0.05}
            if request.temperature > 0
            else {"temperature": 0.0}
        )
        try:
            # The context holds nothing or the fixed prefix (_context_prepare): the same
            # question always gets the same answer.
            chunks = loaded.llm.create_completion(
                tokens,
                max_tokens=request.max_tokens,
                stop=[stop for stop in request.stop if stop],
                stream=True,
                repeat_penalty=1.0,
                **sampling,
            )
            for chunk in chunks:
                if cancel is not None and cancel.is_set():
                    raise Cancelled("generation cancelled by the caller")
                text = chunk["choices"][0]["text"]
                if text:
                    yield text
        except (BackendError, Cancelled):
            raise
        except (RuntimeError, ValueError, OSError) as error:
            raise BackendError(f"generation failed: {error!r}") from error
        if cancel is not None and cancel.is_set():
            raise Cancelled("generation cancelled by the caller")
