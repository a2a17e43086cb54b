"""inference.calibrate: the engine closest to both latency targets for a typical answer is chosen."""

from __future__ import annotations

import pytest

from inference.calibrate import (
    EXCERPT_ANSWER_TOKENS,
    TARGET_ANSWER_S,
    EngineRates,
    engine_choose,
    machine_fingerprint,
)


def rates(engine: str, prompt: float, decode: float) -> EngineRates:
    return EngineRates(engine, "x", prompt_tokens_per_s=prompt, decode_tokens_per_s=decode)


def test_projection_adds_reading_the_prompt_and_writing_the_answer() -> None:
    r = rates("a", 100.0, 10.0)
    assert r.projected_s(prompt_tokens=1000, answer_tokens=50) == pytest.approx(15.0)


def test_the_choice_weighs_prompt_and_answer_speed_together() -> None:
    # Measured on a 2-core AVX2 CPU (docs/performance.md): torch reads prompts faster,
    # llama.cpp writes tokens faster; for a typical prompt and answer torch wins there...
    torch_like = rates("transformers", 75.4, 4.77)
    llama_like = rates("llamacpp", 46.3, 18.2)
    assert engine_choose([llama_like, torch_like]).engine == "transformers"
    # ...and llama.cpp would for long answers.
    assert llama_like.projected_s(answer_tokens=320) < torch_like.projected_s(answer_tokens=320)
    # With AVX512-BF16 llama.cpp in bf16 is faster at both.
    assert (
        engine_choose([rates("llamacpp", 350.0, 25.6), rates("transformers", 163.0, 7.4)]).engine
        == "llamacpp"
    )


def test_the_choice_meets_more_targets_then_comes_closest_to_both() -> None:
    fast_first_slow_writing = rates("a", 200.0, 2.0)  # first token 1.9 s, answer 24.4 s
    balanced = rates("b", 100.0, 10.0)  # first token 3.7 s, answer 8.2 s
    prompt = 370
    assert fast_first_slow_writing.first_token_s(prompt) < balanced.first_token_s(prompt)
    assert fast_first_slow_writing.target_ratio(prompt) == pytest.approx(24.35 / 15.0)
    assert balanced.target_ratio(prompt) == pytest.approx(3.7 / 3.0)
    assert engine_choose([fast_first_slow_writing, balanced], prompt_tokens=prompt).engine == "b"
    # Both targets met by both: the one with the more room left.
    assert engine_choose([rates("a", 1000.0, 50.0), rates("b", 2000.0, 60.0)]).engine == "b"
    # Measured on the AVX2 machine (2026-12-04), excerpt prompt: torch's first token is sooner
    # (5.9 vs 9.0 s) but its answer misses 15 s (19.5 s); llama.cpp's meets it (11.7 s).
    torch_like, llama_like = rates("transformers", 63.0, 3.3), rates("llamacpp", 41.0, 17.0)
    assert torch_like.target_ratio(prompt) < llama_like.target_ratio(prompt)
    assert engine_choose([llama_like, torch_like], prompt_tokens=prompt).engine == "llamacpp"


def test_the_typical_answer_length_decides_between_a_fast_reader_and_a_fast_writer() -> None:
    """Measured on the AVX2 machine (2026-12-04, calibrate_engine): torch float32 reads 75
    tokens/s and writes 4.8, llama.cpp's Q8_0 copy 53 and 19.5. For a 45-token answer (the median
    with whole passages) both meet only the 15 s target and torch's first token is sooner, so
    torch was chosen; excerpt prompts draw answers of about 90 tokens (bench/answer_latency.py:
    torch 27 s per answer at the median, llama.cpp 13-14 s), which only llama.cpp writes in 15 s."""
    torch_like = rates("transformers", 74.6, 4.8)
    llama_like = rates("llamacpp", 53.4, 19.5)
    prompt = 370
    assert engine_choose([llama_like, torch_like], prompt_tokens=prompt).engine == "transformers"
    assert torch_like.projected_s(prompt, EXCERPT_ANSWER_TOKENS) > TARGET_ANSWER_S
    assert llama_like.projected_s(prompt, EXCERPT_ANSWER_TOKENS) <= TARGET_ANSWER_S
    chosen = engine_choose(
        [llama_like, torch_like], prompt_tokens=prompt, answer_tokens=EXCERPT_ANSWER_TOKENS
    )
    assert chosen.engine == "llamacpp"


def test_nothing_measured_is_an_error() -> None:
    with pytest.raises(ValueError):
        engine_choose([])


def test_the_machine_fingerprint_changes_with_versions() -> None:
    assert machine_fingerprint("torch==1") == machine_fingerprint("torch==1")
    assert machine_fingerprint("torch==1") != machine_fingerprint("torch==2")
