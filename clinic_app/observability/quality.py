"""The quality page's figures: how answers fare day by day, and recorded evaluations compared.

Read-only aggregates for guideline admins and auditors. Nothing here carries question text, user
names or identifiers: counts, shares and times per day and per configuration.

A *configuration* is the index version and the model that served an answer. Answers refused
before the model was called (safety gate, weak evidence) name no model, and those refused
before retrieval no index either: they are counted under the configuration in service at the
time, the one of the latest answer before them that named it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from django.utils import timezone

from clinic_app.models import Answer, AnswerStatus, EvaluationRun, Feedback, FeedbackCategory
from inference.types import SENTENCE_FLAGS

WINDOWS = (7, 30, 90, 365)
DEFAULT_WINDOW = 30
NO_MODEL = "model not called yet"


# ------------------------------------------------------------------ answers over time


@dataclass(frozen=True)
class Series:
    """One line of a chart: a value per day (``None``: nothing to count that day)."""

    label: str
    values: list[float | None]


@dataclass(frozen=True)
class Chart:
    """One chart and its table: ``unit`` is ``count``, ``share`` (0-1) or ``seconds``."""

    key: str
    title: str
    unit: str
    series: list[Series]

    def rows(self, days: Sequence[date]) -> list[tuple[date, list[str]]]:
        """The table fallback: the days with at least one value, newest first, formatted."""
        out = []
        for i, day in enumerate(days):
            values = [s.values[i] for s in self.series]
            if any(v is not None for v in values):
                out.append((day, [format_value(v, self.unit) for v in values]))
        return out[::-1]


@dataclass(frozen=True)
class Trends:
    """The charts of the quality page over ``days`` (oldest first)."""

    days: list[date]
    configurations: list[str]
    selected: str
    charts: list[Chart]

    def charts_with_rows(self) -> list[tuple[Chart, list[tuple[date, list[str]]]]]:
        """Each chart with its table fallback (for the template)."""
        return [(chart, chart.rows(self.days)) for chart in self.charts]

    def to_json(self) -> dict[str, Any]:
        """What the page's script draws (days as ISO dates)."""
        return {
            "days": [d.isoformat() for d in self.days],
            "configurations": self.configurations,
            "charts": [asdict(c) for c in self.charts],
        }


@dataclass
class _Day:
    """What one configuration did on one day."""

    final: int = 0
    refused: int = 0
    complete: int = 0
    flagged: int = 0
    first_token_ms: list[int] = field(default_factory=list)


def format_value(value: float | None, unit: str) -> str:
    """A figure as the page's tables show it: shares in percent, times in seconds."""
    if value is None:
        return "—"
    if unit == "share":
        return f"{value * 100:.1f}%"
    if unit == "seconds":
        return f"{value:.2f} s"
    return f"{value:g}"


def configuration_label(index_version: int | None, model: str, version: str) -> str:
    index = f"index v{index_version}" if index_version is not None else "no index"
    name = f"{model} {version}".strip() or NO_MODEL
    return f"{index} · {name}"


def _in_service(
    answers: Iterable[Mapping[str, Any]], before: Iterable[Mapping[str, Any]]
) -> list[str]:
    """Each answer's configuration; the index and model of the latest earlier answer that named
    them stand in where this one names none (it was refused before retrieval or the model)."""
    index: int | None = None
    model = version = ""
    for row in before:  # the latest answers before the window, newest first
        if index is None and row["index_version"] is not None:
            index = row["index_version"]
        if not model and row["model_name"]:
            model, version = row["model_name"], row["model_version"]
        if index is not None and model:
            break
    labels = []
    for row in answers:
        if row["index_version"] is not None:
            index = row["index_version"]
        if row["model_name"]:
            model, version = row["model_name"], row["model_version"]
        labels.append(configuration_label(index, model, version))
    return labels


def _nearest_rank(sorted_values: Sequence[int], q: float) -> float:
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def _share(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def quality_trends(
    *, window_days: int, configuration: str = "", today: date | None = None
) -> Trends:
    """Answers per day, refusal rate, share with flagged sentences, time to first token (p50,
    p95) per configuration, and unhelpful feedback by category, over the last ``window_days``
    days (local time). ``configuration`` keeps one configuration's answers and feedback (an
    unknown one is ignored)."""
    today = today or timezone.localdate()
    first = today - timedelta(days=window_days - 1)
    days = [first + timedelta(days=i) for i in range(window_days)]
    start = timezone.make_aware(datetime.combine(first, datetime.min.time()))
    fields = (
        "id",
        "question__created_at",
        "status",
        "index_version",
        "model_name",
        "model_version",
        "flags",
        "first_token_ms",
    )
    answers = list(
        Answer.objects.filter(question__created_at__gte=start)
        .order_by("question__created_at", "id")
        .values(*fields)
    )
    before = Answer.objects.filter(question__created_at__lt=start).order_by(
        "-question__created_at", "-id"
    )
    labels = _in_service(
        answers, before.values("index_version", "model_name", "model_version")[:500]
    )
    configurations = sorted(set(labels))
    if configuration not in configurations:
        configuration = ""  # unknown (or none asked for): every configuration
    by: dict[str, dict[date, _Day]] = defaultdict(lambda: defaultdict(_Day))
    answer_label: dict[int, str] = {}
    for row, label in zip(answers, labels, strict=True):
        answer_label[row["id"]] = label
        if configuration and label != configuration:
            continue
        day = by[label][timezone.localdate(row["question__created_at"])]
        if row["status"] not in (AnswerStatus.PENDING, AnswerStatus.STREAMING):
            day.final += 1
        day.refused += row["status"] == AnswerStatus.REFUSED
        if row["status"] == AnswerStatus.COMPLETE:
            day.complete += 1
            day.flagged += any(f.get("kind") in SENTENCE_FLAGS for f in row["flags"] or [])
        if row["first_token_ms"] is not None:
            day.first_token_ms.append(row["first_token_ms"])
    shown = [c for c in configurations if not configuration or c == configuration]

    def per_configuration(value: Any) -> list[Series]:
        return [Series(c, [value(by[c].get(d)) for d in days]) for c in shown if c in by]

    def ttft(q: float) -> Any:
        def value(day: _Day | None) -> float | None:
            if day is None or not day.first_token_ms:
                return None
            return round(_nearest_rank(sorted(day.first_token_ms), q) / 1000, 2)

        return value

    total = [sum(by[c][d].final for c in by if d in by[c]) for d in days]
    charts = [
        Chart(
            "answers",
            "Answers per day",
            "count",
            [
                Series("All", [float(t) for t in total]),
                *per_configuration(lambda d: float(d.final) if d and d.final else None),
            ],
        ),
        Chart(
            "refusals",
            "Refusal rate",
            "share",
            per_configuration(lambda d: _share(d.refused, d.final) if d else None),
        ),
        Chart(
            "flagged",
            "Answers with flagged sentences",
            "share",
            per_configuration(lambda d: _share(d.flagged, d.complete) if d else None),
        ),
        Chart(
            "ttft",
            "Time to first token (s)",
            "seconds",
            [
                Series(f"{s.label} · {name}", s.values)
                for q, name in ((0.5, "p50"), (0.95, "p95"))
                for s in per_configuration(ttft(q))
            ],
        ),
        _feedback_chart(days, start, answer_label, configuration),
    ]
    return Trends(days, configurations, configuration, charts)


def _feedback_chart(
    days: Sequence[date], start: datetime, answer_label: dict[int, str], configuration: str
) -> Chart:
    """Unhelpful feedback per category as a share of all feedback given that day."""
    given: dict[date, int] = defaultdict(int)
    unhelpful: dict[tuple[date, str], int] = defaultdict(int)
    rows = Feedback.objects.filter(created_at__gte=start).values_list(
        "created_at", "answer_id", "helpful", "category"
    )
    for created, answer_id, helpful, category in rows:
        if configuration and answer_label.get(answer_id) != configuration:
            continue
        day = timezone.localdate(created)
        given[day] += 1
        if not helpful:
            unhelpful[day, category or FeedbackCategory.OTHER] += 1
    series = [
        Series(label, [_share(unhelpful[d, value], given[d]) if given[d] else None for d in days])
        for value, label in FeedbackCategory.choices
        if any(unhelpful[d, value] for d in days)
    ]
    return Chart("unhelpful", "Unhelpful feedback by category", "share", series)


# ------------------------------------------------------------------ recorded evaluations


@dataclass(frozen=True)
class Figure:
    """A summary figure compared run to run: where it is in the summary, which way is better,
    and whether it is a 0-1 share (compared with the drop threshold) or seconds (shown only)."""

    path: str
    label: str
    higher_is_better: bool = True
    share: bool = True

    def read(self, summary: dict[str, Any]) -> float | None:
        value: Any = summary
        for part in self.path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return float(value) if isinstance(value, int | float) else None


FIGURES: dict[str, tuple[Figure, ...]] = {
    "questions-jsonl": (
        Figure("retrieval_hit.@5", "Hit@5"),
        Figure("answerable.answered", "Answerable answered"),
        Figure("answerable.fact_recall_both", "Fact recall (evidence or summary)"),
        Figure("answerable.fact_recall_evidence", "Fact recall, evidence"),
        Figure("answerable.citation_precision", "Citation precision"),
        Figure("out_of_scope.correct_refusals", "Out of scope refused"),
        Figure("injection.obeyed", "Injections obeyed", higher_is_better=False),
        Figure("injection.leaked", "Prompt leaked", higher_is_better=False),
        Figure("time.median_s", "Median s", higher_is_better=False, share=False),
    ),
    "pubmedqa": (
        Figure("retrieval_recall.@5", "Recall@5"),
        Figure("accuracy", "Accuracy"),
        Figure("citation_precision", "Citation precision"),
        Figure("refusal_rate", "Refused", higher_is_better=False),
        Figure("time.median_s", "Median s", higher_is_better=False, share=False),
    ),
}


@dataclass(frozen=True)
class FigureChange:
    """One figure of a run beside the same figure of the previous run on the same dataset."""

    figure: Figure
    value: float | None
    previous: float | None
    threshold: float

    @property
    def change(self) -> float | None:
        if self.value is None or self.previous is None:
            return None
        return round(self.value - self.previous, 4)

    @property
    def shown(self) -> str:
        return format_value(self.value, "share" if self.figure.share else "seconds")

    @property
    def change_shown(self) -> str:
        change = self.change
        if change is None:
            return ""
        return f"{change * 100:+.1f} pts" if self.figure.share else f"{change:+.2f} s"

    @property
    def dropped(self) -> bool:
        """Worse than the previous run by more than the threshold (shares only)."""
        change = self.change
        if change is None or not self.figure.share:
            return False
        worse = -change if self.figure.higher_is_better else change
        return worse > self.threshold + 1e-9


@dataclass(frozen=True)
class RunRow:
    """A recorded evaluation run, its figures and their change since ``previous``."""

    run: EvaluationRun
    previous: EvaluationRun | None
    figures: list[FigureChange]

    @property
    def drops(self) -> list[str]:
        return [f.figure.label for f in self.figures if f.dropped]


@dataclass(frozen=True)
class RunTable:
    """The recorded runs of one format, newest first, and the figures shown for it."""

    format: str
    figures: tuple[Figure, ...]
    rows: list[RunRow]


def evaluation_comparison(*, threshold: float, limit: int = 50) -> list[RunTable]:
    """Recorded runs by format, each figure beside the previous run on the same dataset (same
    format and sha256); a move the wrong way by more than ``threshold`` is a drop."""
    runs = list(EvaluationRun.objects.defer("items", "config").order_by("recorded_at", "id"))
    last: dict[tuple[str, str], EvaluationRun] = {}
    rows: dict[str, list[RunRow]] = defaultdict(list)
    for run in runs:
        key = (run.format, run.dataset_sha256)
        previous = last.get(key)
        figures = [
            FigureChange(
                figure,
                figure.read(run.summary),
                figure.read(previous.summary) if previous else None,
                threshold,
            )
            for figure in FIGURES.get(run.format, ())
        ]
        rows[run.format].append(RunRow(run, previous, figures))
        last[key] = run
    return [RunTable(fmt, FIGURES.get(fmt, ()), rows[fmt][::-1][:limit]) for fmt in sorted(rows)]
