"""The question path through the services, with the real embedder, index and embedded model."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import override_settings

from clinic_app.answers import services
from clinic_app.answers.streaming import CollectingSink
from clinic_app.core import runtime
from clinic_app.models import Answer, AnswerStatus, AuditEvent
from inference.testing import ScriptedBackend
from tests.conftest import ANSWERABLE_QUESTION, OFF_TOPIC_QUESTION, free_port

pytestmark = pytest.mark.django_db


def ask(user: User, text: str) -> tuple[Answer, CollectingSink]:
    answer = services.question_ask(user=user, text=text)
    sink = CollectingSink()
    return services.answer_generate(answer_id=answer.pk, sink=sink), sink


def test_empty_question_is_rejected(clinician: User) -> None:
    with pytest.raises(services.QuestionRejected, match="type a question"):
        services.question_ask(user=clinician, text="   ")


@override_settings(QUESTION_MAX_CHARS=50)
def test_oversized_question_is_rejected_with_the_limit_and_nothing_saved(clinician: User) -> None:
    with pytest.raises(
        services.QuestionRejected, match="limited to 50 characters; this one has 60"
    ):
        services.question_ask(user=clinician, text="x" * 60)
    assert not Answer.objects.exists()


def test_off_topic_question_is_refused_without_calling_the_model(clinician: User) -> None:
    answer, sink = ask(clinician, OFF_TOPIC_QUESTION)
    assert answer.status == AnswerStatus.REFUSED
    assert "No sufficiently relevant passage" in answer.message
    assert answer.backend == "" and answer.prompt_sha256 == ""  # the model was never prompted
    assert answer.first_token_ms is None
    assert sink.chunks == []
    assert sink.final is not None and sink.final["status"] == "refused"
    assert AuditEvent.objects.filter(action="answer.refused", object_id=str(answer.pk)).exists()


def test_answerable_question_streams_in_increments_and_persists_with_citations(
    clinician: User,
) -> None:
    answer, sink = ask(clinician, ANSWERABLE_QUESTION)
    assert answer.status == AnswerStatus.COMPLETE, answer.message
    assert len(sink.chunks) > 3
    assert answer.text.strip()
    citations = list(answer.citations.select_related("passage__guideline"))
    assert citations, "the sources given to the model are recorded"
    assert citations[0].passage.guideline.key.startswith("acc_aha_af_2023/")
    assert answer.disclaimer and answer.model_name and answer.index_version
    assert sink.final is not None and sink.final["basis"]["model"] == answer.model_name
    event = AuditEvent.objects.get(action="answer.complete", object_id=str(answer.pk))
    assert event.details["passage_ids"] == [c.passage_id for c in citations]
    # Kept for the quality page's time to first token, and on the record.
    assert answer.first_token_ms is not None and answer.first_token_ms > 0
    assert event.details["first_token_ms"] == answer.first_token_ms


def test_a_finished_answer_is_not_generated_twice(clinician: User) -> None:
    answer, _ = ask(clinician, OFF_TOPIC_QUESTION)
    sink = CollectingSink()
    again = services.answer_generate(answer_id=answer.pk, sink=sink)
    assert again.status == AnswerStatus.REFUSED
    assert sink.final is not None and sink.final["id"] == answer.pk
    assert AuditEvent.objects.filter(action="answer.refused").count() == 1


@pytest.mark.real_model  # a real vLLM client against a dead or stalled server
def test_model_server_down_gives_a_clear_failure(clinician: User) -> None:
    port = free_port()  # nothing listens here
    with override_settings(INFERENCE_BACKEND="vllm", VLLM_BASE_URL=f"http://127.0.0.1:{port}"):
        runtime.get_backend.cache_clear()
        try:
            answer, sink = ask(clinician, ANSWERABLE_QUESTION)
        finally:
            runtime.get_backend.cache_clear()
    assert answer.status == AnswerStatus.FAILED
    assert "unavailable" in answer.message.lower()
    assert sink.final is not None and sink.final["status"] == "failed"


def test_cancel_stops_generation_and_keeps_the_partial_text(
    clinician: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A long answer written slowly (10 ms a chunk), so that the cancel lands mid-stream.
    slow = ScriptedBackend(
        " ".join(["Offer anticoagulation [S1]."] * 100), on_chunk=lambda _n: time.sleep(0.01)
    )
    monkeypatch.setattr(runtime, "get_backend", lambda: slow)
    answer = services.question_ask(user=clinician, text=ANSWERABLE_QUESTION)
    first_chunk = threading.Event()

    class CancellingSink(CollectingSink):
        def text(self, delta: str) -> None:
            super().text(delta)
            if len(self.chunks) == 2:
                assert services.answer_cancel(user=clinician, answer_id=answer.pk)
                first_chunk.set()

    sink = CancellingSink()
    done = services.answer_generate(answer_id=answer.pk, sink=sink)
    assert first_chunk.is_set()
    assert done.status == AnswerStatus.CANCELLED
    assert done.text == "".join(sink.chunks)
    assert len(sink.chunks) < 40  # stopped promptly, not at max_tokens


def test_another_users_answer_cannot_be_cancelled(clinician: User, auditor: User) -> None:
    answer = services.question_ask(user=clinician, text=ANSWERABLE_QUESTION)
    assert services.answer_cancel(user=auditor, answer_id=answer.pk) is False


@pytest.mark.real_model  # a real vLLM client against a dead or stalled server
def test_stalled_model_server_gives_a_clear_timeout(clinician: User) -> None:
    from tests.inference.test_vllm_backend import stalling_server

    with (
        stalling_server("headers") as (port, _),
        override_settings(
            INFERENCE_BACKEND="vllm",
            VLLM_BASE_URL=f"http://127.0.0.1:{port}",
            VLLM_FIRST_TOKEN_TIMEOUT=1.0,
            VLLM_TOTAL_TIMEOUT=2.0,
        ),
    ):
        runtime.get_backend.cache_clear()
        try:
            answer, sink = ask(clinician, ANSWERABLE_QUESTION)
        finally:
            runtime.get_backend.cache_clear()
    assert answer.status == AnswerStatus.FAILED
    assert "did not respond in time" in answer.message
    assert sink.final is not None and sink.final["message"] == answer.message


@override_settings(ANSWER_MAX_TOKENS=16)
def test_an_answer_cut_at_the_length_limit_is_flagged_as_incomplete(clinician: User) -> None:
    answer, _ = ask(clinician, ANSWERABLE_QUESTION)
    assert answer.status == AnswerStatus.COMPLETE
    assert {"kind": "truncated", "detail": "the answer reached the length limit"} in answer.flags


SHORT_ANSWER = "Offer oral anticoagulation when the annual stroke risk is 2% or more [S1]."


def test_a_short_complete_answer_is_not_flagged_as_incomplete(
    clinician: User, scripted: Callable[[str], ScriptedBackend]
) -> None:
    scripted(SHORT_ANSWER)
    answer, _ = ask(clinician, ANSWERABLE_QUESTION)
    assert answer.status == AnswerStatus.COMPLETE
    assert answer.text == SHORT_ANSWER
    assert all(f["kind"] != "truncated" for f in answer.flags)


@override_settings(ANSWER_MAX_TOKENS=8)
def test_the_answer_stops_exactly_at_the_length_limit_and_says_so(
    clinician: User, scripted: Callable[[str], ScriptedBackend]
) -> None:
    scripted(SHORT_ANSWER)
    answer, _ = ask(clinician, ANSWERABLE_QUESTION)
    assert answer.status == AnswerStatus.COMPLETE
    assert answer.text == "Offer oral anticoagulation when the annual stroke risk"
    assert {"kind": "truncated", "detail": "the answer reached the length limit"} in answer.flags


def test_every_completed_answer_is_checked_sentence_by_sentence(clinician: User) -> None:
    answer, _ = ask(clinician, ANSWERABLE_QUESTION)
    assert answer.status == AnswerStatus.COMPLETE
    from inference.support import check_answer_support

    sources = [c.passage.text for c in answer.citations.select_related("passage")]
    weak = [s for s in check_answer_support(answer.text, sources) if not s.supported]
    flagged = [f for f in answer.flags if f["kind"] == "weak_support"]
    # Every weakly supported cited sentence is flagged with its reason (uncited ones separately).
    assert len(flagged) == len([s for s in weak if s.kind not in ("no_citation", "no_claim")])
    assert all(f["detail"] and f["sentence"] for f in flagged)


def test_an_answer_whose_workers_keep_dying_fails_with_a_message(clinician: User) -> None:
    """Redelivered after its worker died at every attempt, the answer stops being retried."""
    answer = services.question_ask(user=clinician, text=ANSWERABLE_QUESTION)
    Answer.objects.filter(pk=answer.pk).update(status=AnswerStatus.STREAMING, attempts=2)
    sink = CollectingSink()
    final = services.answer_generate(answer_id=answer.pk, sink=sink)
    assert final.status == AnswerStatus.FAILED and final.attempts == 3
    assert "stopped 2 times" in final.message
    assert sink.final is not None and sink.final["status"] == "failed"
    assert not final.citations.exists()  # the model was never reached


@override_settings(ANSWER_MAX_TOKENS=16)
def test_a_restarted_answer_replaces_what_the_lost_attempt_streamed(clinician: User) -> None:
    answer = services.question_ask(user=clinician, text=ANSWERABLE_QUESTION)
    Answer.objects.filter(pk=answer.pk).update(status=AnswerStatus.STREAMING, attempts=1)
    sink = CollectingSink()
    sink.chunks.append("half an answer from the lost attempt")
    final = services.answer_generate(answer_id=answer.pk, sink=sink)
    assert final.attempts == 2 and final.status == AnswerStatus.COMPLETE
    assert "lost attempt" not in "".join(sink.chunks)


@override_settings(ANSWER_MAX_TOKENS=16)
def test_an_unreachable_cache_does_not_stop_an_answer(
    clinician: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis down mid-answer: the cancel flag cannot be read, the answer still completes."""
    from django.core.cache import cache

    def down(*args: object, **kwargs: object) -> None:
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(cache, "get", down)
    monkeypatch.setattr(cache, "delete", down)
    answer, sink = ask(clinician, ANSWERABLE_QUESTION)
    assert answer.status == AnswerStatus.COMPLETE
    assert sink.final is not None and sink.final["status"] == "complete"


def test_a_failing_channel_layer_never_breaks_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    from clinic_app.answers import streaming

    calls: list[str] = []

    def broken(group: str, message: dict, **kwargs: object) -> None:  # type: ignore[type-arg]
        calls.append(message["type"])
        raise TimeoutError("channel layer unreachable")

    monkeypatch.setattr(streaming, "publish", broken)
    sink = streaming.ChannelSink(123, flush_ms=0)
    sink.text("one ")
    sink.text("two ")  # skipped during the back-off after the failure, not raised
    sink.finish({"id": 123, "status": "complete"})
    assert calls[0] == "answer.chunk" and calls[-1] == "answer.done"
    assert sink.seq == 2  # numbering goes on, so the page sees the gap and repairs it


def test_streamed_text_is_saved_as_snapshots_with_its_sequence_number(
    clinician: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the answer streams, the database holds a whole prefix of what was published:
    the text of chunks 1..chunks_sent, so a reload or a gap resumes from it."""
    from functools import partial

    from clinic_app.answers import streaming

    published: list[dict] = []  # type: ignore[type-arg]
    saved: list[tuple[int, str]] = []

    def capture(group: str, message: dict, **kwargs: object) -> None:  # type: ignore[type-arg]
        if message["type"] == "answer.chunk":
            # What a page following the answer now would get: the row as saved.
            row = Answer.objects.values("status", "text", "chunks_sent").get(pk=answer.pk)
            assert row["status"] == AnswerStatus.STREAMING
            saved.append((row["chunks_sent"], row["text"]))
        published.append(message)

    monkeypatch.setattr(streaming, "publish", capture)
    answer = services.question_ask(user=clinician, text=ANSWERABLE_QUESTION)
    sink = streaming.ChannelSink(
        answer.pk,
        flush_ms=0,
        snapshot=partial(services.answer_snapshot_save, answer.pk),
        snapshot_ms=0,
    )
    done = services.answer_generate(answer_id=answer.pk, sink=sink)
    assert done.status == AnswerStatus.COMPLETE
    chunks = [m["text"] for m in published if m["type"] == "answer.chunk"]
    assert len(chunks) > 3
    for seq, text in saved:
        assert text == "".join(chunks[:seq])  # a whole prefix, never a torn one
    assert [seq for seq, _ in saved] == list(range(1, len(chunks) + 1))
    assert published[-1]["type"] == "answer.done"
    assert published[-1]["answer"]["text"] == done.text


def test_snapshots_are_throttled_and_never_break_generation() -> None:
    from clinic_app.answers import streaming

    saves: list[int] = []

    def failing(attempt: int, seq: int, text: str) -> None:
        saves.append(seq)
        raise RuntimeError("database unavailable")

    sink = streaming.ChannelSink(1, flush_ms=0, snapshot=failing, snapshot_ms=60_000)
    sink._publish = lambda message, final=False: None  # type: ignore[method-assign]
    sink.begin(1)
    for word in ("one ", "two ", "three "):
        sink.text(word)
    assert saves == [] and sink.seq == 3  # within the interval: published, not saved
    sink.snapshot_s = 0
    sink.text("four ")
    assert saves == [4]  # the failure was logged, generation goes on
    sink.text("five ")
    assert saves == [4, 5]


def test_a_snapshot_from_a_replaced_attempt_changes_nothing(clinician: User) -> None:
    answer = services.question_ask(user=clinician, text=ANSWERABLE_QUESTION)
    Answer.objects.filter(pk=answer.pk).update(
        status=AnswerStatus.STREAMING, attempts=2, text="second attempt", chunks_sent=3
    )
    assert not services.answer_snapshot_save(answer.pk, 1, 9, "a lost worker's late write")
    assert services.answer_snapshot_save(answer.pk, 2, 4, "second attempt goes on")
    Answer.objects.filter(pk=answer.pk).update(status=AnswerStatus.COMPLETE, text="final")
    assert not services.answer_snapshot_save(answer.pk, 2, 5, "after the final save")
    answer.refresh_from_db()
    assert (answer.text, answer.chunks_sent) == ("final", 4)
