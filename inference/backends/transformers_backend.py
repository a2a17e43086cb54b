"""In-process generation with Hugging Face transformers (the embedded default, CPU).

The model folder is what ``scripts/install_models.py`` (``make models``) writes: safetensors
weights, tokenizer files and an ``install.json`` manifest. Weights are loaded once per
(path, device, dtype) and shared by every backend instance in the process.
"""

from __future__ import annotations

import copy
import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
    TextIteratorStreamer,
)

from inference.backends.base import read_json_object
from inference.errors import BackendError, BackendUnavailable, Cancelled, ContextOverflow
from inference.sanitize import tokenizer_control_tokens
from inference.types import GenerationRequest, ModelInfo
from retrieval.hardware import dtype_log_once, dtype_resolve

logger = logging.getLogger(__name__)

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
# How often the consumer wakes while waiting for text, to notice a cancel during a long prefill.
_POLL_S = 0.05
# How long closing a stream waits for the generation thread; it stops within one decode step.
_JOIN_S = 10.0


class PrefixCache:
    """The key/value cache of the fixed prefix every prompt starts with (the instructions).

    On a CPU reading 50-100 prompt tokens a second, not reading the same ~100 instruction
    tokens again saves a second or more before the first word. The prefix is always read alone,
    in one forward pass of its own, so a prompt's output depends on the prompt only, never on
    what was asked before (reusing whatever the last prompt happened to share would make greedy
    output depend on the previous question). Used under the model's lock only.
    """

    def __init__(self) -> None:
        self._ids: list[int] = []
        self._cache: Any = None

    def for_prompt(self, model: PreTrainedModel, prefix_ids: list[int], ids: list[int]) -> Any:
        """A fresh copy of the cache of ``prefix_ids`` when ``ids`` starts with them and leaves
        at least one token to read; ``None`` otherwise (the prompt is read whole)."""
        if not prefix_ids or len(ids) <= len(prefix_ids) or ids[: len(prefix_ids)] != prefix_ids:
            return None
        if prefix_ids != self._ids:
            with torch.no_grad():
                out = model(
                    input_ids=torch.tensor([prefix_ids], device=model.device), use_cache=True
                )
            self._ids, self._cache = list(prefix_ids), out.cache
        return copy.deepcopy(self._cache)


@dataclass(frozen=True)
class LoadedModel:
    """A model and its tokenizer, loaded once and shared by every backend on the same key."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    # One generation at a time per model: on a 2-core CPU, two concurrent ``generate`` calls
    # oversubscribe the cores and each runs at less than half speed.
    lock: threading.Lock
    prefix: PrefixCache = field(default_factory=PrefixCache)


class _EventStop(StoppingCriteria):
    """Ends generation at the next decode step once any of ``events`` is set."""

    def __init__(self, *events: threading.Event | None) -> None:
        self._events = [event for event in events if event is not None]

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor | None, **kwargs: Any
    ) -> torch.BoolTensor:
        stop = any(event.is_set() for event in self._events)
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool)  # type: ignore[return-value]


class _StopStringFilter:
    """Cuts streamed text at the first stop string, which is never emitted.

    Text that could be the start of a stop string split across chunks is held back until the
    next chunk shows whether it is one.
    """

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = tuple(stop for stop in stops if stop)
        self._pending = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """Add ``text``; return what can be emitted now (sets ``stopped`` at a stop string)."""
        buffer = self._pending + text
        cut = min((i for i in (buffer.find(stop) for stop in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self._pending = ""
            self.stopped = True
            return buffer[:cut]
        hold = max(
            (k for stop in self._stops for k in range(1, len(stop)) if buffer.endswith(stop[:k])),
            default=0,
        )
        self._pending = buffer[len(buffer) - hold :]
        return buffer[: len(buffer) - hold]

    def flush(self) -> str:
        """What was held back, once generation has ended without a stop string."""
        text, self._pending = self._pending, ""
        return text


class TransformersBackend:
    """Streams completions from a local causal LM (``backend="transformers"``).

    ``threads`` sets torch's intra-op thread count, which is process-wide. ``context_tokens``
    is an upper bound: the model's own ``max_position_embeddings`` wins when smaller. Nothing
    is loaded until the first ``stream``/``count_tokens``/``load`` call. ``prefix_cache``:
    keep the key/value cache of ``request.prefix`` (the instructions every prompt starts with)
    instead of reading it again (:class:`PrefixCache`).
    """

    _cache: ClassVar[dict[tuple[str, str, str], LoadedModel]] = {}
    _cache_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        *,
        model_path: str,
        device: str = "cpu",
        dtype: str = "auto",
        threads: int | None = None,
        context_tokens: int = 32768,
        model_name: str = "",
        prefix_cache: bool = True,
    ) -> None:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype in ("quantized", "q8_0"):
            raise ValueError(
                f"precision {dtype!r} is for the llama.cpp engine; transformers runs the "
                "de-quantised weights in bfloat16 or float32 (or auto)"
            )
        # auto: bf16 only where the hardware computes it natively (emulated bf16 is 5-6x slower).
        self.dtype_choice = dtype_resolve(dtype, device=device)
        self.requested_dtype = dtype
        dtype = self.dtype_choice.dtype
        if dtype not in _DTYPES:
            raise ValueError(f"unsupported dtype {dtype!r}; expected one of {sorted(_DTYPES)}")
        self.model_path = Path(model_path).expanduser().resolve()
        self.device = device
        self.dtype = dtype
        self.threads = threads
        self.prefix_cache = prefix_cache
        config = read_json_object(self.model_path / "config.json")
        model_limit = config.get("max_position_embeddings")
        if isinstance(model_limit, int) and model_limit > 0:
            context_tokens = min(context_tokens, model_limit)
        manifest = read_json_object(self.model_path / "install.json")
        sha256 = str(manifest.get("sha256", ""))
        self.info = ModelInfo(
            backend="transformers",
            model=model_name or self.model_path.name,
            version=sha256[:12],
            context_tokens=context_tokens,
            extra={"device": device, "dtype": dtype, "sha256": sha256},
        )

    def load(self) -> LoadedModel:
        """Load (once per process) and return the model; raise BackendUnavailable if it can't."""
        key = (str(self.model_path), self.device, self.dtype)
        with self._cache_lock:
            loaded = self._cache.get(key)
            if loaded is None:
                loaded = self._cache[key] = self._load_uncached()
        return loaded

    def _load_uncached(self) -> LoadedModel:
        if not (self.model_path / "config.json").is_file():
            raise BackendUnavailable(
                f"no safetensors model installed at {self.model_path}: run `make models "
                "MODEL_FORMATS=gguf,safetensors` (scripts/install_models.py) to install the "
                "embedded model for the transformers engine"
            )
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        started = time.perf_counter()
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(self.model_path))
            model = AutoModelForCausalLM.from_pretrained(
                str(self.model_path), dtype=_DTYPES[self.dtype], device_map=self.device
            )
        except (OSError, ValueError, RuntimeError) as error:
            raise BackendUnavailable(
                f"cannot load the model at {self.model_path} ({error}); reinstall it with "
                "`make models`"
            ) from error
        logger.info(
            "loaded %s on %s (%s, %d threads) in %.1f s",
            self.model_path.name,
            self.device,
            self.dtype,
            torch.get_num_threads(),
            time.perf_counter() - started,
        )
        dtype_log_once("embedded model", self.requested_dtype, self.dtype_choice)
        return LoadedModel(model=model, tokenizer=tokenizer, lock=threading.Lock())

    def count_tokens(self, text: str) -> int:
        """Number of tokens ``text`` takes, counted exactly as ``stream`` tokenizes a prompt."""
        return len(self.load().tokenizer(text)["input_ids"])

    def control_tokens(self) -> tuple[str, ...]:
        """The tokenizer's special tokens, for prompts to neutralise in untrusted text.

        ``stream`` lets the tokenizer parse special tokens in the prompt (the template needs
        them), so every one it knows must be broken where a passage or question carries it.
        """
        return tokenizer_control_tokens(self.load().tokenizer)

    def stream(
        self, request: GenerationRequest, cancel: threading.Event | None = None
    ) -> Iterator[str]:
        """Yield the completion of ``request.prompt`` (already formatted) in text chunks.

        Greedy when ``temperature`` is 0. Ends at ``max_tokens``, at end-of-sequence, or before
        the first stop string. Raises Cancelled once ``cancel`` is set, ContextOverflow when the
        prompt plus ``max_tokens`` exceeds the context, BackendUnavailable without a model.
        """
        loaded = self.load()
        inputs = loaded.tokenizer(request.prompt, return_tensors="pt").to(self.device)
        prompt_tokens = int(inputs["input_ids"].shape[1])
        if prompt_tokens + request.max_tokens > self.info.context_tokens:
            raise ContextOverflow(
                f"prompt ({prompt_tokens} tokens) + max_tokens ({request.max_tokens}) exceeds the "
                f"context of {self.info.context_tokens} tokens"
            )
        if request.max_tokens <= 0:
            return
        prefix_ids: list[int] = []
        if self.prefix_cache and request.prefix and request.prompt.startswith(request.prefix):
            prefix_ids = list(loaded.tokenizer(request.prefix)["input_ids"])

        # 1. Generate in a thread; the streamer hands decoded text back through a queue.
        halt = threading.Event()  # set when this iterator is done, for whatever reason
        streamer = TextIteratorStreamer(
            loaded.tokenizer,
            skip_prompt=True,
            timeout=_POLL_S,
            skip_special_tokens=True,
        )
        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": request.temperature}
            if request.temperature > 0
            else {"do_sample": False}
        )
        generate_kwargs: dict[str, Any] = {
            **inputs,
            **sampling,
            "max_new_tokens": request.max_tokens,
            "streamer": streamer,
            "stopping_criteria": StoppingCriteriaList([_EventStop(halt, cancel)]),
            "pad_token_id": loaded.tokenizer.pad_token_id,
        }
        failures: list[BaseException] = []
        thread = threading.Thread(
            target=self._generate,
            args=(loaded, generate_kwargs, streamer, failures, prefix_ids, halt, cancel),
            name=f"transformers-generate-{request.request_id or id(halt)}",
            daemon=True,
        )
        thread.start()

        # 2. Pass text through the stop-string filter, watching for a cancel between chunks.
        stops = _StopStringFilter(request.stop)
        try:
            while not stops.stopped:
                if cancel is not None and cancel.is_set():
                    raise Cancelled("generation cancelled by the caller")
                try:
                    chunk = next(streamer)
                except queue.Empty:
                    continue
                except StopIteration:
                    break
                if text := stops.feed(chunk):
                    yield text
            if failures:
                raise BackendError(f"generation failed: {failures[0]!r}") from failures[0]
            if cancel is not None and cancel.is_set():
                raise Cancelled("generation cancelled by the caller")
            if tail := stops.flush():
                yield tail
        finally:
            # 3. Also reached when the caller abandons the iterator: stop the thread either way.
            halt.set()
            thread.join(_JOIN_S)

    @staticmethod
    def _generate(
        loaded: LoadedModel,
        generate_kwargs: dict[str, Any],
        streamer: TextIteratorStreamer,
        failures: list[BaseException],
        prefix_ids: list[int],
        *events: threading.Event | None,
    ) -> None:
        """Thread body: wait for the model, generate, and always end the streamer's queue."""
        watched = [event for event in events if event is not None]
        try:
            while not loaded.lock.acquire(timeout=_POLL_S):
                if any(event.is_set() for event in watched):
                    streamer.text_queue.put(streamer.stop_signal)
                    return
            try:
                if prefix_ids:
                    ids = [int(i) for i in generate_kwargs["input_ids"][0]]
                    cache = loaded.prefix.for_prompt(loaded.model, prefix_ids, ids)
                    if cache is not None:
                        generate_kwargs = {**generate_kwargs, "cache": cache}
                loaded.model.generate(**generate_kwargs)  # type: ignore[operator]
            finally:
                loaded.lock.release()
        except BaseException as error:  # reported to the consumer, which re-raises it
            failures.append(error)
            streamer.text_queue.put(streamer.stop_signal)
