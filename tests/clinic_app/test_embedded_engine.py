"""Which in-process engine the app picks (INFERENCE_BACKEND=embedded), and why."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import override_settings

from clinic_app.core import runtime
from inference.backends.llamacpp_backend import (
    QUANTIZED,
    LlamaCppBackend,
    auto_candidates,
    gguf_variant,
)
from inference.backends.transformers_backend import TransformersBackend

# About which engine runs the model: the configured backend, never the scripted one.
pytestmark = pytest.mark.real_model


@pytest.fixture(autouse=True)
def fresh_backend() -> Iterator[None]:
    runtime.get_backend.cache_clear()
    yield
    runtime.get_backend.cache_clear()


def test_default_is_the_engine_measured_here_else_llama_cpp_on_the_installed_gguf() -> None:
    engine, why = runtime.embedded_engine()
    record = runtime.engine_choice_read()
    assert engine == (record["engine"] if record else "llamacpp"), why
    assert runtime.get_backend().info.backend == engine


@pytest.fixture
def scratch_models(tmp_path: Path) -> Iterator[Path]:
    """The installed model, linked file by file into a folder of its own (a scratch record)."""
    from django.conf import settings

    real = Path(settings.MODELS_DIR) / settings.EMBEDDED_MODEL
    for precision in auto_candidates():  # converted copies: once, beside the installed model
        gguf_variant(real, precision)
    linked = tmp_path / settings.EMBEDDED_MODEL
    linked.mkdir()
    for path in real.iterdir():
        if path.is_file() and path.name != "engine-choice.json":
            (linked / path.name).symlink_to(path)
    with override_settings(MODELS_DIR=tmp_path):
        yield linked


def test_calibrate_engine_measures_both_engines_and_embedded_follows_it(
    scratch_models: Path,
) -> None:
    import json

    from django.core.management import call_command

    from inference.calibrate import EngineRates, engine_choose

    assert runtime.embedded_engine()[0] == "llamacpp"  # not measured yet
    call_command("calibrate_engine", "--prompt-tokens", "64", "--new-tokens", "6")
    record = json.loads((scratch_models / "engine-choice.json").read_text())
    assert {r["engine"] for r in record["rates"]} == {"llamacpp", "transformers"}
    # llama.cpp in every precision `auto` may stand for on this CPU, measured side by side.
    assert [r["precision"] for r in record["rates"] if r["engine"] == "llamacpp"] == list(
        auto_candidates()
    )
    assert all(
        r["prompt_tokens_per_s"] > 0 and r["decode_tokens_per_s"] > 0 for r in record["rates"]
    )
    assert record["engine"] in {r["engine"] for r in record["rates"]}
    chosen = engine_choose(
        [
            EngineRates(**{k: r[k] for k in EngineRates.__dataclass_fields__})
            for r in record["rates"]
        ],
        prompt_tokens=record["rates"][0]["typical_prompt_tokens"],
        answer_tokens=record["rates"][0]["typical_answer_tokens"],
    )
    assert (record["engine"], record["precision"]) == (chosen.engine, chosen.precision)
    assert runtime.embedded_precision(record["engine"]) == record["precision"]
    assert runtime.get_backend().info.extra["dtype"] == record["precision"]
    engine, why = runtime.embedded_engine()
    assert engine == record["engine"] and "measured faster on this machine" in why
    # Measured already: --if-needed leaves the record alone.
    call_command("calibrate_engine", "--if-needed")
    assert json.loads((scratch_models / "engine-choice.json").read_text()) == record


def test_a_choice_measured_elsewhere_or_with_other_versions_is_not_followed(
    scratch_models: Path,
) -> None:
    import json

    (scratch_models / "engine-choice.json").write_text(
        json.dumps({"key": "another machine", "engine": "transformers", "rates": []})
    )
    assert runtime.engine_choice_read() is None
    assert runtime.embedded_engine()[0] == "llamacpp"
    (scratch_models / "engine-choice.json").write_text(
        json.dumps({"key": runtime.engine_choice_key(), "engine": "transformers", "rates": []})
    )
    assert runtime.embedded_engine()[0] == "transformers"


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


@pytest.mark.parametrize("precision", ["quantized", "q8_0"])
def test_llama_cpp_precisions_are_refused_by_transformers_with_the_reason(precision: str) -> None:
    with (
        override_settings(INFERENCE_BACKEND="transformers", EMBEDDED_MODEL_DTYPE=precision),
        pytest.raises(ValueError, match=r"llama\.cpp engine"),
    ):
        runtime.get_backend()


def test_a_transformers_fallback_switches_to_llama_cpp_once_it_is_installed(
    monkeypatch: pytest.MonkeyPatch, scratch_models: Path
) -> None:
    # `make run` on a machine that never built llama.cpp serves on transformers while it builds.
    real = importlib.util.find_spec
    missing = {"llama_cpp"}
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in missing else real(name)
    )
    monkeypatch.setattr(runtime.get_backend, "UPGRADE_CHECK_S", 0.0)
    first = runtime.get_backend()
    assert isinstance(first, TransformersBackend)
    assert runtime.get_backend() is first  # still building: the same engine, not a new one
    missing.clear()  # the background build has installed the package
    upgraded = runtime.get_backend()
    assert isinstance(upgraded, LlamaCppBackend)
    assert runtime.get_backend() is upgraded


def test_a_half_installed_llama_cpp_keeps_the_app_on_transformers(
    monkeypatch: pytest.MonkeyPatch, scratch_models: Path
) -> None:
    real_find, real_build = importlib.util.find_spec, runtime._backend_build
    missing = {"llama_cpp"}
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in missing else real_find(name)
    )
    monkeypatch.setattr(runtime.get_backend, "UPGRADE_CHECK_S", 0.0)
    first = runtime.get_backend()
    missing.clear()

    def broken() -> object:
        if runtime.embedded_engine()[0] == "llamacpp":
            raise OSError("libllama.so: cannot open shared object file")
        return real_build()

    monkeypatch.setattr(runtime, "_backend_build", broken)
    assert runtime.get_backend() is first


def test_an_explicit_transformers_engine_is_never_switched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runtime.get_backend, "UPGRADE_CHECK_S", 0.0)
    with override_settings(INFERENCE_BACKEND="transformers"):
        first = runtime.get_backend()
        assert runtime.get_backend() is first


def test_an_unmeasured_default_follows_the_measurement_when_it_arrives(
    monkeypatch: pytest.MonkeyPatch, scratch_models: Path
) -> None:
    import json

    monkeypatch.setattr(runtime.get_backend, "UPGRADE_CHECK_S", 0.0)
    first = runtime.get_backend()
    assert isinstance(first, LlamaCppBackend)  # not measured yet: llama.cpp
    (scratch_models / "engine-choice.json").write_text(
        json.dumps({"key": runtime.engine_choice_key(), "engine": "transformers", "rates": []})
    )
    measured = runtime.get_backend()
    assert isinstance(measured, TransformersBackend)
    assert runtime.get_backend() is measured  # settled: no more looking


def test_auto_precision_follows_the_measured_one_and_an_explicit_precision_wins(
    monkeypatch: pytest.MonkeyPatch, scratch_models: Path
) -> None:
    import json

    monkeypatch.setattr(runtime.get_backend, "UPGRADE_CHECK_S", 0.0)
    first = runtime.get_backend()
    assert first.info.extra["dtype"] == auto_candidates()[0]  # not measured yet
    (scratch_models / "engine-choice.json").write_text(
        json.dumps(
            {
                "key": runtime.engine_choice_key(),
                "engine": "llamacpp",
                "precision": "q8_0",
                "rates": [],
            }
        )
    )
    measured = runtime.get_backend()
    assert measured is not first, "the measurement arrived: the process follows it"
    assert (measured.info.backend, measured.info.extra["dtype"]) == ("llamacpp", "q8_0")
    assert runtime.get_backend() is measured  # settled
    assert runtime.embedded_precision("transformers") == "auto", "measured for llama.cpp only"
    with override_settings(EMBEDDED_MODEL_DTYPE=QUANTIZED):
        assert runtime.embedded_precision("llamacpp") == QUANTIZED
