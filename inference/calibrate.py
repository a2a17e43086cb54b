"""Which in-process engine answers faster on *this* machine: measured, not assumed.

llama.cpp and torch trade places from one CPU to another. On a CPU with AVX512-BF16, llama.cpp
in bf16 wins both the prompt and the tokens after it; on a 2-core AVX2-only CPU torch's float32
matrix kernels read a 1,200-token prompt about 1.6x faster than llama.cpp's quantised ones, while
llama.cpp writes tokens about 4x faster (``docs/performance.md``). Which matters more depends on
the prompt and answer lengths, so the choice is made from rates measured here:
:func:`engine_rates` times the prompt and the generated tokens of a backend through its public
``stream`` interface, and :func:`engine_choose` picks the engine that meets more of the latency
targets (first token within ``TARGET_FIRST_TOKEN_S``, whole answer within ``TARGET_ANSWER_S``),
then the closest to both, for a typical grounded prompt and answer: five whole passages make prompts
of 1,000-1,400 tokens (``TYPICAL_PROMPT_TOKENS``), excerpts about 350
(``EXCERPT_PROMPT_OVERHEAD`` + the excerpt budget). The median answer to the demo questions was
about 45 tokens with whole passages (``TYPICAL_ANSWER_TOKENS``) and 70-100 with excerpts,
whatever the engine (``EXCERPT_ANSWER_TOKENS``; bench/answer_latency.py reports it). The answer
length matters: an engine that reads fast and writes slowly wins on short answers only.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from inference.backends.base import Backend
from inference.types import GenerationRequest

TYPICAL_PROMPT_TOKENS = 1200
TYPICAL_ANSWER_TOKENS = 45
# Median answer with excerpt prompts, demo questions, 2-core AVX2 EPYC, 2026-12-04: 72 (llama.cpp,
# shipped file), 88 (transformers float32), 102 (llama.cpp Q8_0); individual answers 11-305.
EXCERPT_ANSWER_TOKENS = 90
# Tokens of an excerpt prompt besides the excerpts: instructions, question, cue, source tags.
EXCERPT_PROMPT_OVERHEAD = 130
TARGET_FIRST_TOKEN_S = 3.0
TARGET_ANSWER_S = 15.0
# Part of the key of a recorded choice: a new rule must not trust a choice made by the old one.
CHOICE_RULE = "targets-met-then-closest-v4-integer-files-everywhere"
_FILLER = (
    "Adults with atrial fibrillation and a CHA2DS2-VASc score of 2 or more in men, or 3 or "
    "more in women, should be offered oral anticoagulation; a direct oral anticoagulant is "
    "preferred over warfarin except with a mechanical heart valve or moderate-to-severe mitral "
    "stenosis. "
)


@dataclass(frozen=True)
class EngineRates:
    """Measured on this machine: prompt tokens read per second (time to first token) and
    tokens written per second after the first."""

    engine: str
    precision: str
    prompt_tokens_per_s: float
    decode_tokens_per_s: float

    def projected_s(
        self,
        prompt_tokens: int = TYPICAL_PROMPT_TOKENS,
        answer_tokens: int = TYPICAL_ANSWER_TOKENS,
    ) -> float:
        """Seconds for a whole answer of ``answer_tokens`` to a ``prompt_tokens`` prompt."""
        return self.first_token_s(prompt_tokens) + answer_tokens / self.decode_tokens_per_s

    def first_token_s(self, prompt_tokens: int = TYPICAL_PROMPT_TOKENS) -> float:
        """Seconds to read a ``prompt_tokens`` prompt (to the first token)."""
        return prompt_tokens / self.prompt_tokens_per_s

    def target_ratio(
        self,
        prompt_tokens: int = TYPICAL_PROMPT_TOKENS,
        answer_tokens: int = TYPICAL_ANSWER_TOKENS,
    ) -> float:
        """How far the typical answer is from the latency targets: the larger of first token /
        ``TARGET_FIRST_TOKEN_S`` and whole answer / ``TARGET_ANSWER_S`` (<= 1: both met)."""
        return max(
            self.first_token_s(prompt_tokens) / TARGET_FIRST_TOKEN_S,
            self.projected_s(prompt_tokens, answer_tokens) / TARGET_ANSWER_S,
        )

    def as_dict(
        self,
        prompt_tokens: int = TYPICAL_PROMPT_TOKENS,
        answer_tokens: int = TYPICAL_ANSWER_TOKENS,
    ) -> dict[str, object]:
        return {
            **asdict(self),
            "typical_prompt_tokens": prompt_tokens,
            "typical_answer_tokens": answer_tokens,
            "projected_first_token_s": round(self.first_token_s(prompt_tokens), 2),
            "projected_s": round(self.projected_s(prompt_tokens, answer_tokens), 2),
            "target_ratio": round(self.target_ratio(prompt_tokens, answer_tokens), 3),
        }


def engine_rates(
    backend: Backend, *, prompt_tokens: int = 600, new_tokens: int = 24, runs: int = 2
) -> EngineRates:
    """Time ``backend`` on a ``prompt_tokens`` prompt and ``new_tokens`` generated tokens; the
    best of ``runs`` (the first run also warms the weights in)."""
    sentence_tokens = max(1, backend.count_tokens(_FILLER))
    prompt = _FILLER * max(1, prompt_tokens // sentence_tokens)
    prompt += "\nQuestion: which patients should receive oral anticoagulation?\nAnswer:"
    measured_prompt = backend.count_tokens(prompt)
    best_prefill, best_decode = float("inf"), float("inf")
    for _ in range(max(1, runs)):
        request = GenerationRequest(prompt=prompt, max_tokens=new_tokens, temperature=0.0)
        started = time.perf_counter()
        first: float | None = None
        text = ""
        for piece in backend.stream(request):
            if first is None and piece:
                first = time.perf_counter()
            text += piece
        finished = time.perf_counter()
        if first is None:  # nothing generated: count the whole as reading the prompt
            first = finished
        written = max(1, backend.count_tokens(text) - 1)
        best_prefill = min(best_prefill, first - started)
        best_decode = min(best_decode, max(finished - first, 1e-6) / written)
    return EngineRates(
        engine=backend.info.backend,
        precision=backend.info.extra.get("dtype", ""),
        prompt_tokens_per_s=measured_prompt / best_prefill,
        decode_tokens_per_s=1.0 / best_decode,
    )


def engine_choose(
    rates: list[EngineRates],
    *,
    prompt_tokens: int = TYPICAL_PROMPT_TOKENS,
    answer_tokens: int = TYPICAL_ANSWER_TOKENS,
) -> EngineRates:
    """The engine that meets more of the latency targets for an ``answer_tokens`` answer to a
    ``prompt_tokens`` prompt, and among those the one closest to both
    (:meth:`EngineRates.target_ratio`): a fast first token with slow writing can lose to a
    slower first token with fast writing, and the other way round."""
    if not rates:
        raise ValueError("no engine was measured")

    def missed(r: EngineRates) -> int:
        return (r.first_token_s(prompt_tokens) > TARGET_FIRST_TOKEN_S) + (
            r.projected_s(prompt_tokens, answer_tokens) > TARGET_ANSWER_S
        )

    return min(rates, key=lambda r: (missed(r), r.target_ratio(prompt_tokens, answer_tokens)))


def machine_fingerprint(*parts: str) -> str:
    """A key for this CPU (its flags) and the given versions/settings: a measurement made here
    is not trusted on another machine, or after an engine upgrade."""
    import hashlib
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = next((line for line in handle if line.startswith("flags")), "")
    except OSError:
        flags = ""
    text = "\n".join([flags.strip(), platform.machine(), *parts])
    return hashlib.sha256(text.encode()).hexdigest()[:16]
