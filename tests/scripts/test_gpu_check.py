"""scripts/gpu_check.py and .sh, the GPU check, in ``--small`` mode on this machine's CPU.

The real run needs a CUDA GPU; here the same code runs with a tiny Llama and a few dozen
passages, and the report is checked for its structure and for positive figures.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_check.py"


def run_check(*args: str, shell: bool = False, timeout: float = 240) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in ("OUT", "GPU_CHECK_EMBEDDER")}
    env |= {"HF_HUB_OFFLINE": "1", "PYTHON": sys.executable}
    command = ["bash", str(SCRIPT.with_suffix(".sh"))] if shell else [sys.executable, str(SCRIPT)]
    done = subprocess.run(
        [*command, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout[done.stdout.index("{\n") :]))


def positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def test_small_run_writes_a_complete_report(tmp_path: Path) -> None:
    out = tmp_path / "tmp" / "report.json"
    echoed = run_check("--small", "--device", "cpu", "--output", str(out))
    report = json.loads(out.read_text())
    assert report == echoed
    assert report["complete"] is True and report["errors"] == [] and report["small"] is True
    assert report["heavy_modules_loaded"] == []  # no Django or FAISS on the GPU machine
    env = report["environment"]
    assert env["device"] == "cpu" and env["torch"] and env["transformers"]
    assert positive(report["wall_s"])

    embedder = report["embedder"]
    assert embedder["source"] in ("prepared", "bundled")
    assert embedder["dim"] == 384 and embedder["passages"] >= embedder["records"] > 0
    for side in ("device", "cpu"):
        assert positive(embedder[side]["passages_per_s"]), side
        assert positive(embedder[side]["seconds"]), side
    assert positive(embedder["speedup_device_vs_cpu"])
    assert positive(embedder["tokens_per_passage_mean"])
    assert embedder["cosine_device_vs_cpu"]["min"] > 0.99  # same model, same device here

    generator = report["generator"]
    assert generator["shape"]["num_hidden_layers"] == 2
    assert generator["new_tokens"] == 8 and len(generator["ttft_ms_runs"]) == generator["runs"]
    for key in ("ttft_ms", "per_token_ms", "floor_ms", "ratio_to_floor", "parameters"):
        assert positive(generator[key]), key
    assert generator["ratio_to_quoted_floor"] == round(generator["per_token_ms"] / 4.0, 2)


def test_shell_script_with_the_random_embedder(tmp_path: Path) -> None:
    """The fallback used where the bundled package is absent, through the one-command script."""
    out = tmp_path / "report.json"
    report = run_check(
        "--small", "--device", "cpu", "--embedder", "random", "--skip", "generator",
        "--records", "20", "--output", str(out),
        shell=True,
    )  # fmt: skip
    assert json.loads(out.read_text()) == report and report["complete"] is True
    assert "generator" not in report
    embedder = report["embedder"]
    assert embedder["source"] == "random" and embedder["dim"] == 384
    assert embedder["max_seq_tokens"] == 256 and embedder["records"] == 20
    assert positive(embedder["device"]["passages_per_s"])


def test_prepared_copy_loads_as_float32_and_embeds_like_the_bundled_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--prepare``: the bundled embedder in float16, small enough to carry, loads as float32."""
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    gpu_check = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", gpu_check)  # its dataclasses look it up
    spec.loader.exec_module(gpu_check)
    from retrieval.embedder import Embedder

    written = gpu_check.prepare(tmp_path / "embedder")
    assert written["mb"] < 60  # carried to the GPU machine within its 64 MiB
    texts = ["Apixaban 5 mg twice daily in atrial fibrillation", "Measure serum creatinine"]
    copy = Embedder(str(tmp_path / "embedder"), dtype="float32")
    assert gpu_check._param_dtype(copy) == "float32"
    cosine = np.sum(copy.encode(texts) * Embedder("bundled", dtype="float32").encode(texts), 1)
    assert cosine.min() > 0.999
    assert gpu_check.resolve_embedder(str(tmp_path / "embedder"), [], tmp_path)[1] == "prepared"
