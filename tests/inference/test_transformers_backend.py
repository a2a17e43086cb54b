"""The embedded transformers backend, run for real on the installed Qwen2.5-Coder-0.5B model."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from inference.backends import load_backend
from inference.backends.base import Backend
from inference.backends.transformers_backend import TransformersBackend, _StopStringFilter
from inference.errors import BackendUnavailable, Cancelled, ContextOverflow
from inference.types import GenerationRequest

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
def backend() -> TransformersBackend:
    """The installed 0.5B model, loaded once for the whole run."""
    if not (MODEL_DIR / "config.json").is_file():
        pytest.fail(f"the embedded model is not installed at {MODEL_DIR}: run `make models` first")
    backend = TransformersBackend(model_path=str(MODEL_DIR), model_name="qwen2.5-coder-0.5b")
    backend.load()
    return backend


@pytest.fixture(scope="session")
def greedy_chunks(backend: TransformersBackend) -> list[str]:
    """The streamed greedy completion of PROMPT, chunk by chunk."""
    return list(backend.stream(GenerationRequest(prompt=PROMPT, max_tokens=MAX_TOKENS)))


def generator_threads(request_id: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"transformers-generate-{request_id}"]


def test_backend_satisfies_the_protocol_and_is_built_by_name(backend: TransformersBackend) -> None:
    built = load_backend("transformers", model_path=str(MODEL_DIR))
    assert isinstance(built, Backend)
    assert isinstance(built, TransformersBackend)
    assert built.load() is backend.load(), "instances on the same model share one loaded copy"


def test_info_names_the_model_and_its_installed_version(backend: TransformersBackend) -> None:
    assert backend.info.backend == "transformers"
    assert backend.info.model == "qwen2.5-coder-0.5b"
    assert backend.info.version == "1d9614638d18"
    assert backend.info.context_tokens == 32768
    narrow = TransformersBackend(model_path=str(MODEL_DIR), context_tokens=4096)
    assert narrow.info.model == "qwen2.5-coder-0.5b-instruct"
    assert narrow.info.context_tokens == 4096


def test_stream_yields_text_in_several_chunks(greedy_chunks: list[str]) -> None:
    assert len(greedy_chunks) >= 3
    assert all(greedy_chunks)
    assert "".join(greedy_chunks).strip()


def test_greedy_stream_equals_plain_generate(
    backend: TransformersBackend, greedy_chunks: list[str]
) -> None:
    loaded = backend.load()
    inputs = loaded.tokenizer(PROMPT, return_tensors="pt")
    output = loaded.model.generate(**inputs, max_new_tokens=MAX_TOKENS, do_sample=False)
    new_tokens = output[0, inputs["input_ids"].shape[1] :]
    expected = loaded.tokenizer.decode(new_tokens, skip_special_tokens=True)
    assert "".join(greedy_chunks) == expected


def test_concurrent_streams_on_the_shared_model_both_complete(
    backend: TransformersBackend, greedy_chunks: list[str]
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


def test_sampling_with_a_temperature_honours_max_tokens(backend: TransformersBackend) -> None:
    request = GenerationRequest(prompt=PROMPT, max_tokens=6, temperature=0.8)
    text = "".join(backend.stream(request))
    assert text
    assert backend.count_tokens(text) <= 6 + 1  # re-tokenizing may merge differently by one


def test_stop_string_ends_output_and_is_not_emitted(
    backend: TransformersBackend, greedy_chunks: list[str]
) -> None:
    full = "".join(greedy_chunks)
    # A stop string straddling two chunks: the backend must hold back its first half.
    stop = greedy_chunks[1][-2:] + greedy_chunks[2][:2]
    request = GenerationRequest(prompt=PROMPT, max_tokens=MAX_TOKENS, stop=("@@never@@", stop))
    text = "".join(backend.stream(request))
    assert stop not in text
    assert text == full[: full.index(stop)]


def test_stop_filter_holds_back_a_possible_prefix_and_releases_it_when_it_is_not_one() -> None:
    stops = _StopStringFilter(("###", "User:"))
    assert stops.feed("Give 5 mg #") == "Give 5 mg "
    assert stops.feed("#x daily. Us") == "##x daily. "
    assert stops.feed("er") == ""
    assert not stops.stopped
    assert stops.flush() == "User"
    split = _StopStringFilter(("###",))
    assert split.feed("Done.\n##") == "Done.\n"
    assert split.feed("# User: more") == ""
    assert split.stopped


def test_cancel_mid_stream_raises_cancelled_promptly_and_ends_the_thread(
    backend: TransformersBackend,
) -> None:
    cancel = threading.Event()
    request = GenerationRequest(prompt=PROMPT, max_tokens=400, request_id="cancel-test")
    chunks = []
    with pytest.raises(Cancelled):
        for chunk in backend.stream(request, cancel=cancel):
            chunks.append(chunk)
            if len(chunks) == 2:
                cancel.set()
                cancelled_at = time.perf_counter()
    assert time.perf_counter() - cancelled_at < 5.0  # one decode step, even on a busy CI box
    assert len(chunks) == 2
    assert not generator_threads("cancel-test")


def test_abandoning_a_stream_stops_its_generation_thread(backend: TransformersBackend) -> None:
    request = GenerationRequest(prompt=PROMPT, max_tokens=400, request_id="abandon-test")
    stream = backend.stream(request)
    next(stream)
    assert generator_threads("abandon-test")
    stream.close()  # what happens when a consumer stops iterating early
    assert not generator_threads("abandon-test")


def test_prompt_that_does_not_fit_the_context_is_refused(backend: TransformersBackend) -> None:
    narrow = TransformersBackend(model_path=str(MODEL_DIR), context_tokens=64)
    with pytest.raises(ContextOverflow, match="64 tokens"):
        list(narrow.stream(GenerationRequest(prompt=PROMPT, max_tokens=64)))


def test_missing_model_dir_is_unavailable_and_says_to_run_make_models(tmp_path: Path) -> None:
    missing = TransformersBackend(model_path=str(tmp_path / "no-such-model"))
    assert missing.info.model == "no-such-model"
    with pytest.raises(BackendUnavailable, match="make models"):
        list(missing.stream(GenerationRequest(prompt="hello")))
    with pytest.raises(BackendUnavailable, match="no-such-model"):
        missing.count_tokens("hello")


def test_count_tokens_matches_the_tokenizer(backend: TransformersBackend) -> None:
    tokenizer = backend.load().tokenizer
    for text in (PROMPT, "Metformin 500 mg twice daily", "", "électrolytes · 5 µg/kg"):
        assert backend.count_tokens(text) == len(tokenizer.encode(text))
    assert backend.count_tokens("<|im_start|>") == 1, "ChatML markers are single special tokens"


PREFIX = "<|im_start|>system\nYou are a concise clinical assistant.<|im_end|>\n"


def test_a_fixed_prefix_is_read_once_and_gives_the_same_answer_whatever_came_before(
    backend: TransformersBackend,
) -> None:
    """The instructions' key/value cache is kept and reused; output depends on the prompt only."""
    other = PREFIX + "<|im_start|>user\nName one loop diuretic.<|im_end|>\n<|im_start|>assistant\n"
    assert PROMPT.startswith(PREFIX)
    loaded = backend.load()
    request = GenerationRequest(prompt=PROMPT, max_tokens=MAX_TOKENS, prefix=PREFIX)
    first = "".join(backend.stream(request))
    kept = loaded.prefix._cache
    assert kept is not None and kept.get_seq_length() == len(loaded.tokenizer(PREFIX)["input_ids"])
    "".join(backend.stream(GenerationRequest(prompt=other, max_tokens=6, prefix=PREFIX)))
    assert loaded.prefix._cache is kept, "the same prefix is not read again"
    assert kept.get_seq_length() == len(loaded.tokenizer(PREFIX)["input_ids"]), "kept intact"
    again = "".join(backend.stream(request))
    assert again == first, "the same prompt gets the same answer after another question"
    # Close to reading the prompt whole: the same words (floating-point sums differ slightly).
    whole = "".join(backend.stream(GenerationRequest(prompt=PROMPT, max_tokens=MAX_TOKENS)))
    assert first.split()[:8] == whole.split()[:8]


def test_a_prefix_the_prompt_does_not_start_with_is_ignored(backend: TransformersBackend) -> None:
    loaded = backend.load()
    before = loaded.prefix._cache
    request = GenerationRequest(prompt=PROMPT, max_tokens=4, prefix="<|im_start|>system\nOther")
    assert "".join(backend.stream(request))
    assert loaded.prefix._cache is before
