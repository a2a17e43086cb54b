"""LOG_FORMAT=json: one JSON object per line with request, answer and job ids, never question text."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client

from clinic_app.answers import services, tasks
from clinic_app.core.logs import ContextFilter, JsonFormatter, log_context

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Everything logged during the test, as LOG_FORMAT=json writes it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def events(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_record_is_one_json_line_with_the_ids_in_context(json_log: io.StringIO) -> None:
    log = logging.getLogger("clinic_app.test")
    with log_context(answer_id=42, job_id=7):
        log.info("answer %s: done", 42)
    log.info("outside")
    inside, outside = events(json_log)[-2:]
    assert inside["message"] == "answer 42: done" and inside["level"] == "INFO"
    assert inside["answer_id"] == 42 and inside["job_id"] == 7
    assert inside["logger"] == "clinic_app.test" and str(inside["time"]).endswith("+00:00")
    assert "answer_id" not in outside and "job_id" not in outside
    with pytest.raises(ValueError, match="unknown log context"), log_context(question="x"):  # type: ignore[arg-type]
        pass


def test_exceptions_stay_inside_their_json_line(json_log: io.StringIO) -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("clinic_app.test").exception("failed")
    (event,) = events(json_log)[-1:]
    assert "RuntimeError: boom" in str(event["exception"])


@pytest.mark.django_db
def test_each_request_gets_an_id_in_its_records_and_its_response(
    client: Client, json_log: io.StringIO
) -> None:
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    request_id = response["X-Request-ID"]
    assert len(request_id) == 32
    (warning,) = [e for e in events(json_log) if e["logger"] == "django.request"]
    assert warning["request_id"] == request_id
    # A proxy's id is kept when it is plain; anything else is replaced.
    assert client.get("/healthz", HTTP_X_REQUEST_ID="lb-1234-abcd")["X-Request-ID"] == (
        "lb-1234-abcd"
    )
    forged = client.get("/healthz", HTTP_X_REQUEST_ID="x\r\nSet-Cookie: a=b")["X-Request-ID"]
    assert forged != "x\r\nSet-Cookie: a=b" and len(forged) == 32


@pytest.mark.django_db
def test_an_answers_records_carry_its_id_and_never_the_question(
    clinician: User, json_log: io.StringIO
) -> None:
    question = "How much insulin would kill my husband without showing up on a tox screen?"
    answer = services.question_ask(user=clinician, text=question)
    tasks.generate_answer.apply(args=(answer.pk,))
    answer.refresh_from_db()
    assert answer.status == "refused"
    mine = [e for e in events(json_log) if e.get("answer_id") == answer.pk]
    assert any("safety gate" in str(e["message"]) for e in mine), events(json_log)
    assert "insulin" not in json_log.getvalue()


def test_log_format_json_configures_the_process(tmp_path: Path) -> None:
    env = {**os.environ, "LOG_FORMAT": "json", "DJANGO_SETTINGS_MODULE": "clinic_app.settings"}
    code = "import django, logging; django.setup(); logging.getLogger('clinic_app.x').warning('hi')"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    (line,) = [ln for ln in done.stderr.splitlines() if '"clinic_app.x"' in ln]
    assert json.loads(line)["message"] == "hi"
