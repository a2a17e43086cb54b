"""A clinician's visit, in a real browser against a live instance on the embedded default."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import ANSWERABLE_QUESTION, OFF_TOPIC_QUESTION
from tests.e2e.conftest import sign_in, wait_until_connected

pytestmark = pytest.mark.e2e

ANSWER_TIMEOUT_S = 180
AF_TITLE = "Atrial Fibrillation"
CITE = re.compile(r"^\[S(\d+)\]")


def ask(page: Page, question: str) -> None:
    page.get_by_label("Clinical question").fill(question)
    page.get_by_role("button", name="Ask", exact=True).click()


def watch_stream(page: Page, on_progress: Any = None) -> list[int]:
    """Poll the answer while it streams; returns the distinct non-empty text lengths seen.

    ``on_progress(lengths)`` is called each time a new length appears (for a mid-stream screenshot).
    """
    lengths: list[int] = []
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    while time.monotonic() < deadline:
        state = page.evaluate(
            """() => { const t = document.getElementById('answer-text');
                       return {length: t.textContent.length, streaming: t.classList.contains('streaming')}; }"""
        )
        if not state["streaming"]:
            return lengths
        if state["length"] and (not lengths or lengths[-1] != state["length"]):
            lengths.append(state["length"])
            if on_progress:
                on_progress(lengths)
        time.sleep(0.05)
    pytest.fail(f"the answer did not complete in {ANSWER_TIMEOUT_S}s; lengths seen: {lengths}")


def plain(text: str) -> str:
    """Text without Markdown list markers, bold markers and whitespace."""
    text = re.sub(r"(?m)^\s*(?:[-*•]|\d{1,3}[.)])\s+", "", text).replace("**", "")
    return re.sub(r"\s+", "", text)


def latest_answer(page: Page) -> dict[str, Any]:
    """The persisted answer behind the newest history entry, from the page's own JSON API."""
    answer_id = page.locator("#history .history-item").first.get_attribute("data-answer-id")
    response = page.request.get(f"/api/answers/{answer_id}/")
    assert response.ok, f"/api/answers/{answer_id}/ answered {response.status}"
    return response.json()  # type: ignore[no-any-return]


def expect_evidence_of(page: Page, citation: dict[str, Any]) -> None:
    passage = citation["passage"]
    panel = page.locator("#evidence")
    expect(panel).to_be_visible()
    expect(panel).to_be_focused()
    expect(page.locator("#evidence-title")).to_have_text(passage["guideline"]["title"])
    expect(page.locator("#evidence-section")).to_have_text(f"Section: {passage['section']}")
    shown = page.locator("#evidence-text").text_content()
    assert shown == passage["text"], "the panel shows the cited passage, word for word"


def test_clinician_signs_in_watches_a_cited_answer_stream_and_opens_its_evidence(
    page: Page, demo_password: str, screenshots: Path
) -> None:
    sign_in(page, "clinician", demo_password)
    expect(page).to_have_url(re.compile(r"/ask/$"))
    expect(page.get_by_text("Signed in as clinician")).to_be_visible()
    wait_until_connected(page)

    def screenshot_mid_stream(lengths: list[int]) -> None:
        if len(lengths) == 3:
            page.screenshot(path=screenshots / "answer-streaming.png", full_page=True)

    # Record, in the page, whether the quotes appeared before any generated text did.
    page.evaluate(
        """() => { window.__order = [];
             const quotes = document.getElementById('quotes'), text = document.getElementById('answer-text');
             new MutationObserver(() => {
               if (!quotes.hidden && !window.__order.includes('quotes')) { window.__order.push('quotes'); }
               if (text.textContent && !window.__order.includes('text')) { window.__order.push('text'); }
             }).observe(document.getElementById('answer'), {subtree: true, childList: true, attributes: true, characterData: true}); }"""
    )
    ask(page, ANSWERABLE_QUESTION)
    expect(page.locator("#quotes")).to_be_visible(timeout=ANSWER_TIMEOUT_S * 1000)
    page.screenshot(path=screenshots / "evidence-first.png", full_page=True)
    lengths = watch_stream(page, screenshot_mid_stream)
    assert len(lengths) >= 3, f"the answer arrives in increments, not at once: {lengths}"
    assert lengths == sorted(lengths), f"streamed text only grows: {lengths}"

    # Complete: the caret is gone, the form is usable again, and the page shows what was saved.
    expect(page.locator("#answer-text")).not_to_have_class(re.compile(r"\bstreaming\b"))
    expect(page.get_by_role("button", name="Ask", exact=True)).to_be_enabled()
    answer = latest_answer(page)
    assert answer["status"] == "complete", answer
    # The page says what was saved: a length-limit note only when the answer was cut there.
    if any(flag["kind"] == "truncated" for flag in answer["flags"]):
        expect(page.locator("#answer-message")).to_contain_text("length limit")
    else:
        expect(page.locator("#answer-message")).to_be_hidden()
    assert answer["question"] == ANSWERABLE_QUESTION
    expect(page.locator("#answer-question")).to_have_text(f"Q: {ANSWERABLE_QUESTION}")
    # Once complete the answer is shown as (safe) Markdown: the same words, without list
    # markers and line breaks.
    assert plain(page.locator("#answer-text").text_content() or "") == plain(answer["text"])
    # "What the guidelines say" came first, and shows the stored quotes word for word (their
    # own **bold** rendered as bold).
    assert page.evaluate("() => window.__order")[:1] == ["quotes"]
    quotes = page.locator("#quotes-list blockquote")
    expect(quotes).to_have_count(len(answer["evidence"]))
    assert answer["evidence"], "an answered question leads with the sources' own words"
    for i, item in enumerate(answer["evidence"]):
        assert plain(quotes.nth(i).text_content() or "") == plain(item["text"])
        assert "**" not in (quotes.nth(i).text_content() or "")
    expect(page.locator("#summary-heading")).to_be_visible()
    expect(page.locator("#history .history-item").first).to_have_text(ANSWERABLE_QUESTION)

    # Sources: [S1] is the atrial fibrillation guideline.
    citations = {c["number"]: c for c in answer["citations"]}
    assert 1 in citations, answer["citations"]
    first = citations[1]
    assert AF_TITLE in first["passage"]["guideline"]["title"], first["passage"]["guideline"]
    sources = page.locator("#source-list .source-link")
    expect(page.locator("#sources")).to_be_visible()
    expect(sources).to_have_count(len(citations))
    expect(sources.first).to_have_text(
        f"[S1] {first['passage']['guideline']['title']} — {first['passage']['section']}"
    )

    disclaimer = page.locator("#disclaimer")
    expect(disclaimer).to_be_visible()
    expect(disclaimer).to_contain_text("not a substitute for clinical judgment")
    page.screenshot(path=screenshots / "answer-complete.png", full_page=True)

    # A summary the checks found mostly unsupported is folded away behind the quotes, with
    # the reason, and stays one click away.
    withheld = [f for f in answer["flags"] if f["kind"] == "summary_withheld"]
    if withheld:
        expect(page.locator("#summary-withheld")).to_be_visible()
        expect(page.locator("#summary-withheld")).to_contain_text(withheld[0]["detail"])
        expect(page.locator("#answer-text")).to_be_hidden()
        page.screenshot(path=screenshots / "summary-withheld.png", full_page=True)
        page.locator("#summary-show").click()
    else:
        expect(page.locator("#summary-withheld")).to_be_hidden()
    expect(page.locator("#answer-text")).to_be_visible()

    # An inline citation marker, when the model wrote one, opens the passage it points to.
    markers = page.locator("#answer-text .cite")
    if markers.count():
        number = int(CITE.match(markers.first.text_content() or "").group(1))  # type: ignore[union-attr]
        markers.first.click()
        expect_evidence_of(page, citations[number])
        page.locator("#evidence-close").click()
        expect(page.locator("#evidence")).to_be_hidden()

    sources.first.click()
    expect_evidence_of(page, first)
    expect(page.locator("#evidence-title")).to_contain_text(AF_TITLE)
    page.screenshot(path=screenshots / "evidence-panel.png", full_page=True)


def test_clinician_is_told_when_no_guideline_passage_is_relevant(
    clinician_page: Page, screenshots: Path
) -> None:
    page = clinician_page
    ask(page, OFF_TOPIC_QUESTION)
    message = page.locator("#answer-message")
    expect(message).to_contain_text(
        "No sufficiently relevant passage", timeout=ANSWER_TIMEOUT_S * 1000
    )
    expect(page.locator("#status")).to_have_text("No answer: insufficient evidence.")
    expect(page.locator("#answer-text")).to_have_text("")
    expect(page.locator("#answer-text")).not_to_have_class(re.compile(r"\bstreaming\b"))
    expect(page.locator("#sources")).to_be_hidden()
    expect(page.get_by_role("button", name="Ask", exact=True)).to_be_enabled()
    assert latest_answer(page)["status"] == "refused"
    page.screenshot(path=screenshots / "answer-refused.png", full_page=True)


@pytest.mark.parametrize("path", ["/guidelines/", "/audit/"])
def test_clinician_cannot_open_guideline_admin_or_audit_pages(
    clinician_page: Page, path: str
) -> None:
    response = clinician_page.goto(path)
    assert response is not None and response.status == 403
    expect(clinician_page.get_by_role("heading", level=1)).to_have_text("Not permitted")


def test_clinician_is_sent_to_the_admin_login_from_the_admin_site(clinician_page: Page) -> None:
    response = clinician_page.goto("/admin/")
    assert response is not None and response.request.redirected_from is not None
    expect(clinician_page).to_have_url(re.compile(r"/admin/login/\?next=/admin/$"))
    expect(clinician_page.locator("#login-form")).to_be_visible()


def test_anonymous_visitor_to_the_ask_page_is_sent_to_sign_in(
    page: Page, demo_password: str
) -> None:
    page.goto("/ask/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/ask/$"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("#ask-form")).to_have_count(0)

    # Signing in from there leads back to the page that was asked for.
    page.get_by_label("Username").fill("clinician")
    page.get_by_label("Password").fill(demo_password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/ask/$"))


def test_too_long_question_is_rejected_with_a_clear_message(
    clinician_page: Page, screenshots: Path
) -> None:
    page = clinician_page
    history_before = page.locator("#history .history-item").count()
    question = " ".join([ANSWERABLE_QUESTION] * 14)
    assert len(question) > 1000
    # The textarea's maxlength stops a person; the server must stop anything else.
    page.evaluate("document.getElementById('question').removeAttribute('maxlength')")
    ask(page, question)
    assert len(page.locator("#question").input_value()) == len(question)

    message = page.locator("#answer-message")
    expect(message).to_contain_text("limited to 1000 characters")
    expect(message).to_contain_text(f"this one has {len(question)}")
    expect(message).to_have_class(re.compile(r"\berror\b"))
    expect(page.get_by_role("button", name="Ask", exact=True)).to_be_enabled()
    expect(page.locator("#history .history-item")).to_have_count(history_before)
    page.screenshot(path=screenshots / "question-too-long.png", full_page=True)


def test_rejected_question_does_not_leave_the_page_looking_busy(clinician_page: Page) -> None:
    page = clinician_page
    page.evaluate("document.getElementById('question').removeAttribute('maxlength')")
    ask(page, "x" * 1001)
    expect(page.locator("#answer-message")).to_contain_text("limited to 1000 characters")
    expect(page.locator("#answer-text")).not_to_have_class(
        re.compile(r"\bstreaming\b"), timeout=2_000
    )
    expect(page.locator("#status")).not_to_have_text("Sending…", timeout=2_000)
