"""/readyz: database, Redis, the live index and the generator, each named; 503 when one fails."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from clinic_app.core import runtime

# The generation check asks the configured backend itself, never the scripted one.
pytestmark = [pytest.mark.django_db, pytest.mark.real_model]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once the socket closes


@pytest.fixture(autouse=True)
def _fresh_runtime() -> Iterator[None]:
    runtime.get_retriever.cache_clear()
    yield
    runtime.get_retriever.cache_clear()


def readyz(client: Client) -> tuple[int, dict[str, Any]]:
    response = client.get("/readyz")
    assert response["Content-Type"] == "application/json"
    return response.status_code, json.loads(response.content)


def test_ready_when_the_database_index_and_model_are_there(client: Client) -> None:
    status, body = readyz(client)
    assert status == 200, body
    assert body["status"] == "ready"
    assert list(body["checks"]) == ["database", "index", "generation"]  # no Redis configured
    assert all(c["ok"] and c["ms"] >= 0 for c in body["checks"].values())
    assert body["checks"]["index"]["detail"].startswith("version ")
    # /healthz stays the cheap liveness probe.
    assert client.get("/healthz").json() == {"status": "ok"}


def test_an_index_that_was_never_published_is_not_ready(
    client: Client, settings: Any, tmp_path: Path
) -> None:
    settings.INDEX_DIR = tmp_path / "no-index"
    status, body = readyz(client)
    assert status == 503 and body["status"] == "not ready"
    assert body["checks"]["index"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True


def test_a_missing_embedded_model_is_named(client: Client, settings: Any, tmp_path: Path) -> None:
    settings.MODELS_DIR = tmp_path
    settings.INFERENCE_BACKEND = "transformers"
    status, body = readyz(client)
    assert status == 503
    generation = body["checks"]["generation"]
    assert generation["ok"] is False
    assert "not installed" in generation["detail"] and "make models" in generation["detail"]


def test_redis_is_checked_when_configured(client: Client, settings: Any) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:6379/15"  # the machine's real Redis
    status, body = readyz(client)
    assert status == 200, body
    assert body["checks"]["redis"] == {
        "ok": True,
        "detail": "reachable",
        "ms": body["checks"]["redis"]["ms"],
    }
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port()}/0"
    status, body = readyz(client)
    assert status == 503 and body["checks"]["redis"]["ok"] is False


def test_an_unreachable_vllm_server_is_not_ready_and_its_address_is_not_shown(
    client: Client, settings: Any
) -> None:
    port = closed_port()
    settings.INFERENCE_BACKEND = "vllm"
    settings.VLLM_BASE_URL = f"http://127.0.0.1:{port}/v1"
    settings.VLLM_API_KEY = "secret-key-not-to-show"
    status, body = readyz(client)
    assert status == 503
    assert body["checks"]["generation"] == {
        "ok": False,
        "detail": "the vLLM server is unreachable",
        "ms": body["checks"]["generation"]["ms"],
    }
    text = json.dumps(body)
    assert str(port) not in text and "127.0.0.1" not in text and "secret" not in text


def test_readyz_answers_get_only(client: Client) -> None:
    assert client.post("/readyz").status_code == 405
