"""The quality page in Chromium: charts drawn by the vendored uPlot under the real
Content-Security-Policy, each with its table, and recorded evaluation runs with a drop marked."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests import live
from tests.e2e.conftest import sign_in

pytestmark = pytest.mark.e2e

# Answers over the last days under two configurations, feedback, and two recorded runs on one
# dataset whose fact recall fell by 20 points (a drop) and whose hit@5 did not move.
SEED = """
from datetime import timedelta
from django.contrib.auth.models import User
from django.utils import timezone
from clinic_app.models import Answer, EvaluationRun, Feedback, Question

user = User.objects.get(username="clinician")
today = timezone.now()
for days_ago, status, index, ttft in [
    (3, "complete", 1, 900), (3, "refused", 1, None), (2, "complete", 1, 1400),
    (1, "complete", 2, 700), (1, "complete", 2, 2600), (0, "refused", 2, None),
]:
    q = Question.objects.create(user=user, text="seeded for the quality page")
    Question.objects.filter(pk=q.pk).update(created_at=today - timedelta(days=days_ago))
    a = Answer.objects.create(
        question=q, status=status, index_version=index, model_name="seed-model",
        model_version="1", first_token_ms=ttft,
        flags=[{{"kind": "weak_support", "detail": "x"}}] if ttft == 2600 else [],
    )
    if status == "complete":
        Feedback.objects.create(answer=a, user=user, helpful=ttft != 1400, category="" if ttft != 1400 else "outdated")
for recall in (0.75, 0.55):
    EvaluationRun.objects.create(
        ran_at="2026-11-20T10:00:00Z", format="questions-jsonl", dataset_name="{dataset}",
        dataset_sha256="{sha}", evaluated=20, index_version=2, model_name="seed-model",
        summary={{"retrieval_hit": {{"@5": 0.9}}, "answerable": {{"fact_recall_both": recall}}}},
        recorded_by="guideline-admin",
    )
"""

# Records Content-Security-Policy violations the page reports to itself.
WATCH_CSP = """
window.__csp = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
"""


def test_quality_page_draws_its_charts_under_the_csp_with_tables_and_marks_a_drop(
    page: Page, e2e_server: live.Server, demo_password: str, screenshots: Path
) -> None:
    dataset = f"quality-{uuid.uuid4().hex[:8]}.jsonl"
    live.manage(
        e2e_server.env, "shell", "-c", SEED.format(dataset=dataset, sha=uuid.uuid4().hex * 2)
    )
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text) if m.type in ("error", "warning") else None)
    page.add_init_script(WATCH_CSP)
    sign_in(page, "guideline-admin", demo_password)
    page.get_by_role("link", name="Quality").click()
    expect(page.get_by_role("heading", name="Answer quality")).to_be_visible()

    charts = page.locator("figure.quality-chart")
    expect(charts).to_have_count(5)
    for key in ("answers", "refusals", "flagged", "ttft", "unhelpful"):
        figure = page.locator(f'figure[data-chart="{key}"]')
        expect(figure).to_have_attribute("data-drawn", "true")
        assert figure.locator("canvas").count() >= 1, f"{key}: no canvas drawn"
        # The table stays, folded under the drawn chart, with the same figures.
        table = figure.locator("details.chart-table")
        expect(table).not_to_have_attribute("open", "")
        assert table.locator("tbody tr").count() >= 1, f"{key}: empty table"
    legend = page.locator('figure[data-chart="answers"] .u-legend')
    expect(legend).to_contain_text("index v1 · seed-model 1")
    expect(legend).to_contain_text("index v2 · seed-model 1")

    run_row = page.locator("table.quality-runs tr", has_text=dataset).first
    expect(run_row).to_contain_text("-20.0 pts")
    expect(run_row.locator("td.drop")).to_have_count(1)
    expect(run_row.locator(".drop-label")).to_have_text("drop")
    page.screenshot(path=screenshots / "quality-page.png", full_page=True)

    # A table opened by a keyboard user reads the same day's figures.
    answers_table = page.locator('figure[data-chart="refusals"] details.chart-table')
    answers_table.locator("summary").focus()
    page.keyboard.press("Enter")
    expect(answers_table.locator("tbody tr").first).to_be_visible()

    # One configuration alone: one line per chart.
    page.get_by_label("Index and model").select_option("index v2 · seed-model 1")
    page.get_by_role("button", name="Show").click()
    expect(page.locator('figure[data-chart="refusals"]')).to_have_attribute("data-drawn", "true")
    header = page.locator('figure[data-chart="refusals"] thead th')
    expect(header).to_have_count(2)
    expect(header.nth(1)).to_have_text("index v2 · seed-model 1")
    page.screenshot(path=screenshots / "quality-page-one-configuration.png", full_page=True)

    assert page.evaluate("window.__csp") == []
    assert not [m for m in console if "Content Security Policy" in m], console


def test_auditors_read_the_quality_page_and_clinicians_are_refused(
    page: Page, e2e_server: live.Server, demo_password: str
) -> None:
    sign_in(page, "auditor", demo_password)
    page.get_by_role("link", name="Quality").click()
    expect(page.get_by_role("heading", name="Answer quality")).to_be_visible()
    expect(page.locator('figure[data-chart="answers"]')).to_be_visible()
    expect(page.locator("main form[method=post]")).to_have_count(0)  # read-only: nothing to change

    clinician = page.context.browser.new_context(base_url=e2e_server.base_url).new_page()  # type: ignore[union-attr]
    try:
        sign_in(clinician, "clinician", demo_password)
        expect(clinician.get_by_role("link", name="Quality")).to_have_count(0)
        response = clinician.goto("/quality/")
        assert response is not None and response.status == 403
    finally:
        clinician.context.close()
