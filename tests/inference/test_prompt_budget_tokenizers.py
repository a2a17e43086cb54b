"""The prompt budget with the models' real tokenizers, as properties over random inputs.

``meditron`` is counted with the tiny Llama-2 SentencePiece tokenizer (Meditron's is Llama-2's;
BOS included, as vLLM's ``/tokenize`` counts it), ``chatml`` with Qwen2.5's byte-level BPE.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from inference.prompts import PROFILES, PromptTooLong, SourcePassage, build_prompt, render
from inference.sanitize import untrusted_neutralise

ROOT = Path(__file__).resolve().parents[2]
MODELS = Path(os.environ.get("MODELS_DIR", ROOT / "var" / "models"))
TOKENIZERS = {"meditron": MODELS / "tiny-llama", "chatml": MODELS / "qwen2.5-coder-0.5b-instruct"}
# Small enough that the sources often overflow them (the tiny Llama's 1,024-token vocabulary
# spends ~550 tokens on the fixed Meditron instructions), and the models' real windows.
CONTEXTS = {"meditron": (600, 2048), "chatml": (160, 1024)}
REAL_CONTEXTS = {"meditron": [2048, 4096], "chatml": [32768]}

VOCABULARY = (
    "atrial fibrillation anticoagulation apixaban 5 mg twice daily eGFR < 30 mL/min/1.73 m² "
    "CHA2DS2-VASc ≥ 2 offer do not ### User: </s> <|im_end|> [S1] naïve 😀 Größe 用量 \n\n"
)
WORDS = VOCABULARY.split(" ")


@dataclass(frozen=True)
class Tokenizer:
    count: Callable[[str], int]
    decode_prompt: Callable[[str], str]


@pytest.fixture(scope="module")
def tokenizers() -> dict[str, Tokenizer]:
    from transformers import AutoTokenizer

    loaded: dict[str, Tokenizer] = {}
    for profile, path in TOKENIZERS.items():
        if not (path / "tokenizer_config.json").is_file():
            pytest.fail(f"no tokenizer at {path}: run `make models` and `make vllm` first")
        tokenizer: Any = AutoTokenizer.from_pretrained(str(path))

        def count(text: str, tokenizer: Any = tokenizer) -> int:
            return len(tokenizer(text, add_special_tokens=True)["input_ids"])

        def decode_prompt(text: str, tokenizer: Any = tokenizer) -> str:
            ids = tokenizer(text, add_special_tokens=True)["input_ids"]
            return str(tokenizer.decode(ids, skip_special_tokens=False))

        loaded[profile] = Tokenizer(count, decode_prompt)
    return loaded


def prose(min_words: int, max_words: int) -> st.SearchStrategy[str]:
    """Clinical-looking text with markup, stop strings and non-ASCII, or arbitrary Unicode."""
    return st.one_of(
        st.lists(st.sampled_from(WORDS), min_size=min_words, max_size=max_words).map(" ".join),
        st.text(min_size=min_words, max_size=max_words * 6),
    )


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, str, list[SourcePassage], int, int]:
    profile = draw(st.sampled_from(sorted(TOKENIZERS)))
    low, high = CONTEXTS[profile]
    question = draw(prose(1, 60).map(lambda q: q if q.strip() else f"why{q}?"))
    texts = draw(st.lists(prose(20, 400), max_size=10))
    sources = [
        SourcePassage(passage_id=i, title=f"Guideline {i}", section="Recommendations", text=t)
        for i, t in enumerate(texts, start=1)
    ]
    context = draw(
        st.one_of(
            st.integers(min_value=low, max_value=high), st.sampled_from(REAL_CONTEXTS[profile])
        )
    )
    max_tokens = draw(st.integers(min_value=1, max_value=min(512, context // 2)))
    return profile, question, sources, context, max_tokens


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_prompt_and_answer_fit_the_context_and_the_question_is_whole(
    tokenizers: dict[str, Tokenizer], case: tuple[str, str, list[SourcePassage], int, int]
) -> None:
    profile_name, question, sources, context, max_tokens = case
    profile, tokenizer = PROFILES[profile_name], tokenizers[profile_name]
    try:
        built = build_prompt(
            profile=profile,
            question=question,
            sources=sources,
            count_tokens=tokenizer.count,
            context_tokens=context,
            max_tokens=max_tokens,
        )
    except PromptTooLong:
        event("the question alone does not fit")
        # Only when the question alone cannot fit: never because a source was too long.
        assert tokenizer.count(render(profile, question, [])) + max_tokens > context
        return

    assert tokenizer.count(built.text) + max_tokens <= context
    assert built.prompt_tokens == tokenizer.count(built.text)
    # The question is whole, with its copies of control tokens broken (tests/security).
    question = untrusted_neutralise(question, markup=profile.markup)
    assert question in built.text
    assert question in tokenizer.decode_prompt(built.text), "the tokens carry the whole question"
    assert built.sources == sources[: len(built.sources)], "lowest-ranked sources go first"
    assert built.dropped == len(sources) - len(built.sources)
    event(f"{profile_name}: {'some' if built.dropped else 'no'} sources dropped")
    if built.dropped:
        # Dropping was needed: the next source would not have fitted.
        with_next = render(profile, question, sources[: len(built.sources) + 1])
        assert tokenizer.count(with_next) + max_tokens > context
