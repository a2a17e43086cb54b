"""The production path for real: daphne + Celery worker process + Redis + PostgreSQL."""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from websockets.sync.client import ClientConnection, connect

from tests.conftest import ANSWERABLE_QUESTION, OFF_TOPIC_QUESTION
from tests.live import Server, app_env, login_cookies, seed, start_server, start_worker

pytestmark = pytest.mark.integration

PG_ADMIN = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_BASE = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/9")


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[Server, dict[str, str]]]:
    name = f"clinic_it_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database_url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    redis.Redis.from_url(REDIS_BASE).flushdb()
    var_dir = Path(tempfile.mkdtemp(prefix="clinic-it-"))
    env = app_env(var_dir, DATABASE_URL=database_url, REDIS_URL=REDIS_BASE)
    seed(env)
    worker = start_worker(env, name="it-worker")
    server = start_server(env, name="it-server")
    server.extra.append(worker)
    try:
        yield server, env
    finally:
        server.process.stop()
        worker.stop()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        redis.Redis.from_url(REDIS_BASE).flushdb()


def open_socket(server: Server) -> ClientConnection:
    cookies = login_cookies(
        server.base_url, "clinician", os.environ.get("DEMO_PASSWORD", "test-password-123")
    )
    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    return connect(
        f"ws://{server.host}:{server.port}/ws/ask/",
        additional_headers={"Cookie": cookie, "Origin": server.base_url},
        open_timeout=10,
    )


def ask(ws: ClientConnection, question: str, timeout: float = 240) -> list[dict[str, Any]]:
    ws.send(json.dumps({"action": "ask", "question": question}))
    events: list[dict[str, Any]] = []
    while True:
        event = json.loads(ws.recv(timeout=timeout))
        events.append(event)
        if event["type"] in ("done", "error"):
            return events


def answer_row(env: dict[str, str], answer_id: int) -> tuple[str, str, str]:
    with psycopg.connect(env["DATABASE_URL"]) as conn:
        row = conn.execute(
            "SELECT status, text, model_name FROM clinic_app_answer WHERE id = %s", (answer_id,)
        ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def test_question_is_answered_by_a_celery_worker_and_streamed_through_redis(
    stack: tuple[Server, dict[str, str]],
) -> None:
    server, env = stack
    with open_socket(server) as ws:
        events = ask(ws, ANSWERABLE_QUESTION)
    accepted, done = events[0], events[-1]
    assert accepted["type"] == "accepted", events
    chunks = [e for e in events if e["type"] == "chunk"]
    assert len(chunks) >= 2
    assert [c["seq"] for c in chunks] == list(range(1, len(chunks) + 1))
    assert done["type"] == "done" and done["answer"]["status"] == "complete", done
    status, text, model = answer_row(env, accepted["answer_id"])
    assert (status, text) == ("complete", done["answer"]["text"])  # persisted in PostgreSQL
    assert model
    worker_log = server.extra[0].log()
    assert "generate_answer[" in worker_log and "succeeded" in worker_log


def test_refusal_travels_the_same_path(stack: tuple[Server, dict[str, str]]) -> None:
    server, env = stack
    with open_socket(server) as ws:
        events = ask(ws, OFF_TOPIC_QUESTION)
    assert events[-1]["answer"]["status"] == "refused"
    assert answer_row(env, events[0]["answer_id"])[0] == "refused"
