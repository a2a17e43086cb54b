"""The embedded model served by a real vLLM CPU server matches the in-process transformers backend.

Qwen2.5-Coder-0.5B-Instruct (the embedded default) is served in float32 by vLLM from
``.venv-vllm``; a grounded ChatML prompt is streamed through :class:`VLLMBackend` and compared
with the greedy output of :class:`TransformersBackend` in float32 for the same prompt. Both run
the same weights in the same precision, so greedy decoding must pick the same tokens.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from inference.backends.transformers_backend import TransformersBackend
from inference.backends.vllm_backend import VLLMBackend
from inference.prompts import PROFILES, SourcePassage, build_prompt
from inference.types import GenerationRequest
from tests.inference.conftest import (
    ROOT,
    VLLM_PYTHON,
    VLLMServer,
    VLLMStartError,
    launch_vllm_server,
)

MODEL_DIR = (
    Path(os.environ.get("MODELS_DIR", ROOT / "var" / "models")) / "qwen2.5-coder-0.5b-instruct"
)
SERVED_NAME = "qwen2.5-coder-0.5b"
MAX_MODEL_LEN = 2048
MAX_TOKENS = 24
# A 0.5B model in float32 needs longer than the tiny Llama to load on two busy cores.
START_TIMEOUT_S = 360.0

SOURCES = [
    SourcePassage(
        passage_id=1,
        title="Atrial fibrillation: diagnosis and management",
        section="Stroke prevention",
        text=(
            "Offer an anticoagulant to men with atrial fibrillation and a CHA2DS2-VASc score of "
            "2 or more, and to women with a score of 3 or more. A direct oral anticoagulant is "
            "preferred over warfarin. Do not offer aspirin alone for stroke prevention."
        ),
    ),
    SourcePassage(
        passage_id=2,
        title="Hypertension in adults",
        section="Targets",
        text="Aim for a clinic blood pressure below 140/90 mmHg in adults under 80.",
    ),
]
QUESTION = "Which men with atrial fibrillation should be offered an anticoagulant?"


@pytest.fixture(scope="module")
def embedded_server() -> Iterator[VLLMServer]:
    """vLLM serving the embedded model in float32, for this module only."""
    if not VLLM_PYTHON.exists():
        pytest.fail(
            f"no vLLM venv at {VLLM_PYTHON.parent.parent}: run `make vllm` (scripts/setup_vllm.sh)",
            pytrace=False,
        )
    server = launch_vllm_server(
        model_dir=MODEL_DIR,
        served_name=SERVED_NAME,
        max_model_len=MAX_MODEL_LEN,
        dtype="float32",
        log_path=ROOT / "test-artifacts" / "vllm-embedded-server.log",
        start_timeout_s=START_TIMEOUT_S,
    )
    try:
        running = server.__enter__()
    except VLLMStartError as error:
        pytest.fail(str(error), pytrace=False)
    try:
        yield running
    finally:
        server.__exit__(None, None, None)


def test_vllm_streams_the_embedded_models_greedy_answer_as_transformers_does(
    embedded_server: VLLMServer,
) -> None:
    vllm = VLLMBackend(base_url=embedded_server.base_url, model=embedded_server.model)
    local = TransformersBackend(model_path=str(MODEL_DIR), dtype="float32")
    profile = PROFILES["chatml"]
    prompt = build_prompt(
        profile=profile,
        question=QUESTION,
        sources=SOURCES,
        count_tokens=vllm.count_tokens,
        context_tokens=vllm.info.context_tokens,
        max_tokens=MAX_TOKENS,
    )
    request = GenerationRequest(prompt=prompt.text, max_tokens=MAX_TOKENS, stop=profile.stop)

    try:
        chunks = list(vllm.stream(request))
    finally:
        vllm.close()
    expected = "".join(local.stream(request))

    assert vllm.info.context_tokens == MAX_MODEL_LEN
    assert prompt.dropped == 0 and prompt.prompt_tokens == local.count_tokens(prompt.text)
    assert len(chunks) > 1, "the answer arrives as a stream, not in one piece"
    assert "".join(chunks) == expected
    assert "<|im_end|>" not in expected and expected.strip()
