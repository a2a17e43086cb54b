"""Mid-stream: a reload resumes the same answer to the end; Cancel stops it on the worker."""

from __future__ import annotations

import time
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import ANSWERABLE_QUESTION
from tests.e2e.conftest import wait_until_connected
from tests.e2e.test_clinician_flow import plain

pytestmark = pytest.mark.e2e

TIMEOUT_S = 240


def ask(page: Page, question: str) -> None:
    page.get_by_label("Clinical question").fill(question)
    page.get_by_role("button", name="Ask", exact=True).click()


def wait_for_text(page: Page) -> int:
    """Wait until some answer text has streamed in; returns its length."""
    page.wait_for_function(
        "() => document.getElementById('answer-text').textContent.length > 0",
        timeout=TIMEOUT_S * 1000,
    )
    return int(page.evaluate("() => document.getElementById('answer-text').textContent.length"))


def answer(page: Page, answer_id: str) -> dict[str, Any]:
    response = page.request.get(f"/api/answers/{answer_id}/")
    assert response.ok
    return response.json()  # type: ignore[no-any-return]


def pending_id(page: Page) -> str:
    value = page.evaluate("() => sessionStorage.getItem('pendingAnswerId')")
    assert value, "the page remembers the answer in progress"
    return str(value)


def test_reloading_mid_stream_resumes_and_completes_the_same_answer(
    clinician_page: Page, screenshots
) -> None:  # type: ignore[no-untyped-def]
    page = clinician_page
    ask(page, ANSWERABLE_QUESTION)
    wait_for_text(page)
    answer_id = pending_id(page)
    assert answer(page, answer_id)["status"] == "streaming"

    page.reload()
    wait_until_connected(page)
    # The page follows the same answer: text from the database, then the live stream.
    expect(page.locator("#answer-question")).to_have_text(f"Q: {ANSWERABLE_QUESTION}")
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline and answer(page, answer_id)["status"] == "streaming":
        time.sleep(0.5)
    final = answer(page, answer_id)
    assert final["status"] == "complete", final
    expect(page.locator("#answer-text")).not_to_have_class("answer-text streaming")
    # Rendered as Markdown once complete: the saved answer's words, without list markers.
    page.wait_for_function(
        "() => !document.getElementById('answer-text').classList.contains('streaming')"
    )
    assert plain(page.locator("#answer-text").text_content() or "") == plain(final["text"])
    page.screenshot(path=screenshots / "reloaded-mid-stream.png", full_page=True)
    # One question, one answer: the reload did not ask again.
    items = page.locator(f'#history .history-item[data-answer-id="{answer_id}"]')
    expect(items).to_have_count(1)


def test_cancel_stops_the_answer_and_says_so(clinician_page: Page, screenshots) -> None:  # type: ignore[no-untyped-def]
    page = clinician_page
    ask(page, ANSWERABLE_QUESTION)
    wait_for_text(page)
    answer_id = pending_id(page)
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#status")).to_have_text("Cancelled.", timeout=30_000)
    final = answer(page, answer_id)
    assert final["status"] == "cancelled"
    assert final["message"] == "The answer was cancelled."
    # What streamed before the cancel is kept and not mistaken for a complete answer.
    expect(page.locator("#answer-message")).to_contain_text("cancelled")
    expect(page.get_by_role("button", name="Ask", exact=True)).to_be_enabled()
    page.screenshot(path=screenshots / "cancelled.png", full_page=True)
    time.sleep(2)
    assert answer(page, answer_id)["status"] == "cancelled", "the worker did not finish it anyway"
