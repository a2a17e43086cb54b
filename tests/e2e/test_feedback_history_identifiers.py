"""Feedback, the admins' feedback queue, history search and the patient-identifier warning, in a
real browser against the live instance. Off-topic questions are refused without calling the
model, so these run in seconds."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from clinic_app.answers.identifiers import redact
from tests import live
from tests.conftest import OFF_TOPIC_QUESTION
from tests.e2e.conftest import VIEWPORT, sign_in, wait_until_connected

pytestmark = pytest.mark.e2e

ANSWER_TIMEOUT_MS = 180_000
REFUSAL = "No sufficiently relevant passage"
CASES_FILE = Path(__file__).parent.parent / "clinic_app" / "data" / "identifier_cases.json"


def ask(page: Page, question: str) -> None:
    page.get_by_label("Clinical question").fill(question)
    page.get_by_role("button", name="Ask", exact=True).click()


def wait_for_final_answer(page: Page) -> None:
    """The feedback box appears only once an answer is final (complete, refused, ...)."""
    expect(page.locator("#feedback")).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    expect(page.get_by_role("button", name="Ask", exact=True)).to_be_enabled()


def latest_answer(page: Page) -> dict[str, Any]:
    answer_id = page.locator("#history .history-item").first.get_attribute("data-answer-id")
    response = page.request.get(f"/api/answers/{answer_id}/")
    assert response.ok, f"/api/answers/{answer_id}/ answered {response.status}"
    return response.json()  # type: ignore[no-any-return]


def test_clinician_gives_feedback_on_a_refusal_and_a_guideline_admin_reviews_it(
    clinician_page: Page,
    browser: Browser,
    e2e_server: live.Server,
    demo_password: str,
    screenshots: Path,
) -> None:
    page = clinician_page
    ask(page, OFF_TOPIC_QUESTION)
    expect(page.locator("#answer-message")).to_contain_text(REFUSAL, timeout=ANSWER_TIMEOUT_MS)
    wait_for_final_answer(page)
    feedback = page.locator("#feedback")
    yes = feedback.get_by_role("button", name="Yes", exact=True)
    no = feedback.get_by_role("button", name="No", exact=True)
    expect(yes).to_have_attribute("aria-pressed", "false")
    expect(no).to_have_attribute("aria-pressed", "false")

    no.click()
    expect(page.get_by_label("What was wrong?")).to_be_focused()
    page.get_by_label("What was wrong?").select_option("unsupported")
    comment = f"The AF guideline should cover this (check {uuid.uuid4().hex[:8]})"
    page.get_by_label("Comment").fill(comment)
    page.get_by_role("button", name="Send feedback").click()
    expect(page.locator("#feedback-status")).to_have_text("Thanks — recorded")
    expect(no).to_have_attribute("aria-pressed", "true")
    expect(yes).to_have_attribute("aria-pressed", "false")
    expect(page).to_have_url(re.compile(r"/ask/$"), timeout=1_000)  # never left the page
    page.screenshot(path=screenshots / "feedback-recorded.png", full_page=True)
    answer = latest_answer(page)
    assert answer["feedback"]["category"] == "unsupported"
    assert answer["feedback"]["comment"] == comment

    # After a reload, reopening the answer from the history shows what was recorded.
    page.reload()
    wait_until_connected(page)
    expect(page.locator("#feedback")).to_be_hidden()
    page.locator(f'#history .history-item[data-answer-id="{answer["id"]}"]').click()
    expect(page.locator("#feedback-status")).to_have_text("Thanks — recorded")
    expect(no).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_label("What was wrong?")).to_have_value("unsupported")
    expect(page.get_by_label("Comment")).to_have_value(comment)

    # A guideline admin finds it in the queue of negative feedback and marks it reviewed.
    context = browser.new_context(base_url=e2e_server.base_url, viewport=VIEWPORT)  # type: ignore[arg-type]
    try:
        admin = context.new_page()
        sign_in(admin, "guideline-admin", demo_password)
        response = admin.goto("/guidelines/feedback/")
        assert response is not None and response.status == 200
        item = admin.locator(".feedback-item", has_text=comment)
        expect(item).to_have_count(1)
        expect(item).to_contain_text(f"Q: {OFF_TOPIC_QUESTION}")
        expect(item).to_contain_text("Not supported by the sources")
        expect(item).to_contain_text(REFUSAL)
        admin.screenshot(path=screenshots / "feedback-queue.png", full_page=True)
        item.get_by_role("button", name="Mark reviewed").click()
        expect(admin).to_have_url(re.compile(r"/guidelines/feedback/$"))
        expect(admin.locator(".feedback-item", has_text=comment)).to_have_count(0)
        admin.goto("/guidelines/feedback/?reviewed=1")
        expect(admin.locator(".feedback-item", has_text=comment)).to_contain_text(
            "reviewed by guideline-admin"
        )
    finally:
        context.close()


def test_helpful_feedback_is_one_click(clinician_page: Page) -> None:
    page = clinician_page
    ask(page, OFF_TOPIC_QUESTION)
    wait_for_final_answer(page)
    page.locator("#feedback").get_by_role("button", name="Yes", exact=True).click()
    expect(page.locator("#feedback-status")).to_have_text("Thanks — recorded")
    expect(page.locator("#feedback-form")).to_be_hidden()
    assert latest_answer(page)["feedback"]["helpful"] is True


def test_history_search_filters_questions_and_reopens_an_answer_as_shown(
    clinician_page: Page, screenshots: Path
) -> None:
    page = clinician_page
    first, second = (f"q{uuid.uuid4().hex[:8]}" for _ in range(2))
    football = f"Who won the football world cup in 2018? Ref {first}"
    oscar = f"Which film won the best picture Oscar in 2020? Ref {second}"
    for question in (football, oscar):
        ask(page, question)
        expect(page.locator("#answer-question")).to_have_text(f"Q: {question}")
        wait_for_final_answer(page)
    shown = page.locator("#answer-message").text_content()

    search = page.get_by_label("Search questions and answers")
    search.fill(first)  # filtered as the clinician types, without leaving the page
    items = page.locator("#history .history-item")
    expect(items).to_have_count(1)
    expect(items.first).to_have_text(football)
    expect(page.locator("#history-summary")).to_have_text(f"1 match for “{first}”")
    expect(page).to_have_url(re.compile(rf"/ask/\?q={first}$"))
    page.screenshot(path=screenshots / "history-search.png", full_page=True)

    items.first.click()
    expect(page.locator("#answer-question")).to_have_text(f"Q: {football}")
    expect(page.locator("#answer-message")).to_contain_text(REFUSAL)
    expect(page.locator("#basis")).to_be_visible()

    # Every word must match: the football question does not mention the Oscar reference.
    search.fill(f"football {second}")
    search.press("Enter")
    expect(items).to_have_count(0)
    expect(page.locator("#history-empty")).to_have_text("Nothing matches.")

    search.fill("")
    search.press("Enter")
    expect(items.nth(1)).to_be_visible()

    # Without the script's help (a reload with ?q=), the server filters the list itself.
    page.goto(f"/ask/?q={second}")
    expect(items).to_have_count(1)
    expect(items.first).to_have_text(oscar)
    expect(page.get_by_label("Search questions and answers")).to_have_value(second)
    items.first.click()
    expect(page.locator("#answer-question")).to_have_text(f"Q: {oscar}")
    expect(page.locator("#answer-message")).to_have_text(shown or "")


def test_identifier_warning_highlights_what_was_found_and_removes_it(
    clinician_page: Page, screenshots: Path
) -> None:
    page = clinician_page
    history_before = page.locator("#history .history-item").count()
    question = (
        "Patient MRN 1234567, phone 555-123-4567, DOB 01/02/1960: "
        "who won the football world cup in 2018?"
    )
    ask(page, question)
    warning = page.locator("#identifier-warning")
    expect(warning).to_be_visible()
    expect(warning.locator("mark")).to_have_text(["1234567", "555-123-4567", "01/02/1960"])
    for label in ("medical record number", "phone number", "date of birth"):
        expect(warning).to_contain_text(label)
    expect(warning.get_by_role("button", name="Remove them")).to_be_focused()
    expect(page.locator("#answer")).to_be_hidden()  # nothing was sent
    page.screenshot(path=screenshots / "identifier-warning.png", full_page=True)

    warning.get_by_role("button", name="Remove them").click()
    expect(warning).to_be_hidden()
    cleaned = (
        "Patient MRN [record number], phone [phone], DOB [date of birth]: "
        "who won the football world cup in 2018?"
    )
    expect(page.get_by_label("Clinical question")).to_have_value(cleaned)
    assert cleaned == redact(question)
    expect(page.get_by_label("Clinical question")).to_be_focused()

    page.get_by_role("button", name="Ask", exact=True).click()
    expect(warning).to_be_hidden()
    wait_for_final_answer(page)
    assert latest_answer(page)["question"] == cleaned
    expect(page.locator("#history .history-item")).to_have_count(history_before + 1)


def test_send_anyway_sends_the_question_unchanged(clinician_page: Page) -> None:
    page = clinician_page
    question = "Email results to jo.bloggs@example.org: who won the football world cup in 2018?"
    ask(page, question)
    warning = page.locator("#identifier-warning")
    expect(warning.locator("mark")).to_have_text(["jo.bloggs@example.org"])
    warning.get_by_role("button", name="Send anyway").click()
    expect(warning).to_be_hidden()
    wait_for_final_answer(page)
    assert latest_answer(page)["question"] == question


def test_editing_the_question_dismisses_the_warning(clinician_page: Page) -> None:
    page = clinician_page
    ask(page, "MRN 1234567: who won the football world cup in 2018?")
    expect(page.locator("#identifier-warning")).to_be_visible()
    page.get_by_label("Clinical question").press("End")
    page.get_by_label("Clinical question").press_sequentially(" ")
    expect(page.locator("#identifier-warning")).to_be_hidden()


def test_the_pages_detector_agrees_with_the_server_on_every_case(clinician_page: Page) -> None:
    from clinic_app.answers.identifiers import find_identifiers

    cases = json.loads(CASES_FILE.read_text())["cases"]
    texts = [c["text"] for c in cases]
    results = clinician_page.evaluate(
        """async (texts) => {
             // The module the page itself imports, with the configuration the page received.
             const { identifierDetector } = await import("/static/js/identifiers.js");
             const detector = identifierDetector(
               JSON.parse(document.getElementById("identifier-config").textContent));
             return texts.map((t) => ({
               found: detector.find(t).map((f) => [f.kind, f.text]),
               redacted: detector.redact(t) }));
           }""",
        texts,
    )
    disagreements = []
    for case, result in zip(cases, results, strict=True):
        python = [[f.kind, f.text] for f in find_identifiers(case["text"])]
        if result["found"] != python or result["found"] != case["found"]:
            disagreements.append(f"{case['text']!r}: page {result['found']}, server {python}")
        if result["redacted"] != redact(case["text"]):
            disagreements.append(f"{case['text']!r}: page redacts to {result['redacted']!r}")
    assert not disagreements, "\n".join(disagreements)
