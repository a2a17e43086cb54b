"""PubMedQA (PQA-L) in the reasoning-required setting: every abstract ingested into a scratch
library, each question asked as a clinician would, the free-text answer read as yes / no /
maybe."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User

from clinic_app.evaluation.datasets import DatasetError, PubMedQAItem
from clinic_app.evaluation.reading import (
    DECISIONS,
    DecisionReading,
    answer_is_empty,
    answer_words,
    decision_read,
)
from clinic_app.evaluation.report import ANCHOR_SOURCE, PUBMEDQA_ANCHORS, Report
from clinic_app.evaluation.run import (
    Asked,
    Progress,
    Retrieved,
    dataset_info,
    question_answer,
    question_retrieve,
    ratio,
    recall_at,
    retrieval_ks,
    run_config,
    timing,
)
from clinic_app.library import ingest
from clinic_app.models import AnswerStatus
from inference.types import FlagKind
from retrieval.parsers import parse_pubmedqa

# Appended to each PubMedQA question (the prompt builder is not changed): without it the small
# embedded model often answers around the question and never commits to yes, no or maybe.
PUBMEDQA_NUDGE = "Start your answer with yes, no or maybe."


@dataclass
class PubMedQARow:
    """One PubMedQA question's outcome (a report row)."""

    pmid: str
    question: str
    gold: str
    status: str
    seconds: float
    retrieval_rank: int | None
    top_score: float | None
    decision: str | None = None
    decision_rule: str = ""
    correct: bool = False
    cited: int = 0
    cited_gold: int = 0
    empty: bool = False
    flags: list[str] = field(default_factory=list)
    text: str = ""
    message: str = ""


def pubmedqa_ingest(*, path: Path) -> dict[str, Any]:
    """Ingest every abstract of ``path`` into the current (scratch) library and index."""
    started = time.perf_counter()
    parsed = parse_pubmedqa(path.read_bytes(), source_name=path.name)
    if parsed.errors:
        raise DatasetError("\n".join(str(e) for e in parsed.errors))
    report = ingest.guidelines_ingest(documents=parsed.documents, actor="evaluation")
    return {
        "abstracts": report.documents_added + report.documents_unchanged,
        "passages": report.passages_added,
        "seconds": round(time.perf_counter() - started, 1),
    }


def pubmedqa_row(
    item: PubMedQAItem, asked_text: str, retrieved: Retrieved, asked: Asked | None
) -> PubMedQARow:
    """Score one PubMedQA question."""
    text = asked.text if asked and asked.status == AnswerStatus.COMPLETE else ""
    reading = decision_read(text) if text else DecisionReading(None, "none")
    cited = asked.cited_keys if asked else []
    return PubMedQARow(
        pmid=item.pmid,
        question=asked_text,
        gold=item.gold,
        status=asked.status if asked else "not_run",
        seconds=round(asked.seconds if asked else retrieved.seconds, 3),
        retrieval_rank=retrieved.rank({item.gold_key}),
        top_score=retrieved.scores[0] if retrieved.scores else None,
        decision=reading.decision,
        decision_rule=reading.rule,
        correct=reading.decision == item.gold,
        cited=len(cited),
        cited_gold=sum(1 for key in cited if key == item.gold_key),
        empty=asked is not None and asked.status == AnswerStatus.COMPLETE and answer_is_empty(text),
        flags=asked.flags if asked else [],
        text=text,
        message=asked.message if asked else "",
    )


def pubmedqa_summary(
    rows: Sequence[PubMedQARow], *, ks: Sequence[int], generated: bool
) -> dict[str, Any]:
    """Aggregate numbers of a PubMedQA run; undecided answers count as wrong."""
    n = len(rows)
    labels = Counter(r.gold for r in rows)
    summary: dict[str, Any] = {
        "questions": n,
        "labels": {d: labels.get(d, 0) for d in DECISIONS},
        "retrieval_recall": recall_at([r.retrieval_rank for r in rows], ks),
    }
    if not generated:
        summary["time_retrieval"] = timing([r.seconds for r in rows])
        return summary
    complete = [r for r in rows if r.status == AnswerStatus.COMPLETE]
    confusion = {g: Counter(str(r.decision) for r in rows if r.gold == g) for g in DECISIONS}
    summary |= {
        "accuracy": ratio(sum(r.correct for r in rows), n),
        "accuracy_answered": ratio(sum(r.correct for r in complete), len(complete)),
        "majority_of_subset": ratio(max(labels.values(), default=0), n),
        "undecided": sum(1 for r in complete if r.decision is None),
        "empty_answers": sum(1 for r in complete if r.empty),
        # "yes [S1]": a decision without a word of reasoning.
        "bare_decisions": sum(1 for r in complete if not r.empty and answer_words(r.text) < 3),
        "decision_rules": dict(Counter(r.decision_rule for r in complete)),
        "confusion": {
            g: {p: confusion[g].get(p, 0) for p in (*DECISIONS, "None")} for g in DECISIONS
        },
        "refusal_rate": ratio(sum(r.status == AnswerStatus.REFUSED for r in rows), n),
        "failed": sum(1 for r in rows if r.status not in ("complete", "refused")),
        "citation_precision": ratio(sum(r.cited_gold for r in rows), sum(r.cited for r in rows)),
        "answers_citing": ratio(sum(1 for r in complete if r.cited), len(complete)),
        "truncated": sum(1 for r in complete if FlagKind.TRUNCATED in r.flags),
        "time": timing([r.seconds for r in rows]),
    }
    return summary


def pubmedqa_evaluate(
    *,
    path: Path,
    items: Sequence[PubMedQAItem],
    total: int,
    ingest: dict[str, Any],
    user: User,
    nudge: str = PUBMEDQA_NUDGE,
    retrieval_only: bool = False,
    progress: Progress | None = None,
) -> Report:
    """Run PubMedQA items against the (scratch) library holding their abstracts.

    1. Record the configuration (loading the generator first, unless retrieval-only).
    2. Per question: the rank of its own abstract for the question as asked (with ``nudge``
       appended), then that text through the page's services; the decision read from the
       answer.
    3. Summarise, with the published anchors.
    """
    # 1. What the numbers depend on.
    config = run_config(generate=not retrieval_only)
    ks = retrieval_ks()
    rows: list[PubMedQARow] = []
    for n, item in enumerate(items, start=1):
        # 2. The gold abstract's rank for the text as asked (the nudge moves the question's
        #    embedding a little), then the whole answer path and its decision.
        text = f"{item.question} {nudge}".strip()
        retrieved = question_retrieve(question=text, k=max(ks))
        asked = None if retrieval_only else question_answer(user=user, text=text)
        row = pubmedqa_row(item, text, retrieved, asked)
        rows.append(row)
        if progress:
            verdict = (
                f"{row.decision} ({row.decision_rule}) vs gold {row.gold}"
                if asked
                else f"gold {row.gold}"
            )
            progress(
                f"[{n}/{len(items)}] PMID {row.pmid}: {row.status}, rank {row.retrieval_rank}, "
                f"{verdict} ({row.seconds:.1f} s)"
            )
    # 3. Summary, with the published anchors.
    return Report(
        format="pubmedqa",
        dataset=dataset_info(path=path, items=total, evaluated=len(rows)),
        config=config
        | {
            "user": user.username,
            "retrieval_ks": ks,
            "nudge": nudge or None,
            "ingest": ingest,
        },
        summary=pubmedqa_summary(rows, ks=ks, generated=not retrieval_only),
        items=[asdict(r) for r in rows],
        anchors=[
            {"name": name, "accuracy": value, "source": ANCHOR_SOURCE}
            for name, value in PUBMEDQA_ANCHORS
        ],
    )
