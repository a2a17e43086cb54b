"""The clinician's page on the production stack, in a real browser.

uvicorn serves the page; questions go to a Celery worker process over Redis; the worker asks a
real vLLM CPU server (the OpenAI-compatible API, Meditron's prompt layout) and streams back
through the Redis channel layer; everything is stored in PostgreSQL. Only the model differs from
production: a small random Llama-2-shaped model (``make vllm`` builds it), whose text is
meaningless but arrives token by token at a pace a test can reload or cancel in.

Covers: ask and watch it stream, open a source, reload mid-stream and see the text so far at
once and then the whole answer, cancel (stopped on the vLLM server too), feedback, history, and
the identifier warning. Screenshots go to ``test-artifacts/screenshots/production-*.png``.
"""

from __future__ import annotations

import os
import re
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
from playwright.sync_api import Browser, Page, expect

from tests import live
from tests.conftest import ANSWERABLE_QUESTION
from tests.e2e.conftest import TRACK_SOCKETS, VIEWPORT, sign_in, wait_until_connected
from tests.e2e.test_clinician_flow import watch_stream
from tests.inference.conftest import ROOT, VLLMServer, VLLMStartError, launch_vllm_server

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

PG_ADMIN = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_E2E_REDIS_URL", "redis://127.0.0.1:6379/12")
SMALL_MODEL = Path(os.environ.get("MODELS_DIR", ROOT / "var" / "models")) / "small-llama"
SERVED_NAME = "small-llama"
CONTEXT_TOKENS = 4096
# An answer must stream for several seconds, so that a test can reload or cancel in it, and no
# longer: the token limit is what this machine's vLLM server writes in STREAM_S (measured when
# the module starts: ~14 tokens/s on a 2-core AVX2 CPU, ~80 on an AVX-512 one), within bounds.
STREAM_S = 15.0
ANSWER_TOKENS_BOUNDS = (200, 900)
TIMEOUT_S = 240


@pytest.fixture(scope="module")
def vllm() -> Iterator[VLLMServer]:
    try:
        with launch_vllm_server(
            model_dir=SMALL_MODEL,
            served_name=SERVED_NAME,
            max_model_len=CONTEXT_TOKENS,
            log_path=ROOT / "test-artifacts" / "vllm-production-e2e.log",
            # Logs "Aborted request" lines: the cancel test reads them.
            extra_args=("--enable-log-requests",),
        ) as server:
            yield server
    except VLLMStartError as exc:
        pytest.fail(str(exc), pytrace=False)


def tokens_per_s(server: VLLMServer, tokens: int = 48) -> float:
    """How fast ``server`` writes: one greedy completion of ``tokens`` tokens, end of text
    ignored (the random model may write one at any point)."""
    started = time.monotonic()
    response = httpx.post(
        f"{server.base_url}/v1/completions",
        json={
            "model": server.model,
            "prompt": "Which patients should receive oral anticoagulation?",
            "max_tokens": tokens,
            "temperature": 0.0,
            "ignore_eos": True,
        },
        timeout=120.0,
    )
    response.raise_for_status()
    written = int(response.json()["usage"]["completion_tokens"])
    return written / (time.monotonic() - started)


@pytest.fixture(scope="module")
def answer_tokens(vllm: VLLMServer) -> int:
    """The answers' token limit on this machine: about STREAM_S seconds of streaming."""
    low, high = ANSWER_TOKENS_BOUNDS
    return max(low, min(high, round(tokens_per_s(vllm) * STREAM_S)))


@pytest.fixture(scope="module")
def stack(vllm: VLLMServer, answer_tokens: int) -> Iterator[live.Server]:
    """PostgreSQL database, Redis db, Celery worker on vLLM, and the ASGI server, all for this module."""
    name = f"clinic_e2e_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    redis.Redis.from_url(REDIS_URL).flushdb()
    var_dir = Path(tempfile.mkdtemp(prefix="clinic-e2e-prod-"))
    env = live.app_env(
        var_dir,
        DATABASE_URL=PG_ADMIN.rsplit("/", 1)[0] + f"/{name}",
        REDIS_URL=REDIS_URL,
        INFERENCE_BACKEND="vllm",
        VLLM_BASE_URL=vllm.base_url,
        VLLM_MODEL=SERVED_NAME,
        VLLM_CONTEXT_TOKENS=str(CONTEXT_TOKENS),
        ANSWER_MAX_TOKENS=str(answer_tokens),
    )
    worker: live.Process | None = None
    server: live.Server | None = None
    try:
        live.seed(env)
        live.manage(env, "collectstatic", "--noinput", "-v0")
        worker = live.start_worker(env, name="e2e-prod-worker")
        server = live.start_server(env, name="e2e-prod-server")
        server.extra.append(worker)
        yield server
    finally:
        if server is not None:
            server.process.stop()
        if worker is not None:
            worker.stop()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        redis.Redis.from_url(REDIS_URL).flushdb()
        shutil.rmtree(var_dir, ignore_errors=True)


@pytest.fixture
def page(browser: Browser, stack: live.Server, demo_password: str) -> Iterator[Page]:
    """The demo clinician signed in on the production stack, its socket connected."""
    context = browser.new_context(base_url=stack.base_url, viewport=VIEWPORT)  # type: ignore[arg-type]
    context.set_default_timeout(20_000)
    context.add_init_script(TRACK_SOCKETS)
    try:
        page = context.new_page()
        sign_in(page, "clinician", demo_password)
        wait_until_connected(page)
        yield page
    finally:
        context.close()


# ---------------------------------------------------------------------------------- helpers


def ask(page: Page, question: str) -> None:
    page.get_by_label("Clinical question").fill(question)
    page.get_by_role("button", name="Ask", exact=True).click()


def text_length(page: Page) -> int:
    return int(page.evaluate("() => document.getElementById('answer-text').textContent.length"))


def wait_for_length(page: Page, at_least: int) -> None:
    page.wait_for_function(
        f"() => document.getElementById('answer-text').textContent.length >= {at_least}",
        timeout=TIMEOUT_S * 1000,
    )


def pending_id(page: Page) -> int:
    value = page.evaluate("() => sessionStorage.getItem('pendingAnswerId')")
    assert value, "the page remembers the answer in progress"
    return int(value)


def answer_api(page: Page, answer_id: int) -> dict[str, Any]:
    response = page.request.get(f"/api/answers/{answer_id}/")
    assert response.ok, f"/api/answers/{answer_id}/ answered {response.status}"
    return response.json()  # type: ignore[no-any-return]


def wait_final(page: Page, answer_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        answer = answer_api(page, answer_id)
        if answer["status"] not in ("pending", "streaming"):
            return answer
        time.sleep(0.5)
    pytest.fail(f"answer {answer_id} still unfinished after {TIMEOUT_S}s")


def row(stack: live.Server, answer_id: int) -> dict[str, Any]:
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        status, text, model, backend = conn.execute(
            "SELECT status, text, model_name, backend FROM clinic_app_answer WHERE id = %s",
            (answer_id,),
        ).fetchone()  # type: ignore[misc]
    return {"status": status, "text": text, "model": model, "backend": backend}


# ------------------------------------------------------------------------------------ tests


def test_an_answer_streams_from_vllm_through_celery_and_redis_and_opens_its_sources(
    page: Page, stack: live.Server, screenshots: Path
) -> None:
    ask(page, ANSWERABLE_QUESTION)

    def screenshot_mid_stream(lengths: list[int]) -> None:
        if len(lengths) == 5:
            page.screenshot(path=screenshots / "production-streaming.png", full_page=True)

    lengths = watch_stream(page, screenshot_mid_stream)
    assert len(lengths) >= 5 and lengths == sorted(lengths), f"streamed in increments: {lengths}"
    # However long its words (this model writes few spaces), the answer wraps inside the page.
    overflow = page.evaluate(
        "() => document.scrollingElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px"

    answer_id = int(page.locator("#history .history-item").first.get_attribute("data-answer-id"))  # type: ignore[arg-type]
    answer = answer_api(page, answer_id)
    assert answer["status"] == "complete", answer
    # What the worker stored in PostgreSQL is what the page shows, from the vLLM server.
    stored = row(stack, answer_id)
    assert stored == {
        "status": "complete",
        "text": answer["text"],
        "model": SERVED_NAME,
        "backend": "vllm",
    }
    expect(page.locator("#basis")).to_be_visible()
    expect(page.locator("#basis-list")).to_contain_text(f"{SERVED_NAME}")
    expect(page.locator("#basis-list")).to_contain_text("(vllm)")
    expect(page.locator("#disclaimer")).to_be_visible()

    sources = page.locator("#source-list .source-link")
    assert sources.count() == len(answer["citations"]) >= 1
    sources.first.click()
    first = answer["citations"][0]["passage"]
    expect(page.locator("#evidence")).to_be_visible()
    expect(page.locator("#evidence-title")).to_have_text(first["guideline"]["title"])
    assert page.locator("#evidence-text").text_content() == first["text"]
    page.screenshot(path=screenshots / "production-evidence.png", full_page=True)
    worker_log = stack.extra[0].log()
    assert "generate_answer[" in worker_log and "succeeded" in worker_log


def test_reloading_mid_stream_shows_the_text_so_far_then_the_whole_answer(
    page: Page, stack: live.Server, screenshots: Path
) -> None:
    ask(page, ANSWERABLE_QUESTION)
    wait_for_length(page, 200)
    answer_id = pending_id(page)
    page.reload()
    wait_until_connected(page)
    # At once, from the database: the text streamed before the reload, still streaming.
    page.wait_for_function("() => document.getElementById('answer-text').textContent.length >= 200")
    first = page.evaluate(
        """() => ({text: document.getElementById('answer-text').textContent,
                   streaming: document.getElementById('answer-text').classList.contains('streaming')})"""
    )
    assert first["streaming"], "the page resumed mid-answer, not after it"
    page.screenshot(path=screenshots / "production-resumed.png", full_page=True)
    final = wait_final(page, answer_id)
    assert final["status"] == "complete", final
    expect(page.locator("#answer-text")).not_to_have_class(re.compile(r"streaming"))
    # What the page showed after the reload was the start of the stored answer, and the live
    # stream carried it on to the end.
    assert final["text"].startswith(first["text"]), (first["text"][-80:], final["text"][:400])
    assert len(final["text"]) > len(first["text"])
    assert page.evaluate("() => document.getElementById('answer-text').dataset.gap") is None
    shown = page.locator("#answer-text").text_content()
    items = page.locator(f'#history .history-item[data-answer-id="{answer_id}"]')
    expect(items).to_have_count(1)  # the reload did not ask again
    items.first.click()
    expect(page.locator("#answer-text")).to_have_text(shown or "")


def test_cancel_stops_the_answer_on_the_worker_and_the_vllm_server(
    page: Page, stack: live.Server, vllm: VLLMServer, answer_tokens: int, screenshots: Path
) -> None:
    ask(page, ANSWERABLE_QUESTION)
    wait_for_length(page, 50)
    answer_id = pending_id(page)
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#status")).to_have_text("Cancelled.", timeout=30_000)
    expect(page.locator("#answer-message")).to_contain_text("cancelled")
    page.screenshot(path=screenshots / "production-cancelled.png", full_page=True)
    final = answer_api(page, answer_id)
    assert final["status"] == "cancelled"
    stored = row(stack, answer_id)
    assert stored["status"] == "cancelled" and stored["text"] == final["text"]
    # Every token is at least one character: a whole answer is longer than its token limit.
    assert len(final["text"]) < answer_tokens, "stopped early, not at the token limit"
    deadline = time.monotonic() + 10
    while f"answer-{answer_id}" not in aborted(vllm.log()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert f"answer-{answer_id}" in aborted(vllm.log()), "the vLLM server aborted the request"


def aborted(log: str) -> str:
    return "\n".join(line for line in log.splitlines() if "abort" in line.lower())


def test_feedback_history_and_the_identifier_warning(
    page: Page, stack: live.Server, screenshots: Path
) -> None:
    # The identifier warning stops the question before anything is sent.
    ask(page, f"Patient phone 555-123-4567: {ANSWERABLE_QUESTION}")
    warning = page.locator("#identifier-warning")
    expect(warning).to_be_visible()
    expect(warning.locator("mark")).to_have_text(["555-123-4567"])
    page.screenshot(path=screenshots / "production-identifier-warning.png", full_page=True)
    warning.get_by_role("button", name="Remove them").click()
    expect(page.get_by_label("Clinical question")).to_have_value(
        f"Patient phone [phone]: {ANSWERABLE_QUESTION}"
    )
    page.get_by_role("button", name="Ask", exact=True).click()
    expect(page.locator("#feedback")).to_be_visible(timeout=TIMEOUT_S * 1000)
    answer_id = int(page.locator("#history .history-item").first.get_attribute("data-answer-id"))  # type: ignore[arg-type]
    assert "555-123-4567" not in answer_api(page, answer_id)["question"]

    # Feedback on it, recorded in PostgreSQL.
    page.locator("#feedback").get_by_role("button", name="No", exact=True).click()
    page.get_by_label("What was wrong?").select_option("unsupported")
    page.get_by_label("Comment").fill("Random text from the test model")
    page.get_by_role("button", name="Send feedback").click()
    expect(page.locator("#feedback-status")).to_have_text("Thanks — recorded")
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        helpful, category = conn.execute(
            "SELECT helpful, category FROM clinic_app_feedback WHERE answer_id = %s", (answer_id,)
        ).fetchone()  # type: ignore[misc]
    assert (helpful, category) == (False, "unsupported")

    # History: searchable, and reopening shows the answer as it was shown.
    shown = page.locator("#answer-text").text_content()
    page.reload()
    wait_until_connected(page)
    page.get_by_label("Search questions and answers").fill("[phone]")
    items = page.locator("#history .history-item")
    expect(items).to_have_count(1)
    items.first.click()
    expect(page.locator("#answer-question")).to_have_text(
        f"Q: Patient phone [phone]: {ANSWERABLE_QUESTION}"
    )
    expect(page.locator("#answer-text")).to_have_text(shown or "")
    expect(page.locator("#feedback-status")).to_have_text("Thanks — recorded")
    page.screenshot(path=screenshots / "production-history.png", full_page=True)
