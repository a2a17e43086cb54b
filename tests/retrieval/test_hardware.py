"""Precision by capability: bf16 only where the hardware computes it natively."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from retrieval import hardware
from retrieval.embedder import Embedder
from retrieval.hardware import dtype_resolve


@pytest.fixture
def cpu_probe(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, bool]]:
    """Make torch's CPU feature probes answer what the test says (and forget cached answers)."""
    features = {"amx": False, "avx512_bf16": False}
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: features["amx"])
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: features["avx512_bf16"])
    hardware.cpu_native_bf16.cache_clear()
    yield features
    hardware.cpu_native_bf16.cache_clear()


def test_auto_picks_float32_where_bf16_would_be_emulated(cpu_probe: dict[str, bool]) -> None:
    choice = dtype_resolve("auto", device="cpu")
    assert choice.dtype == "float32"
    assert "emulated" in choice.reason


@pytest.mark.parametrize("feature", ["amx", "avx512_bf16"])
def test_auto_picks_bfloat16_where_the_cpu_computes_it_natively(
    cpu_probe: dict[str, bool], feature: str
) -> None:
    cpu_probe[feature] = True
    choice = dtype_resolve("auto", device="cpu")
    assert choice.dtype == "bfloat16"
    assert "natively" in choice.reason


def test_auto_picks_bfloat16_on_cuda_whatever_the_cpu(cpu_probe: dict[str, bool]) -> None:
    assert dtype_resolve("auto", device="cuda:0").dtype == "bfloat16"


@pytest.mark.parametrize("explicit", ["float32", "bfloat16"])
def test_an_explicit_precision_always_wins(cpu_probe: dict[str, bool], explicit: str) -> None:
    cpu_probe["amx"] = explicit == "float32"  # the opposite of what auto would pick
    assert dtype_resolve(explicit, device="cpu").dtype == explicit


def test_an_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported dtype 'int3'"):
        dtype_resolve("int3")


def test_this_machine_gets_what_its_processor_supports() -> None:
    hardware.cpu_native_bf16.cache_clear()
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert Embedder("bundled").dtype == ("bfloat16" if native else "float32")


def test_the_choice_is_logged_once_with_its_reason(caplog: pytest.LogCaptureFixture) -> None:
    choice = hardware.DtypeChoice("float32", "a reason worth reading")
    with caplog.at_level("INFO", logger="retrieval.hardware"):
        hardware.dtype_log_once("test component", "auto", choice)
        hardware.dtype_log_once("test component", "auto", choice)
    lines = [r.getMessage() for r in caplog.records if "test component" in r.getMessage()]
    assert len(lines) == 1 and "a reason worth reading" in lines[0]
