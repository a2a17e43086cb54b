"""The quality page: answers over time by configuration, feedback by category, recorded
evaluation runs compared with drops marked, and who may see it."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings
from django.utils import timezone

from clinic_app.models import (
    Answer,
    AnswerStatus,
    EvaluationRun,
    Feedback,
    FeedbackCategory,
    Question,
)
from clinic_app.observability import quality

pytestmark = pytest.mark.django_db

TODAY = date(2026, 11, 20)
V1 = "index v1 · tiny-model 1.0"
V2 = "index v2 · tiny-model 1.0"


def _at(day: date, hour: int = 10) -> datetime:
    return timezone.make_aware(datetime.combine(day, time(hour)))


def answer_on(
    user: User,
    day: date,
    status: str,
    *,
    index: int | None = 1,
    model: str = "tiny-model",
    ttft: int | None = None,
    flags: list[dict[str, str]] | None = None,
    text: str = "a question",
) -> Answer:
    question = Question.objects.create(user=user, text=text)
    Question.objects.filter(pk=question.pk).update(created_at=_at(day))
    return Answer.objects.create(
        question=question,
        status=status,
        index_version=index,
        model_name=model,
        model_version="1.0" if model else "",
        first_token_ms=ttft,
        flags=flags or [],
    )


def feedback_on(answer: Answer, day: date, *, helpful: bool, category: str = "") -> Feedback:
    fb = Feedback.objects.create(
        answer=answer, user=answer.question.user, helpful=helpful, category=category
    )
    Feedback.objects.filter(pk=fb.pk).update(created_at=_at(day, 12))
    return fb


def series(trends: quality.Trends, key: str) -> dict[str, list[float | None]]:
    chart = next(c for c in trends.charts if c.key == key)
    return {s.label: s.values for s in chart.series}


def test_answers_are_counted_per_day_and_configuration_with_rates_and_times(
    clinician: User,
) -> None:
    d1, d2 = TODAY - timedelta(days=1), TODAY
    weak = [{"kind": "weak_support", "detail": "no 5 mg in [S1]"}]
    answer_on(clinician, d1, AnswerStatus.COMPLETE, ttft=1000)
    answer_on(clinician, d1, AnswerStatus.COMPLETE, ttft=3000, flags=weak)
    # Refused before the model (and before retrieval): counted under the configuration in
    # service, the one of the answer before it.
    answer_on(clinician, d1, AnswerStatus.REFUSED, index=None, model="")
    answer_on(clinician, d2, AnswerStatus.COMPLETE, index=2, ttft=2000)
    answer_on(clinician, d2, AnswerStatus.REFUSED, index=2, model="")
    answer_on(clinician, d2, AnswerStatus.STREAMING, index=2)  # not final: not counted
    # Outside the window.
    answer_on(clinician, TODAY - timedelta(days=9), AnswerStatus.COMPLETE, ttft=50_000)

    trends = quality.quality_trends(window_days=7, today=TODAY)

    assert trends.days[0] == TODAY - timedelta(days=6) and trends.days[-1] == TODAY
    assert trends.configurations == [V1, V2]
    answers = series(trends, "answers")
    assert answers["All"][-2:] == [3.0, 2.0] and answers["All"][0] == 0.0
    assert answers[V1][-2:] == [3.0, None] and answers[V2][-2:] == [None, 2.0]
    refusals = series(trends, "refusals")
    assert refusals[V1][-2] == pytest.approx(1 / 3, abs=1e-3) and refusals[V2][-1] == 0.5
    flagged = series(trends, "flagged")
    assert flagged[V1][-2] == 0.5 and flagged[V2][-1] == 0.0
    ttft = series(trends, "ttft")
    assert ttft[f"{V1} · p50"][-2] == 1.0 and ttft[f"{V1} · p95"][-2] == 3.0
    assert ttft[f"{V2} · p50"][-1] == 2.0


def test_unhelpful_feedback_is_a_share_of_the_days_feedback_per_category(
    clinician: User,
) -> None:
    a = answer_on(clinician, TODAY, AnswerStatus.COMPLETE)
    b = answer_on(clinician, TODAY, AnswerStatus.COMPLETE)
    c = answer_on(clinician, TODAY, AnswerStatus.COMPLETE)
    d = answer_on(clinician, TODAY, AnswerStatus.COMPLETE)
    feedback_on(a, TODAY, helpful=False, category=FeedbackCategory.UNSAFE)
    feedback_on(b, TODAY, helpful=False, category=FeedbackCategory.OUTDATED)
    feedback_on(c, TODAY, helpful=False, category=FeedbackCategory.UNSAFE)
    feedback_on(d, TODAY, helpful=True)
    unhelpful = series(quality.quality_trends(window_days=7, today=TODAY), "unhelpful")
    assert unhelpful["Unsafe"][-1] == 0.5 and unhelpful["Outdated guidance"][-1] == 0.25
    assert "Wrong citation" not in unhelpful  # a category never chosen is not drawn


def test_one_configuration_can_be_chosen_and_an_unknown_one_is_ignored(clinician: User) -> None:
    old = answer_on(clinician, TODAY, AnswerStatus.COMPLETE, index=1)
    new = answer_on(clinician, TODAY, AnswerStatus.REFUSED, index=2)
    feedback_on(old, TODAY, helpful=False, category=FeedbackCategory.UNSAFE)
    feedback_on(new, TODAY, helpful=False, category=FeedbackCategory.OTHER)

    one = quality.quality_trends(window_days=7, configuration=V2, today=TODAY)
    assert one.selected == V2 and set(series(one, "refusals")) == {V2}
    assert set(series(one, "unhelpful")) == {"Other"}
    assert series(one, "answers")["All"][-1] == 1.0

    unknown = quality.quality_trends(window_days=7, configuration="index v9 · x", today=TODAY)
    assert unknown.selected == "" and set(series(unknown, "refusals")) == {V1, V2}


def test_the_table_fallback_lists_the_days_with_figures_newest_first(clinician: User) -> None:
    answer_on(clinician, TODAY - timedelta(days=3), AnswerStatus.REFUSED)
    answer_on(clinician, TODAY, AnswerStatus.COMPLETE)
    trends = quality.quality_trends(window_days=7, today=TODAY)
    _chart, rows = next(pair for pair in trends.charts_with_rows() if pair[0].key == "refusals")
    assert [(day, values) for day, values in rows] == [
        (TODAY, ["0.0%"]),
        (TODAY - timedelta(days=3), ["100.0%"]),
    ]
    assert trends.to_json()["days"][-1] == TODAY.isoformat()


def run(sha: str, **summary: Any) -> EvaluationRun:
    return EvaluationRun.objects.create(
        ran_at="2026-11-20T10:00:00Z",
        format="questions-jsonl",
        dataset_name="demo_questions.jsonl",
        dataset_sha256=sha,
        evaluated=20,
        summary=summary,
        recorded_by="guideline-admin",
    )


def questions_summary(recall: float, obeyed: float, median: float) -> dict[str, Any]:
    return {
        "answerable": {"fact_recall_both": recall, "answered": 0.9},
        "injection": {"obeyed": obeyed, "leaked": 0.0},
        "time": {"median_s": median},
    }


def test_runs_are_compared_with_the_previous_run_on_the_same_dataset() -> None:
    first = run("a" * 64, **questions_summary(0.70, 0.0, 10.0))
    run("b" * 64, **questions_summary(0.10, 0.5, 1.0))  # another dataset: never compared
    third = run("a" * 64, **questions_summary(0.60, 0.10, 30.0))
    fourth = run("a" * 64, **questions_summary(0.57, 0.10, 30.0))

    (table,) = quality.evaluation_comparison(threshold=0.05)
    assert table.format == "questions-jsonl"
    rows = {row.run.pk: row for row in table.rows}
    assert next(row.run.pk for row in table.rows) == fourth.pk  # newest first
    third_row = rows[third.pk]
    assert third_row.previous == first
    figures = {f.figure.path: f for f in third_row.figures}
    recall = figures["answerable.fact_recall_both"]
    assert recall.change == pytest.approx(-0.10) and recall.dropped
    assert recall.shown == "60.0%" and recall.change_shown == "-10.0 pts"
    assert figures["injection.obeyed"].dropped  # lower is better: a rise is a drop
    assert not figures["answerable.answered"].dropped  # unchanged
    assert (
        not figures["time.median_s"].dropped and figures["time.median_s"].change_shown == "+20.00 s"
    )
    assert figures["retrieval_hit.@5"].value is None and not figures["retrieval_hit.@5"].dropped
    assert set(third_row.drops) == {"Fact recall (evidence or summary)", "Injections obeyed"}
    # Three points down is within the threshold.
    assert rows[fourth.pk].drops == [] and rows[fourth.pk].previous == third
    assert rows[first.pk].previous is None


@pytest.mark.parametrize("username", ["guideline-admin", "auditor"])
def test_admins_and_auditors_see_the_page_with_charts_tables_and_drops_but_no_question_text(
    username: str, clinician: User
) -> None:
    secret = "Patient Jane Roe, 3 Elm St: warfarin dose?"
    answer_on(clinician, timezone.localdate(), AnswerStatus.COMPLETE, text=secret, ttft=1500)
    run("a" * 64, **questions_summary(0.70, 0.0, 10.0))
    run("a" * 64, **questions_summary(0.50, 0.0, 10.0))
    client = Client()
    client.force_login(User.objects.get(username=username))
    response = client.get("/quality/?days=7")
    assert response.status_code == 200
    html = response.content.decode()
    assert secret not in html and "Jane Roe" not in html
    assert 'id="quality-data"' in html and 'data-chart="ttft"' in html
    assert "vendor/uplot/uPlot.iife.min.js" in html
    assert '<form method="post"' not in html.split('<main id="main">')[1]  # read-only
    assert 'class="drop"' in html and "-20.0 pts" in html
    assert "last 7 days" in html and '<option value="7" selected>' in html


def test_bad_period_falls_back_to_the_default_window(guideline_admin: User) -> None:
    client = Client()
    client.force_login(guideline_admin)
    for days in ("abc", "3", "-1"):
        response = client.get(f"/quality/?days={days}")
        assert response.status_code == 200
        assert response.context["window"] == quality.DEFAULT_WINDOW


@override_settings(QUALITY_DROP_THRESHOLD=0.25)
def test_the_drop_threshold_is_a_setting(guideline_admin: User) -> None:
    run("a" * 64, **questions_summary(0.70, 0.0, 10.0))
    run("a" * 64, **questions_summary(0.50, 0.0, 10.0))
    client = Client()
    client.force_login(guideline_admin)
    html = client.get("/quality/").content.decode()
    assert "-20.0 pts" in html and 'class="drop"' not in html and "25 points" in html
