"""The production path for real: uvicorn + Celery worker process + Redis + PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
import yaml
from websockets.sync.client import ClientConnection, connect

from tests.conftest import ANSWERABLE_QUESTION, OFF_TOPIC_QUESTION, ROOT, free_port
from tests.live import (
    Server,
    app_env,
    login_cookies,
    seed,
    spawn,
    start_server,
    start_worker,
    stopping,
)

pytestmark = pytest.mark.integration

PG_ADMIN = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_BASE = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
METRICS_TOKEN = "metrics-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[Server, dict[str, str]]]:
    name = f"clinic_it_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database_url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    redis.Redis.from_url(REDIS_BASE).flushdb()
    var_dir = Path(tempfile.mkdtemp(prefix="clinic-it-"))
    env = app_env(
        var_dir,
        DATABASE_URL=database_url,
        REDIS_URL=REDIS_BASE,
        UPLOAD_MAX_BYTES="5000000",
        # As in docker-compose: web and worker write metrics to one folder, web serves the sum.
        PROMETHEUS_MULTIPROC_DIR=str(var_dir / "prometheus"),
        METRICS_TOKEN=METRICS_TOKEN,
    )
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
    # The quotes travel worker -> Redis -> socket too, ahead of the model's text.
    kinds = [e["type"] for e in events]
    assert "evidence" in kinds and kinds.index("evidence") < kinds.index("chunk"), kinds
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


def test_an_upload_is_ingested_by_the_celery_worker_with_live_progress(
    stack: tuple[Server, dict[str, str]],
) -> None:
    """Upload over HTTP; the worker process ingests it; the status the page polls completes;
    an oversized request is refused at the ASGI edge before its body is read."""
    import re
    import time

    import httpx

    server, env = stack
    cookies = login_cookies(
        server.base_url, "guideline-admin", os.environ.get("DEMO_PASSWORD", "test-password-123")
    )
    document = b"# Otter enclosure hygiene\n\nDisinfect otter pools weekly with 1% Virkon.\n"
    with httpx.Client(base_url=server.base_url, cookies=cookies, timeout=30) as client:
        page = client.get("/guidelines/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert page.status_code == 200 and token
        response = client.post(
            "/guidelines/upload/",
            data={"csrfmiddlewaretoken": token.group(1), "organisation": "Zoo Board"},
            files={"documents": ("otters.md", document, "text/markdown")},
            headers={"Referer": f"{server.base_url}/guidelines/"},
        )
        assert response.status_code == 302, response.text[:2000]
        job_url = response.headers["Location"]
        seen_phases = set()
        deadline = time.monotonic() + 180
        while True:
            status = client.get(f"{job_url}status").json()
            seen_phases.add(status["phase"])
            if status["final"] or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert status["status"] == "complete", status
        assert (status["added"], status["failed"]) == (1, 0)
        assert status["index_version"]

    with psycopg.connect(env["DATABASE_URL"]) as conn:
        row = conn.execute(
            "SELECT organisation, source_name FROM clinic_app_guideline "
            "WHERE title = 'Otter enclosure hygiene'"
        ).fetchone()
    assert row == ("Zoo Board", "otters.md")

    # The ASGI edge refuses an oversized upload before Django reads it; nothing is staged or
    # recorded.
    with psycopg.connect(env["DATABASE_URL"]) as conn:
        jobs_before = conn.execute("SELECT count(*) FROM clinic_app_ingestjob").fetchone()
    with httpx.Client(base_url=server.base_url, cookies=cookies, timeout=60) as client:
        response = client.post(
            "/guidelines/upload/",
            data={"csrfmiddlewaretoken": token.group(1)},
            files={"documents": ("huge.md", b"# Huge\n" + b"x" * 7_000_000, "text/markdown")},
            headers={"Referer": f"{server.base_url}/guidelines/"},
        )
    assert response.status_code == 413
    assert "larger than the limit" in response.text
    with psycopg.connect(env["DATABASE_URL"]) as conn:
        assert conn.execute("SELECT count(*) FROM clinic_app_ingestjob").fetchone() == jobs_before


def test_an_oversized_upload_is_refused_on_its_headers_before_any_body_is_sent(
    stack: tuple[Server, dict[str, str]],
) -> None:
    """A client declares 50 GB and sends none of it: the server answers 413 at once and closes
    the connection, so the body is never read, buffered or spooled to disk."""
    import socket
    import time

    server, _ = stack
    request = (
        "POST /guidelines/upload/ HTTP/1.1\r\n"
        f"Host: {server.host}:{server.port}\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\n"
        "Content-Length: 50000000000\r\n\r\n"
    ).encode()
    started = time.monotonic()
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(request)  # headers only
        reply = b""
        while b"\r\n\r\n" not in reply:
            data = sock.recv(65536)
            if not data:
                break
            reply += data
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert time.monotonic() - started < 10


def test_prometheus_scrapes_the_answer_metrics_of_web_and_worker(
    stack: tuple[Server, dict[str, str]], tmp_path: Path
) -> None:
    """Debian's real Prometheus, configured from deploy/prometheus.yml, scrapes the live server
    after a Celery worker answered: the worker's samples reach it through the web's /metrics."""
    server, _ = stack
    binary = shutil.which("prometheus")
    assert binary, "Debian's prometheus is missing: `make monitoring` installs it"
    with open_socket(server) as ws:
        events = ask(ws, ANSWERABLE_QUESTION)
    assert events[-1]["type"] == "done" and events[-1]["answer"]["status"] == "complete"
    # The shipped configuration, pointed at this server, scraping every second.
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    token_file = tmp_path / "metrics_token"
    token_file.write_text(METRICS_TOKEN)
    config["global"]["scrape_interval"] = "1s"
    (job,) = config["scrape_configs"]
    job["authorization"]["credentials_file"] = str(token_file)
    job["static_configs"][0]["targets"] = [f"{server.host}:{server.port}"]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    prometheus = spawn(
        "prometheus",
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        dict(os.environ),
    )
    wanted = {
        'up{job="clinic"}': 1.0,
        'clinic_answers_total{outcome="complete"}': 1.0,
        "clinic_answer_first_token_seconds_count": 1.0,
        "clinic_retrieval_seconds_count": 1.0,
    }
    seen: dict[str, float] = {}
    with stopping(prometheus):
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(seen) < len(wanted):
            for query, least in wanted.items():
                try:
                    reply = httpx.get(
                        f"http://127.0.0.1:{port}/api/v1/query", params={"query": query}, timeout=5
                    ).json()
                except (httpx.HTTPError, ValueError):
                    break
                values = [float(r["value"][1]) for r in reply.get("data", {}).get("result", [])]
                if values and sum(values) >= least:
                    seen[query] = sum(values)
            time.sleep(1)
    assert set(seen) == set(wanted), (seen, prometheus.log()[-3000:])
