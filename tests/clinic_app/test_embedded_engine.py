"""Which in-process engine the app picks (INFERENCE_BACKEND=embedded), and why."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import override_settings

from clinic_app import runtime
from inference.backends.llamacpp_backend import LlamaCppBackend
from inference.backends.transformers_backend import TransformersBackend


@pytest.fixture(autouse=True)
def fresh_backend() -> Iterator[None]:
    runtime.get_backend.cache_clear()
    yield
    runtime.get_backend.cache_clear()


def test_default_is_llama_cpp_on_the_installed_gguf() -> None:
    engine, why = runtime.embedded_engine()
    assert engine == "llamacpp", why
    backend = runtime.get_backend()
    assert isinstance(backend, LlamaCppBackend)
    assert backend.info.backend == "llamacpp"


def test_without_the_gguf_the_transformers_engine_is_used_and_the_reason_given(
    tmp_path: Path,
) -> None:
    (tmp_path / "qwen2.5-coder-0.5b-instruct").mkdir()
    with override_settings(MODELS_DIR=tmp_path):
        engine, why = runtime.embedded_engine()
        assert engine == "transformers"
        assert "model.gguf" in why and "make models" in why
        assert isinstance(runtime.get_backend(), TransformersBackend)


def test_without_llama_cpp_installed_the_transformers_engine_is_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real(name)
    )
    engine, why = runtime.embedded_engine()
    assert engine == "transformers"
    assert "llama-cpp-python is not installed" in why


@pytest.mark.parametrize("name", ["transformers", "llamacpp"])
def test_an_explicit_engine_wins(name: str) -> None:
    with override_settings(INFERENCE_BACKEND=name):
        assert runtime.embedded_engine() == (name, "set by INFERENCE_BACKEND")
        assert runtime.get_backend().info.backend == name


def test_quantized_precision_is_refused_by_transformers_with_the_reason() -> None:
    with (
        override_settings(INFERENCE_BACKEND="transformers", EMBEDDED_MODEL_DTYPE="quantized"),
        pytest.raises(ValueError, match=r"llama\.cpp engine"),
    ):
        runtime.get_backend()
