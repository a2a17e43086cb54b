"""The llama.cpp backend (the embedded default's engine), run for real on the installed GGUF."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from inference.backends import load_backend
from inference.backends.base import Backend
from inference.backends.llamacpp_backend import (
    Q8_0,
    QUANTIZED,
    SHIPPED_GGUF,
    LlamaCppBackend,
    auto_candidates,
    gguf_precision,
    gguf_variant,
)
from inference.errors import BackendUnavailable, Cancelled, ContextOverflow
from inference.sanitize import tokenizer_control_tokens
from inference.types import GenerationRequest
from retrieval import hardware

ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = (
    Path(os.environ.get("MODELS_DIR", ROOT / "var" / "models")) / "qwen2.5-coder-0.5b-instruct"
)
PROMPT = (
    "<|im_start|>system\nYou are a concise clinical assistant.<|im_end|>\n"
    "<|im_start|>user\nList three common symptoms of iron-deficiency anaemia.<|im_end|>\n"
    "<|im_start|>assistant\n"
)
MAX_TOKENS = 24


@pytest.fixture(scope="session")
def backend() -> LlamaCppBackend:
    """The installed 0.5B GGUF at the machine's precision, loaded once for the whole run."""
    if not (MODEL_DIR / SHIPPED_GGUF).is_file():
        pytest.fail(f"the embedded GGUF is not installed at {MODEL_DIR}: run `make models` first")
    backend = LlamaCppBackend(model_path=str(MODEL_DIR), model_name="qwen2.5-coder-0.5b")
    backend.load()
    return backend


@pytest.fixture(scope="session")
def greedy_chunks(backend: LlamaCppBackend) -> list[str]:
    return list(backend.stream(GenerationRequest(prompt=PROMPT, max_tokens=MAX_TOKENS)))


def test_backend_satisfies_the_protocol_and_is_built_by_name(backend: LlamaCppBackend) -> None:
    built = load_backend("llamacpp", model_path=str(MODEL_DIR))
    assert isinstance(built, Backend)
    assert isinstance(built, LlamaCppBackend)
    assert built.load() is backend.load(), "instances on the same file share one loaded copy"


def test_info_names_the_engine_model_version_and_precision(backend: LlamaCppBackend) -> None:
    assert backend.info.backend == "llamacpp"
    assert backend.info.model == "qwen2.5-coder-0.5b"
    assert backend.info.version == "1d9614638d18"
    assert backend.info.context_tokens == 8192
    assert backend.info.extra["dtype"] == backend.dtype_choice.dtype
    assert backend.info.extra["engine"] == "llama.cpp"


def test_auto_precision_is_bf16_only_where_the_cpu_has_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hardware, "cpu_native_bf16", lambda: (True, "test: AMX"))
    assert gguf_precision("auto").dtype == "bfloat16"
    monkeypatch.setattr(hardware, "cpu_native_bf16", lambda: (False, "test: AVX2 only"))
    choice = gguf_precision("auto")
    assert choice.dtype == QUANTIZED
    assert "AVX2 only" in choice.reason
    assert gguf_precision("float32").dtype == "float32", "an explicit value wins"
    assert gguf_precision("quantized").dtype == QUANTIZED
    with pytest.raises(ValueError, match="unsupported precision"):
        gguf_precision("int3")


def test_bf16_variant_is_converted_once_and_reused(tmp_path: Path) -> None:
    (tmp_path / SHIPPED_GGUF).symlink_to(MODEL_DIR / SHIPPED_GGUF)
    assert gguf_variant(tmp_path, QUANTIZED) == tmp_path / SHIPPED_GGUF
    converted = gguf_variant(tmp_path, "bfloat16")
    assert converted.name == "model-bf16.gguf"
    assert converted.stat().st_size > (MODEL_DIR / SHIPPED_GGUF).stat().st_size * 2
    stamp = converted.stat().st_mtime_ns
    assert gguf_variant(tmp_path, "bfloat16").stat().st_mtime_ns == stamp, "not converted twice"
    assert not list(tmp_path.glob(".*.tmp")), "no scratch file left behind"
    bf16 = LlamaCppBackend(model_path=str(tmp_path), dtype="bfloat16")
    text = "".join(bf16.stream(GenerationRequest(prompt=PROMPT, max_tokens=6)))
    assert text.strip()


def test_auto_is_measured_between_the_integer_files_and_native_bf16_where_there_is_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hardware, "cpu_native_bf16", lambda: (False, "test: AVX2 only"))
    assert auto_candidates() == (QUANTIZED, Q8_0)
    monkeypatch.setattr(hardware, "cpu_native_bf16", lambda: (True, "test: AMX"))
    # Native bf16 reads prompts fastest but may write slower than the integer files: measured.
    assert auto_candidates() == ("bfloat16", QUANTIZED, Q8_0)
    assert gguf_precision(Q8_0).dtype == Q8_0, "an explicit value wins"


# A guideline-like paragraph: the text the model reads in a grounded prompt.
GUIDELINE_TEXT = (
    "In adults with sepsis or septic shock, we recommend administering antimicrobials "
    "immediately, ideally within one hour of recognition. For adults with sepsis-induced "
    "hypoperfusion or septic shock, we suggest that at least 30 mL/kg of intravenous "
    "crystalloid fluid should be given within the first three hours of resuscitation. For "
    "adults with septic shock on vasopressors, we recommend an initial target mean arterial "
    "pressure of 65 mmHg over higher mean arterial pressure targets. We suggest using "
    "norepinephrine as the first-line agent over other vasopressors. For adults with septic "
    "shock and an ongoing requirement for vasopressor therapy, we suggest using intravenous "
    "corticosteroids. Patients with chronic kidney disease and an eGFR below 30 mL/min/1.73 m2 "
    "should be referred to a nephrologist, and metformin should not be started."
)


def _next_token_log_probs(path: Path, tokens: list[int]) -> Any:
    """log p(token i+1 | tokens up to i) at every position of ``tokens``, read by ``path``."""
    import llama_cpp
    import numpy as np

    llm = llama_cpp.Llama(
        model_path=str(path),
        n_ctx=512,
        n_threads=os.cpu_count() or 1,
        logits_all=True,
        verbose=False,
    )
    try:
        llm.eval(tokens)
        scores = np.array(llm.scores[: len(tokens)], dtype=np.float64)
    finally:
        llm.close()
    top = scores.max(axis=1, keepdims=True)
    log_probs = scores - top - np.log(np.exp(scores - top).sum(axis=1, keepdims=True))
    return log_probs[np.arange(len(tokens) - 1), tokens[1:]], scores.argmax(axis=1)


def test_the_q8_0_copy_reads_guideline_text_as_the_shipped_file_does(
    backend: LlamaCppBackend,
) -> None:
    """Q8_0 re-stores the shipped 4/6-bit values: perplexity within 1%, the same most likely
    next token almost everywhere. A lossy conversion (Q4_0 from the shipped file: +15%
    perplexity on guideline text) would fail this."""
    import math

    tokens = backend._tokenize(backend.load(), GUIDELINE_TEXT)
    shipped, shipped_top = _next_token_log_probs(MODEL_DIR / SHIPPED_GGUF, tokens)
    copy_path = gguf_variant(MODEL_DIR, Q8_0)
    assert copy_path.name == "model-q8_0.gguf"
    copy, copy_top = _next_token_log_probs(copy_path, tokens)
    ratio = math.exp(-copy.mean()) / math.exp(-shipped.mean())
    assert 0.99 <= ratio <= 1.01, f"perplexity ratio q8_0 / shipped {ratio:.4f}"
    assert (shipped_top == copy_top).mean() >= 0.95


def test_stream_yields_text_in_several_chunks(greedy_chunks: list[str]) -> None:
    assert len(greedy_chunks) >= 3
    assert all(greedy_chunks)
    assert "".join(greedy_chunks).strip()


def test_greedy_generation_is_deterministic(
    backend: LlamaCppBackend, greedy_chunks: list[str]
) -> None:
    again = "".join(backend.stream(GenerationRequest(prompt=PROMPT, max_tokens=MAX_TOKENS)))
    assert again == "".join(greedy_chunks)


def test_concurrent_streams_on_the_shared_model_both_complete(
    backend: LlamaCppBackend, greedy_chunks: list[str]
) -> None:
    results: dict[int, str] = {}

    def ask(i: int) -> None:
        request = GenerationRequest(prompt=PROMPT, max_tokens=8, request_id=f"concurrent-{i}")
        results[i] = "".join(backend.stream(request))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results[0] == results[1]
    assert results[0] and "".join(greedy_chunks).startswith(results[0])


def test_sampling_with_a_temperature_honours_max_tokens(backend: LlamaCppBackend) -> None:
    request = GenerationRequest(prompt=PROMPT, max_tokens=6, temperature=0.8)
    text = "".join(backend.stream(request))
    assert text
    assert backend.count_tokens(text) <= 6 + 1  # re-tokenizing may merge differently by one


def test_stop_string_ends_output_and_is_not_emitted(
    backend: LlamaCppBackend, greedy_chunks: list[str]
) -> None:
    full = "".join(greedy_chunks)
    # A stop string straddling two chunks: the engine must hold back its first half.
    stop = greedy_chunks[1][-2:] + greedy_chunks[2][:2]
    request = GenerationRequest(prompt=PROMPT, max_tokens=MAX_TOKENS, stop=("@@never@@", stop))
    text = "".join(backend.stream(request))
    assert stop not in text
    assert text == full[: full.index(stop)]


def test_cancel_mid_stream_raises_cancelled_promptly_and_frees_the_model(
    backend: LlamaCppBackend,
) -> None:
    cancel = threading.Event()
    chunks = []
    with pytest.raises(Cancelled):
        for chunk in backend.stream(GenerationRequest(prompt=PROMPT, max_tokens=400), cancel):
            chunks.append(chunk)
            if len(chunks) == 2:
                cancel.set()
                cancelled_at = time.perf_counter()
    assert time.perf_counter() - cancelled_at < 5.0
    assert len(chunks) == 2
    assert not backend.load().lock.locked()


def test_cancel_while_waiting_for_the_model_raises_without_generating(
    backend: LlamaCppBackend,
) -> None:
    cancel = threading.Event()
    lock = backend.load().lock
    lock.acquire()
    try:
        threading.Timer(0.2, cancel.set).start()
        with pytest.raises(Cancelled):
            list(backend.stream(GenerationRequest(prompt=PROMPT, max_tokens=4), cancel))
    finally:
        lock.release()


def test_abandoning_a_stream_frees_the_model_for_the_next(backend: LlamaCppBackend) -> None:
    stream = backend.stream(GenerationRequest(prompt=PROMPT, max_tokens=400))
    next(stream)
    assert backend.load().lock.locked()
    stream.close()  # what happens when a consumer stops iterating early
    assert not backend.load().lock.locked()
    assert "".join(backend.stream(GenerationRequest(prompt=PROMPT, max_tokens=4)))


def test_counting_tokens_does_not_wait_for_a_running_generation(
    backend: LlamaCppBackend,
) -> None:
    lock = backend.load().lock
    counted: list[int] = []
    lock.acquire()  # as while another clinician's answer is being written
    try:
        counter = threading.Thread(target=lambda: counted.append(backend.count_tokens(PROMPT)))
        counter.start()
        counter.join(30)  # waiting for the lock would never end: the lock is held throughout
        assert not counter.is_alive() and counted and counted[0] > 10
    finally:
        lock.release()


def test_prompt_that_does_not_fit_the_context_is_refused(backend: LlamaCppBackend) -> None:
    narrow = LlamaCppBackend(model_path=str(MODEL_DIR), context_tokens=64)
    with pytest.raises(ContextOverflow, match="64 tokens"):
        list(narrow.stream(GenerationRequest(prompt=PROMPT, max_tokens=64)))


def test_missing_model_is_unavailable_and_says_to_run_make_models(tmp_path: Path) -> None:
    missing = LlamaCppBackend(model_path=str(tmp_path / "no-such-model"))
    assert missing.info.model == "no-such-model"
    with pytest.raises(BackendUnavailable, match="make models"):
        list(missing.stream(GenerationRequest(prompt="hello")))
    with pytest.raises(BackendUnavailable, match="no-such-model"):
        missing.count_tokens("hello")


def test_count_tokens_and_control_tokens_match_the_published_tokenizer(
    backend: LlamaCppBackend,
) -> None:
    from transformers import AutoTokenizer

    if not (MODEL_DIR / "tokenizer.json").is_file():
        pytest.fail("run `make models MODEL_FORMATS=gguf,safetensors` for the tokenizer files")
    tokenizer = AutoTokenizer.from_pretrained(str(MODEL_DIR))
    for text in (PROMPT, "Metformin 500 mg twice daily", "", "électrolytes · 5 µg/kg"):
        assert backend.count_tokens(text) == len(tokenizer.encode(text)), text
    assert backend.count_tokens("<|im_start|>") == 1, "ChatML markers are single special tokens"
    controls = set(backend.control_tokens())
    assert {"<|im_start|>", "<|im_end|>", "<|endoftext|>"} <= controls
    assert set(tokenizer_control_tokens(tokenizer)) <= controls


PREFIX = "<|im_start|>system\nYou are a concise clinical assistant.<|im_end|>\n"


def test_a_fixed_prefix_is_read_once_and_gives_the_same_answer_whatever_came_before(
    backend: LlamaCppBackend,
) -> None:
    """The instructions stay in the context, read alone; output depends on the prompt only."""
    other = PREFIX + "<|im_start|>user\nName one loop diuretic.<|im_end|>\n<|im_start|>assistant\n"
    similar = PROMPT.replace("three common symptoms", "three rare causes")
    assert PROMPT.startswith(PREFIX) and similar.startswith(PREFIX)
    loaded = backend.load()
    request = GenerationRequest(prompt=PROMPT, max_tokens=MAX_TOKENS, prefix=PREFIX)
    first = "".join(backend.stream(request))
    prefix_tokens = loaded.llm.tokenize(PREFIX.encode(), add_bos=True, special=True)
    assert loaded.prefix == [prefix_tokens]
    # A prompt sharing more than the prefix with the last one reuses the prefix only.
    for prompt in (other, similar):
        "".join(backend.stream(GenerationRequest(prompt=prompt, max_tokens=6, prefix=PREFIX)))
        assert loaded.prefix == [prefix_tokens]
    assert "".join(backend.stream(request)) == first
    # A prompt without the prefix starts from an empty context and forgets it.
    "".join(backend.stream(GenerationRequest(prompt=PROMPT, max_tokens=4)))
    assert loaded.prefix == []
    assert "".join(backend.stream(request)) == first
