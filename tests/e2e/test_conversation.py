"""A three-turn conversation in a real browser (issue 16): follow-ups under the latest answer,
a reload during the second answer, the thread in the history, reopened whole."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import ANSWERABLE_QUESTION
from tests.e2e.conftest import wait_until_connected
from tests.e2e.test_reload_and_cancel import answer, ask, pending_id

pytestmark = pytest.mark.e2e

TIMEOUT_S = 240
SECOND = "And what INR should warfarin target then?"
THIRD = "And which rate-control drugs should be avoided if her ejection fraction is reduced?"


def wait_until_final(page: Page) -> None:
    """The answer on display is finished and the follow-up box is offered under it."""
    page.wait_for_function(
        "() => !document.getElementById('answer-text').classList.contains('streaming')"
        " && !document.getElementById('follow-up-form').hidden",
        timeout=TIMEOUT_S * 1000,
    )


def follow_up(page: Page, question: str) -> None:
    page.get_by_label("Follow-up question").fill(question)
    page.get_by_role("button", name="Ask follow-up").click()


def test_a_three_turn_conversation_survives_a_reload_and_reopens_whole(
    clinician_page: Page, screenshots
) -> None:  # type: ignore[no-untyped-def]
    page = clinician_page
    ask(page, ANSWERABLE_QUESTION)
    wait_until_final(page)
    first_id = page.locator("#history .history-item").first.get_attribute("data-answer-id")

    # Turn 2: the first answer moves up into the conversation; reload while the second streams.
    follow_up(page, SECOND)
    page.wait_for_function(
        "(q) => document.getElementById('answer-question').textContent === q"
        " && document.getElementById('answer-text').classList.contains('streaming')"
        " && document.getElementById('answer-text').textContent.length > 0",
        arg=f"Q: {SECOND}",
        timeout=TIMEOUT_S * 1000,
    )
    second_id = pending_id(page)
    turns = page.locator("#thread-turns > li")
    expect(turns).to_have_count(1)
    expect(turns.first).to_contain_text(ANSWERABLE_QUESTION)
    page.screenshot(path=screenshots / "conversation-second-streaming.png", full_page=True)
    page.reload()
    wait_until_connected(page)
    # The page resumes the same answer and fetches the turn before it from the server.
    expect(page.locator("#answer-question")).to_have_text(f"Q: {SECOND}")
    expect(turns).to_have_count(1)
    expect(turns.first).to_contain_text(ANSWERABLE_QUESTION)
    wait_until_final(page)
    second = answer(page, second_id)
    assert second["status"] in ("complete", "refused"), second
    assert second["turn"] == 2 and str(second["follow_up_of"]) == first_id

    # Turn 3.
    follow_up(page, THIRD)
    expect(page.locator("#answer-question")).to_have_text(f"Q: {THIRD}")
    wait_until_final(page)
    expect(turns).to_have_count(2)
    expect(turns.nth(1)).to_contain_text(SECOND)
    page.screenshot(path=screenshots / "conversation-three-turns.png", full_page=True)

    # The history lists the conversation once, by its first question, with its length.
    # (Other tests on this server may have asked the same first question: ours is the latest.)
    entry = page.locator("#history li").first
    expect(entry).to_contain_text(ANSWERABLE_QUESTION)
    expect(entry).to_contain_text("3 questions")
    thread_id = entry.locator(".history-item").get_attribute("data-thread-id")
    expect(page.locator(f'#history .history-item[data-thread-id="{thread_id}"]')).to_have_count(1)

    # New question clears the page; the history reopens the conversation whole.
    page.get_by_role("button", name="New question").click()
    expect(page.locator("#thread")).to_be_hidden()
    expect(page.locator("#answer")).to_be_hidden()
    entry.locator(".history-item").click()
    expect(turns).to_have_count(2)
    expect(page.locator("#answer-question")).to_have_text(f"Q: {THIRD}")
    expect(page.locator("#follow-up-form")).to_be_visible()
    page.screenshot(path=screenshots / "conversation-reopened.png", full_page=True)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not page.locator("#thread-turns .source-link").count():
        time.sleep(0.2)
    # Each earlier answer keeps its own sources (numbers restart in each answer).
    if second["citations"]:
        expect(turns.nth(1).locator(".source-link").first).to_contain_text("[S1]")
