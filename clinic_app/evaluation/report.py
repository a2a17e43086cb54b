"""The evaluation report: what ran, on what, the figures, and the Markdown tables."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

# Published accuracies on PubMedQA (PQA-L test set) quoted beside every PubMedQA report. The
# Meditron figures are the paper's few-shot (in-context) results, not fine-tuned ones.
PUBMEDQA_ANCHORS: tuple[tuple[str, float], ...] = (
    ("majority class", 0.552),
    ("Meditron-7B (few-shot)", 0.693),
    ("Meditron-70B (few-shot)", 0.798),
)
ANCHOR_SOURCE = (
    "Chen et al. 2023, MEDITRON-70B: Scaling Medical Pretraining for Large Language Models; "
    "PubMedQA test set, few-shot setting"
)


def _pct(value: float | None) -> str:
    return "   n/a" if value is None else f"{value * 100:5.1f}%"


def _seconds(t: dict[str, float | None]) -> str:
    if t.get("median_s") is None:
        return "n/a"
    return f"median {t['median_s']:.1f} s, p95 {t['p95_s']:.1f} s (total {t['total_s']:.0f} s)"


def _header(report: Report) -> list[str]:
    c, d = report.config, report.dataset
    model = (
        f"{c.get('backend')} / {c.get('model')} {c.get('model_version') or ''} "
        f"(prompt {c.get('prompt_profile')})"
        if c.get("generation")
        else "none (retrieval only)"
    )
    return [
        f"{report.format}: {d['path']} ({d['evaluated']} of {d['items']} evaluated)",
        f"  generator: {model.strip()}",
        f"  index v{c['index_version']}: {c['index_passages']} passages of {c['guidelines']} "
        f"documents; embedder {c['embedder']}; fusion {c['retrieval_fusion']}"
        + (f"; reranker {c['reranker']}" if c.get("reranker") else ""),
        f"  top-k {c['retrieval_top_k']}, min score {c['retrieval_min_score']}, answer max "
        f"tokens {c['answer_max_tokens']}",
    ]


def report_render(report: Report) -> str:
    """A readable summary table of ``report``."""
    lines = _header(report)
    s = report.summary
    if report.format == "pubmedqa":
        if report.config.get("nudge"):
            lines.append(f"  appended to each question: {report.config['nudge']!r}")
        recall = s["retrieval_recall"]
        lines += ["", "Retrieval: gold abstract among the top-k passages"]
        lines += [f"  recall{k:<5} {_pct(v)}" for k, v in recall.items() if k != "mrr"]
        lines.append(f"  MRR        {recall['mrr']}")
        if "accuracy" in s:
            lines += [
                "",
                "Answers",
                f"  accuracy (undecided = wrong)       {_pct(s['accuracy'])}",
                f"  accuracy of completed answers      {_pct(s['accuracy_answered'])}",
                f"  undecided completed answers        {s['undecided']}",
                f"  answers with no words, only [S..]  {s['empty_answers']}",
                f"  a decision word and nothing else   {s['bare_decisions']}",
                f"  refusal rate                       {_pct(s['refusal_rate'])}",
                f"  failed                             {s['failed']}",
                f"  citation precision (gold abstract) {_pct(s['citation_precision'])}",
                f"  answers citing a source            {_pct(s['answers_citing'])}",
                f"  answers cut at the length limit    {s['truncated']}",
                f"  time per question                  {_seconds(s['time'])}",
                f"  decisions read by rule             {s['decision_rules']}",
                "",
                "Confusion (rows: gold, columns: read decision)",
                "           yes    no maybe  None",
            ]
            for gold, row in s["confusion"].items():
                lines.append(f"  {gold:<6} " + " ".join(f"{row[p]:5d}" for p in row))
            lines += ["", "Accuracy beside published anchors"]
            lines.append(f"  this run                     {_pct(s['accuracy'])}")
            lines.append(f"  majority class of this subset {_pct(s['majority_of_subset'])}")
            for anchor in report.anchors:
                lines.append(f"  {anchor['name']:<28} {_pct(anchor['accuracy'])}")
            lines.append(f"  (anchors: {ANCHOR_SOURCE})")
        else:
            lines.append(f"  time per question {_seconds(s['time_retrieval'])}")
        return "\n".join(lines)
    counts = s["counts"]
    lines += [
        "",
        f"Questions: {counts['answerable']} answerable, {counts['out_of_scope']} out of scope, "
        f"{counts['injection']} injection",
        "",
        "Retrieval: an expected source among the top-k passages (answerable)",
    ]
    lines += [f"  hit{k:<5} {_pct(v)}" for k, v in s["retrieval_hit"].items() if k != "mrr"]
    lines.append(f"  MRR     {s['retrieval_hit']['mrr']}")
    if s["retrieval_misses"]:
        lines.append(f"  missed: {', '.join(s['retrieval_misses'])}")
    if "answerable" in s:
        a, o, i = s["answerable"], s["out_of_scope"], s["injection"]
        lines += [
            "",
            "Answerable",
            f"  answered                          {_pct(a['answered'])}",
            f"  refused (false refusals)          {_pct(a['refused'])}",
            f"  required-fact recall, summary     {_pct(a['fact_recall'])}",
            f"  required-fact recall, evidence    {_pct(a['fact_recall_evidence'])}",
            f"  required-fact recall, both        {_pct(a['fact_recall_both'])}",
            f"  answers with every required fact  {_pct(a['all_facts'])}",
            f"  citation precision (expected src) {_pct(a['citation_precision'])}",
            f"  answers citing a source           {_pct(a['answers_citing'])}",
            f"  summaries withheld (unsupported)  {_pct(a['summaries_withheld'])}",
            f"  summaries not written (off-topic) {_pct(a['summaries_skipped'])}",
            f"  answers with no words, only [S..] {len(a['empty_answers'])}"
            + (f"  ({', '.join(a['empty_answers'])})" if a["empty_answers"] else ""),
            "Out of scope",
            f"  correct refusals                  {_pct(o['correct_refusals'])}"
            + (f"  answered: {', '.join(o['answered'])}" if o["answered"] else ""),
            f"  no summary (refused/quotes only)  {_pct(o['no_summary'])}",
            "Injection",
            f"  instructions obeyed               {_pct(i['obeyed'])}",
            f"  system prompt leaked              {_pct(i['leaked'])}",
            f"  resisted                          {_pct(i['resisted'])}"
            + (f"  failures: {', '.join(i['failures'])}" if i["failures"] else ""),
            f"  refused outright                  {_pct(i['refused'])}",
            "",
            f"Time per question: {_seconds(s['time'])}",
            f"  generated answers only: {_seconds(s['time_generated'])}",
        ]
    else:
        lines.append(f"  time per question {_seconds(s['time_retrieval'])}")
    if "by_turn" in s:
        lines += _turns_render(s["by_turn"], asked_in_thread=report.config.get("threads", True))
    return "\n".join(lines)


def _turns_render(by_turn: dict[str, Any], *, asked_in_thread: bool) -> list[str]:
    """First questions beside follow-ups: the figures that differ between them."""
    first, later = by_turn["first"], by_turn["follow_up"]
    how = "in their conversation" if asked_in_thread else "alone (threads off)"
    rows: list[tuple[str, Any, Any]] = [
        ("hit@5 (answerable)", first["retrieval_hit"].get("@5"), later["retrieval_hit"].get("@5"))
    ]
    if "answerable" in first:
        for label, group, key in (
            ("answered (answerable)", "answerable", "answered"),
            ("fact recall, both", "answerable", "fact_recall_both"),
            ("citation precision", "answerable", "citation_precision"),
            ("out of scope refused", "out_of_scope", "correct_refusals"),
            ("injection resisted", "injection", "resisted"),
        ):
            rows.append((label, first[group][key], later[group][key]))
    counts = f"{sum(first['counts'].values())} first, {sum(later['counts'].values())} follow-ups"
    lines = ["", f"First questions and follow-ups ({counts}; follow-ups asked {how})"]
    lines.append(f"  {'':<24} {'first':>7} {'follow-up':>10}")
    lines += [f"  {label:<24} {_pct(a):>7} {_pct(b):>10}" for label, a, b in rows]
    return lines


@dataclass
class Report:
    """A finished evaluation: what ran, on what, the summary and one row per question."""

    format: str
    dataset: dict[str, Any]
    config: dict[str, Any]
    summary: dict[str, Any]
    items: list[dict[str, Any]]
    anchors: list[dict[str, Any]] = field(default_factory=list)
    when: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)
