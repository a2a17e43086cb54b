"""An answer's flagged sentences are marked in place, with the reason on hover and on focus."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page, expect

from tests import live
from tests.e2e.conftest import sign_in, wait_until_connected

pytestmark = pytest.mark.e2e

SUPPORTED = "Offer anticoagulation when the CHA2DS2-VASc score is 2 or more [S1]."
WEAK = "Aspirin alone is an adequate alternative for most patients [S1]."
UNCITED = "Review the decision every year."
# A stored answer, as the worker would have persisted it after its checks.
CREATE = """
import json
from django.contrib.auth.models import User
from django.utils import timezone
from clinic_app.models import Answer, AnswerStatus, Citation, Passage, Question
text = {text!r}
QUOTE = {quote!r}
user = User.objects.get(username="clinician")
question = Question.objects.create(user=user, text="Which patients with AF need anticoagulation?")
answer = Answer.objects.create(
    question=question, status=AnswerStatus.COMPLETE, text=text, disclaimer="Check the sources.",
    backend="transformers", model_name="test", index_version=1, top_score=0.7,
    finished_at=timezone.now(), started_at=timezone.now(),
    flags=[
        {{"kind": "weak_support", "detail": "few of its words appear in [S1]",
          "sentence": {weak!r}}},
        {{"kind": "uncited_sentence", "detail": {uncited!r}}},
    ],
    evidence=[{{"source": 1, "text": QUOTE, "score": 0.9, "section": "Anticoagulation",
               "guideline": {{"key": "af", "title": "AF", "organisation": "ACC", "year": 2023}}}}],
)
Citation.objects.create(answer=answer, number=1, passage=Passage.objects.order_by("pk").first(),
                        score=0.7, cited=True)
print(json.dumps({{"id": answer.pk}}))
"""


# A quote as the guidelines write it (markdown bold), with markup that must stay text.
QUOTE = '**Offer** a DOAC <img src=x onerror="window.pwned=2">'


def stored_answer(server: live.Server, text: str, weak: str = "", uncited: str = "") -> int:
    out = live.manage(
        server.env, "shell", "-c", CREATE.format(text=text, weak=weak, uncited=uncited, quote=QUOTE)
    )
    return int(json.loads(out.strip().splitlines()[-1])["id"])


def test_a_complete_answer_is_shown_as_safe_markdown(
    clinician_page: Page, e2e_server: live.Server
) -> None:
    text = (
        "Anticoagulate when:\n- the score is 2 or more [S1]\n- there is **no** contraindication "
        '<img src=x onerror="window.pwned=1">\n\n1. Review every year.\n2. Reassess bleeding.'
    )
    answer_id = stored_answer(e2e_server, text)
    page = clinician_page
    page.reload()
    wait_until_connected(page)
    page.locator(f'#history .history-item[data-answer-id="{answer_id}"]').click()
    body = page.locator("#answer-text")
    expect(body.locator("p")).to_have_text("Anticoagulate when:")
    expect(body.locator("ul > li")).to_have_count(2)
    expect(body.locator("ol > li")).to_have_count(2)
    expect(body.locator("ul > li strong")).to_have_text("no")
    expect(body.locator("ul > li button.cite")).to_have_text("[S1]")
    # Markup the model wrote stays text: no element is created, nothing runs.
    expect(body.locator("img")).to_have_count(0)
    expect(body.locator("ul > li").nth(1)).to_contain_text('<img src=x onerror="window.pwned=1">')
    # The quotes too: the guideline's bold as bold, its markup as text.
    quote = page.locator("#quotes-list blockquote")
    expect(quote.locator("strong")).to_have_text("Offer")
    expect(quote).to_contain_text('a DOAC <img src=x onerror="window.pwned=2">')
    expect(page.locator("#quotes-list img")).to_have_count(0)
    assert page.evaluate("() => window.pwned") is None


def test_flagged_sentences_are_marked_with_their_reason(
    clinician_page: Page, e2e_server: live.Server, screenshots
) -> None:  # type: ignore[no-untyped-def]
    text = f"{SUPPORTED} {WEAK} {UNCITED}"
    out = live.manage(
        e2e_server.env,
        "shell",
        "-c",
        CREATE.format(text=text, weak=WEAK, uncited=UNCITED, quote=QUOTE),
    )
    answer_id = json.loads(out.strip().splitlines()[-1])["id"]
    page = clinician_page
    page.reload()
    wait_until_connected(page)
    page.locator(f'#history .history-item[data-answer-id="{answer_id}"]').click()

    marks = page.locator("#answer-text mark.weak")
    expect(marks).to_have_count(2)
    expect(marks.nth(0)).to_have_text(WEAK)
    expect(marks.nth(0).locator("button.cite")).to_have_count(1)  # the citation still opens
    expect(marks.nth(0)).to_have_attribute(
        "title", "Weakly supported: few of its words appear in [S1]"
    )
    expect(marks.nth(1)).to_have_text(UNCITED)
    expect(marks.nth(1)).to_have_attribute(
        "data-reason", "No citation: no source backs this sentence."
    )
    # The supported sentence is not marked, and the text reads exactly as stored.
    assert page.locator("#answer-text").text_content() == text
    # Keyboard users reach the mark and get the reason.
    marks.nth(1).focus()
    expect(marks.nth(1)).to_be_focused()
    page.screenshot(path=screenshots / "weak-sentences.png", full_page=True)


def test_the_auditor_reads_the_answer_rendered_and_marked_as_the_clinician_did(
    page: Page, e2e_server: live.Server, demo_password: str, screenshots
) -> None:  # type: ignore[no-untyped-def]
    text = f"Anticoagulate when:\n- {SUPPORTED}\n- {WEAK}\n\n{UNCITED} **Always** recheck."
    answer_id = stored_answer(e2e_server, text, weak=WEAK, uncited=UNCITED)
    out = live.manage(
        e2e_server.env,
        "shell",
        "-c",
        "import json\nfrom clinic_app.audit.record import audit_record\n"
        f"e = audit_record(action='answer.complete', actor='clinician', object_type='answer',"
        f" object_id={answer_id})\nprint(json.dumps({{'seq': e.seq}}))",
    )
    seq = json.loads(out.strip().splitlines()[-1])["seq"]
    sign_in(page, "auditor", demo_password)
    page.goto(f"/audit/events/{seq}/")
    body = page.locator(f'.answer-text[data-answer-id="{answer_id}"]')
    expect(body).to_have_attribute("data-rendered", "true")
    # The same renderer as the ask page: lists, bold, marked sentences, markers as links.
    expect(body.locator("ul > li")).to_have_count(2)
    marks = body.locator("mark.weak")
    expect(marks).to_have_count(2)
    expect(marks.nth(0)).to_have_text(WEAK)
    expect(marks.nth(0)).to_have_attribute(
        "title", "Weakly supported: few of its words appear in [S1]"
    )
    expect(marks.nth(1)).to_have_text(UNCITED)
    expect(body.locator("p strong")).to_have_text("Always")
    link = body.locator("a.cite").first
    expect(link).to_have_text("[S1]")
    expect(link).to_have_attribute("href", "#audit-source-1")
    expect(page.locator("#audit-source-1")).to_be_visible()
    # The quotes as the clinician saw them: bold rendered, markup left as text.
    quote = page.locator("blockquote.quote-text")
    expect(quote).to_have_attribute("data-rendered", "true")
    expect(quote.locator("strong")).to_have_text("Offer")
    expect(page.locator("blockquote.quote-text img")).to_have_count(0)
    assert page.evaluate("() => window.pwned") is None
    page.screenshot(path=screenshots / "audit-answer-rendered.png", full_page=True)
