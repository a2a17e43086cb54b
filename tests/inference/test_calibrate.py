"""inference.calibrate: the engine with the shortest projected typical answer is chosen."""

from __future__ import annotations

import pytest

from inference.calibrate import EngineRates, engine_choose, machine_fingerprint


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


def test_nothing_measured_is_an_error() -> None:
    with pytest.raises(ValueError):
        engine_choose([])


def test_the_machine_fingerprint_changes_with_versions() -> None:
    assert machine_fingerprint("torch==1") == machine_fingerprint("torch==1")
    assert machine_fingerprint("torch==1") != machine_fingerprint("torch==2")
