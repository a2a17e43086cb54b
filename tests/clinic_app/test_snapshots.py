"""Streamed-text snapshots off the generation threads, and an unreachable database."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import OperationalError

from clinic_app.answers import services, streaming, tasks
from clinic_app.answers.snapshots import SnapshotWriter
from clinic_app.models import Answer, AnswerStatus
from tests.conftest import ANSWERABLE_QUESTION


def test_the_writer_saves_the_newest_snapshot_of_each_answer_in_the_background() -> None:
    saved: list[tuple[int, int, int, str]] = []
    entered, gate = threading.Event(), threading.Event()

    def save(answer_id: int, attempt: int, seq: int, text: str) -> None:
        entered.set()
        gate.wait(5)  # hold the writer so that snapshots pile up behind it
        saved.append((answer_id, attempt, seq, text))

    writer = SnapshotWriter(save)
    writer.submit(1, 1, 1, "a")
    assert entered.wait(5)
    for seq in range(2, 6):
        writer.submit(1, 1, seq, "a" * seq)  # returns at once while the writer is held
    writer.submit(2, 1, 1, "b")
    gate.set()
    assert writer.wait_idle()
    # The first was taken before the others arrived; of the rest only the newest was written.
    assert saved[0] == (1, 1, 1, "a")
    assert sorted(saved[1:]) == [(1, 1, 5, "aaaaa"), (2, 1, 1, "b")]


def test_a_failing_save_is_logged_and_the_writer_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    def save(answer_id: int, attempt: int, seq: int, text: str) -> None:
        calls.append(seq)
        if seq == 1:
            raise OperationalError("too many clients already")

    writer = SnapshotWriter(save)
    writer.submit(7, 1, 1, "x")
    assert writer.wait_idle()
    writer.submit(7, 1, 2, "xy")
    assert writer.wait_idle()
    assert calls == [1, 2]
    assert "answer 7: snapshot not saved (too many clients already)" in caplog.text


@pytest.mark.django_db
def test_an_unreachable_database_is_retried_once_then_the_page_is_told(
    clinician: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Out of connections, neither the answer nor its failure can be saved: the task tries once
    more, then ends the stream with a clear failure instead of leaving the page waiting."""
    answer = services.question_ask(user=clinician, text=ANSWERABLE_QUESTION)
    runs: list[int] = []
    published: list[dict[str, Any]] = []

    def unreachable(**kwargs: Any) -> None:
        runs.append(kwargs["answer_id"])
        raise OperationalError("connection failed: FATAL:  sorry, too many clients already")

    monkeypatch.setattr(services, "answer_generate", unreachable)
    monkeypatch.setattr(services, "answer_fail", unreachable)
    monkeypatch.setattr(
        streaming, "publish", lambda group, message, **kw: published.append(message)
    )
    result = tasks.generate_answer.apply(args=(answer.pk,))
    assert result.failed()
    assert runs == [answer.pk] * 4  # generate + fail, twice: the first run and one retry
    done = [m for m in published if m["type"] == "answer.done"]
    assert len(done) == 1, published
    final = done[0]["answer"]
    assert final["id"] == answer.pk and final["status"] == "failed"
    assert final["message"] == tasks.DB_UNAVAILABLE_MESSAGE
    assert final["recorded"] is False


@pytest.mark.django_db
def test_another_error_with_the_database_up_is_recorded_as_a_failure_without_retry(
    clinician: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    answer = services.question_ask(user=clinician, text=ANSWERABLE_QUESTION)
    runs: list[int] = []

    def broken(**kwargs: Any) -> None:
        runs.append(kwargs["answer_id"])
        raise RuntimeError("a bug")

    monkeypatch.setattr(services, "answer_generate", broken)
    monkeypatch.setattr(streaming, "publish", lambda *a, **kw: None)
    assert tasks.generate_answer.apply(args=(answer.pk,)).failed()
    assert runs == [answer.pk]
    answer.refresh_from_db()
    assert answer.status == AnswerStatus.FAILED
    assert "internal error" in answer.message
    assert Answer.objects.count() == 1
