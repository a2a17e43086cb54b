"""Excerpts: a CPU model reads each passage's best sentences instead of whole passages, while
citations, the evidence block and the checks keep working on the whole passages (scripted
backend: this is about the service, not the model)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import override_settings

from clinic_app.answers import services
from clinic_app.answers.streaming import CollectingSink
from clinic_app.core import runtime
from clinic_app.models import AnswerStatus, AuditEvent
from inference.testing import ScriptedBackend, quote_first_source
from inference.types import ModelInfo
from retrieval.evidence import EXCERPT_GAP
from tests.conftest import ANSWERABLE_QUESTION

pytestmark = pytest.mark.django_db


def sources_in(prompt: str) -> list[str]:
    return [
        body.split("\n", 1)[1].rsplit("</source>", 1)[0].strip()  # after the tag's line
        for body in prompt.split('<source id="S')[1:]
    ]


def words(text: str) -> str:
    return " ".join(re.sub(r"[*_`#>|-]", " ", text).split())


def ask(user: User) -> Any:
    answer = services.question_ask(user=user, text=ANSWERABLE_QUESTION)
    return services.answer_generate(answer_id=answer.pk, sink=CollectingSink())


@override_settings(PROMPT_SOURCES="excerpts", PROMPT_EXCERPT_TOKENS=60)
def test_the_model_reads_excerpts_within_the_budget_and_the_rest_sees_whole_passages(
    clinician: User, scripted: Callable[[Any], ScriptedBackend]
) -> None:
    backend = scripted(quote_first_source)
    answer = ask(clinician)
    assert answer.status == AnswerStatus.COMPLETE
    excerpts = sources_in(backend.prompts[-1])
    citations = list(answer.citations.select_related("passage").order_by("number"))
    assert len(excerpts) == len(citations) >= 1
    total = 0
    for excerpt, citation in zip(excerpts, citations, strict=True):
        lines = [line for line in excerpt.split("\n") if line != EXCERPT_GAP]
        for line in lines:
            assert words(line) in words(citation.passage.text), "each line is verbatim"
        total += sum(len(line.split()) + 1 for line in lines)
        assert len(excerpt) < len(citation.passage.text)
    assert total <= 60 + max(len(e.split()) for e in excerpts), "the budget holds (best kept)"
    # The evidence block is numbered as the prompt's sources and quotes the passages.
    for item in answer.evidence:
        cited = citations[item["source"] - 1]
        assert item["passage_id"] == cited.passage_id
        assert words(item["text"]) in words(cited.passage.text)
    event = AuditEvent.objects.get(action="answer.complete", object_id=str(answer.pk))
    assert event.details["prompt_sources"] == "excerpts"
    assert event.details["prompt_tokens"] > 0
    assert not any(f["kind"] == "weak_support" for f in answer.flags)


@override_settings(PROMPT_SOURCES="passages")
def test_whole_passages_when_set(
    clinician: User, scripted: Callable[[Any], ScriptedBackend]
) -> None:
    backend = scripted(quote_first_source)
    answer = ask(clinician)
    citations = list(answer.citations.select_related("passage").order_by("number"))
    for excerpt, citation in zip(sources_in(backend.prompts[-1]), citations, strict=True):
        assert words(excerpt) == words(citation.passage.text)
    event = AuditEvent.objects.get(action="answer.complete", object_id=str(answer.pk))
    assert event.details["prompt_sources"] == "passages"


@pytest.mark.parametrize(
    ("backend_name", "device", "expected"),
    [
        ("transformers", "cpu", 240),
        ("llamacpp", "cpu", 240),
        ("transformers", "cuda", 0),
        ("vllm", "", 0),
    ],
)
@override_settings(PROMPT_SOURCES="auto", PROMPT_EXCERPT_TOKENS=240)
def test_auto_gives_excerpts_to_an_in_process_cpu_model_only(
    backend_name: str, device: str, expected: int
) -> None:
    backend = ScriptedBackend("x")
    backend.info = ModelInfo(
        backend=backend_name, model="m", extra={"device": device} if device else {}
    )
    assert runtime.prompt_excerpt_budget(backend) == expected
    with override_settings(PROMPT_SOURCES="passages"):
        assert runtime.prompt_excerpt_budget(backend) == 0
    with override_settings(PROMPT_SOURCES="excerpts"):
        assert runtime.prompt_excerpt_budget(backend) == 240
