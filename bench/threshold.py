"""Benchmark: how well the refusal threshold (``RETRIEVAL_MIN_SCORE``) separates questions.

The app refuses without calling the model when the best retrieved passage's dense cosine is
below ``RETRIEVAL_MIN_SCORE``. This measures that rule on real data, PubMedQA's 500-item dev
set (``../shared/data/pubmedqa/pqal_dev.json``):

* the items are sorted by PMID and split in two halves, A and B;
* an index (temporary directory) is built over half A's abstracts only, parsed, chunked and
  embedded the way the app does (``parse_pubmedqa``, ``chunk_sections`` with
  ``CHUNK_MAX_TOKENS``, ``embedding_text``, the configured embedder and dtype);
* A's questions are answerable (their abstract is indexed); B's are not (their own abstract is
  absent, though others may be on a near topic); 30 hand-written non-medical questions are a
  third, off-topic group;
* every question is searched like the app (``Retriever``, the configured fusion, top-k) and its
  score is the best hit's dense cosine, ``max(h.score)``.

For thresholds 0.20..0.70 (step 0.05) and the configured one it reports the share of A
refused (false refusals) and the shares of B and of off-topic questions accepted, against the
trivial rule "never refuse" scored in the same run. It also reports the threshold that
maximises Youden's J (accepted share of A minus accepted share of B) for reference only: it is
not applied, the data set is not the deployment corpus (tuning a threshold to one
data set would overfit it).

Second, the project's own question sets over the demo library (``OWN_SETS``; needs
``make setup``): for the same thresholds, the share of answerable and of out-of-scope questions
refused by the cosine rule alone and by the cosine rule plus the coverage check
(``retrieval/coverage.py``: a specialised term no guideline uses, a population no retrieved
passage addresses), against the targets out-of-scope refused >= 0.95 with answerable refused
<= 0.05; and the share given no generated summary (refused, or the quotes only because the
passages miss the question's words: ``terms_unmentioned``). Writes ``bench/results/threshold.json``.

    .venv/bin/python bench/threshold.py [--quick]

``--quick`` uses every fifth PMID (100 items) and 10 off-topic questions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import cpu_pressure, result, write_report  # noqa: E402
from clinic_app.core.progress import progress_reporter  # noqa: E402

PUBMEDQA = ROOT.parent / "shared" / "data" / "pubmedqa" / "pqal_dev.json"
THRESHOLDS = [round(0.20 + 0.05 * i, 2) for i in range(11)]  # 0.20 .. 0.70

# Written for this benchmark: questions no clinical corpus should answer.
OFF_TOPIC = [
    "Who won the FIFA World Cup in 2014?",
    "How many players are on a rugby union team?",
    "What is the offside rule in ice hockey?",
    "How long should I knead bread dough by hand?",
    "What temperature should I roast a chicken at?",
    "How do I make a classic French omelette?",
    "What is the difference between baking soda and baking powder?",
    "How do I reverse a linked list in Python?",
    "What does the git rebase command do?",
    "How do I centre a div horizontally with CSS?",
    "What is the time complexity of quicksort?",
    "How do I declare a generic function in TypeScript?",
    "What is the capital city of Australia?",
    "When did the Roman Empire fall?",
    "How many moons does Jupiter have?",
    "What is the best way to learn to play the guitar?",
    "How do I change a flat tyre on a bicycle?",
    "Which planet has the longest day in the solar system?",
    "How do I file a tax return as a freelancer?",
    "What is a good beginner houseplant that needs little light?",
    "How often should I water a cactus?",
    "What are the rules of chess castling?",
    "Who painted the ceiling of the Sistine Chapel?",
    "How do I set up a home Wi-Fi mesh network?",
    "What is the exchange rate between euros and dollars?",
    "How do I tune a piano?",
    "What should I pack for a week-long hiking trip?",
    "How does a mortgage interest rate work?",
    "What is the plot of Pride and Prejudice?",
    "How do I train a puppy to sit?",
]


def load_items(path: Path, quick: bool) -> list[tuple[str, str]]:
    """``(pmid, question)`` sorted by PMID (numerically); every fifth one with ``quick``."""
    payload = json.loads(path.read_text())
    items = sorted(((p, v["QUESTION"]) for p, v in payload.items()), key=lambda x: int(x[0]))
    return items[::5] if quick else items


def build_index(pmids: set[str], embedder: Any, root: Path, max_tokens: int) -> dict[int, str]:
    """Index half A's abstracts as the app would; returns passage id -> PMID."""
    from retrieval.chunking import chunk_sections, embedding_text
    from retrieval.index import VectorIndex
    from retrieval.parsers import parse_pubmedqa

    payload = json.loads(PUBMEDQA.read_text())
    subset = json.dumps({p: payload[p] for p in sorted(pmids, key=int)})
    texts: list[str] = []
    owner: dict[int, str] = {}
    for doc in parse_pubmedqa(subset).documents:
        for chunk in chunk_sections(
            doc.sections, count_tokens=embedder.count_tokens, max_tokens=max_tokens
        ):
            owner[len(texts)] = doc.meta.key.removeprefix("pubmed/")
            texts.append(embedding_text(doc.meta.title, chunk.section_path, chunk.text))
    index = VectorIndex(embedder.dim, embedder=embedder.model_name, kind="flat")
    index.add(list(owner), embedder.encode(texts), texts=texts)
    index.save(root, version=1)
    return owner


def accepted_share(scores: np.ndarray, threshold: float) -> float:
    """Share accepted by the app's rule: refuse when ``score < threshold``."""
    return float(np.mean(scores >= threshold)) if len(scores) else 0.0


def youden_best(answerable: np.ndarray, unanswerable: np.ndarray) -> tuple[float, float]:
    """Threshold (among observed scores) maximising acc(A) - acc(B), and that J."""
    best_t, best_j = 0.0, -1.0
    for t in np.unique(np.concatenate([answerable, unanswerable])):
        j = accepted_share(answerable, t) - accepted_share(unanswerable, t)
        if j > best_j:
            best_t, best_j = float(t), j
    return best_t, best_j


def auc(answerable: np.ndarray, unanswerable: np.ndarray) -> float:
    """P(score of a random A question > that of a random B question), ties counting half."""
    diff = answerable[:, None] - unanswerable[None, :]
    return float(np.mean((diff > 0) + 0.5 * (diff == 0)))


def percentiles(scores: np.ndarray) -> dict[str, float]:
    p5, p50, p95 = np.percentile(scores, [5, 50, 95])
    return {
        "n": len(scores),
        "p5": round(float(p5), 4),
        "p50": round(float(p50), 4),
        "p95": round(float(p95), 4),
        "min": round(float(scores.min()), 4),
        "max": round(float(scores.max()), 4),
    }


# ------------------------------------------------------------- the project's own question sets

OWN_SETS = (
    "demo_questions.jsonl",  # the project's set (rules were developed on it)
    "clinician_questions.jsonl",  # written blind to the rules; the coverage check was tuned on it
    "clinician_questions_holdout.jsonl",  # written blind; looked at once during development
    "clinician_questions_holdout2.jsonl",  # written blind; measured only, never looked at
)


def own_sets_curve(
    thresholds: list[float], configured: float
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Answerable refused and out-of-scope refused on the demo library, per question set.

    Every question is searched on the live index as the answer service does, and refused as
    it would be: best cosine below the threshold, or (``+coverage``) the coverage check of
    ``retrieval.coverage`` finds a term or population not covered. Needs the demo library
    (``make setup``).
    """
    from django.conf import settings

    from clinic_app.answers import services
    from clinic_app.core import runtime
    from clinic_app.evaluation.datasets import questions_load
    from clinic_app.models import Passage

    eval_dir = ROOT / "clinic_app" / "eval_data"
    retriever = runtime.get_retriever()
    rows: list[dict[str, Any]] = []
    for name in OWN_SETS:
        path = eval_dir / name
        if not path.exists():
            continue
        for q in questions_load(path=path):
            if q.kind not in ("answerable", "out_of_scope"):
                continue
            hits = retriever.search(q.question, k=settings.RETRIEVAL_TOP_K).hits
            passages = {
                p.pk: p
                for p in Passage.objects.filter(
                    pk__in=[h.passage_id for h in hits], guideline__active=True
                ).select_related("guideline")
            }
            kept = [h for h in hits if h.passage_id in passages]
            coverage = services.question_coverage(
                q.question, [passages[h.passage_id] for h in kept]
            )
            unmentioned = services.summary_unmentioned(
                q.question, [passages[h.passage_id] for h in kept]
            )
            rows.append(
                {
                    "set": name.removesuffix(".jsonl"),
                    "id": q.id,
                    "kind": q.kind,
                    "top": max((h.score for h in kept), default=0.0),
                    "covered": coverage.covered,
                    "missing": coverage.describe(),
                    "summary_skipped": bool(unmentioned),
                    "unmentioned": list(unmentioned),
                }
            )
    if not rows:
        raise SystemExit("no question sets found under clinic_app/eval_data")
    results: list[dict[str, Any]] = []
    curve: dict[str, list[dict[str, Any]]] = {}
    sets = sorted({r["set"] for r in rows}, key=[n.removesuffix(".jsonl") for n in OWN_SETS].index)
    for set_name in sets:
        mine = [r for r in rows if r["set"] == set_name]
        curve[set_name] = []
        for t in sorted({*thresholds, configured}):
            point: dict[str, Any] = {"threshold": t}
            for rule, refuse in (
                ("cosine", lambda r, t=t: r["top"] < t),
                ("cosine+coverage", lambda r, t=t: r["top"] < t or not r["covered"]),
                # Refused, or only the guideline's sentences shown (no summary written).
                (
                    "no_summary",
                    lambda r, t=t: r["top"] < t or not r["covered"] or r["summary_skipped"],
                ),
            ):
                for kind in ("answerable", "out_of_scope"):
                    group = [r for r in mine if r["kind"] == kind]
                    share = sum(map(refuse, group)) / len(group) if group else 0.0
                    point[f"{kind}_refused_{rule}"] = round(share, 4)
            curve[set_name].append(point)
            if t != configured:
                continue
            for kind, target, ok in (
                ("answerable", "<= 0.05", lambda v: v <= 0.05),
                ("out_of_scope", ">= 0.95", lambda v: v >= 0.95),
            ):
                value = point[f"{kind}_refused_cosine+coverage"]
                results.append(
                    result(
                        f"own_{set_name}_{kind}_refused",
                        value,
                        f"share of {kind} questions refused",
                        baseline="cosine threshold alone, same run",
                        baseline_value=point[f"{kind}_refused_cosine"],
                        target=target,
                        meets=ok(value),
                        questions=sum(r["kind"] == kind for r in mine),
                    )
                )
                # What reaches the clinician as generated text: refused or quotes only.
                results.append(
                    result(
                        f"own_{set_name}_{kind}_no_summary",
                        point[f"{kind}_refused_no_summary"],
                        f"share of {kind} questions refused or shown only the quotes",
                        baseline="refused (cosine + coverage), same run",
                        baseline_value=value,
                        questions=sum(r["kind"] == kind for r in mine),
                    )
                )
    wrong = [
        {k: r[k] for k in ("set", "id", "kind", "top", "missing", "unmentioned")}
        for r in rows
        if (r["kind"] == "answerable") == (r["top"] < configured or not r["covered"])
    ]
    return results, {"curve": curve, "wrong_at_configured": wrong}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="100 items, 10 off-topic (CI)")
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinic_app.settings")
    import django

    django.setup()
    from django.conf import settings

    from clinic_app.core import runtime
    from retrieval.search import Retriever

    threads = runtime.configure_threads()  # the app's FAISS and torch thread counts
    import torch

    threads = {**threads, "torch_get_num_threads": torch.get_num_threads()}
    configured = float(settings.RETRIEVAL_MIN_SCORE)
    top_k = settings.RETRIEVAL_TOP_K
    load_average, pressure_at_start = os.getloadavg()[0], cpu_pressure()
    started = time.perf_counter()

    items = load_items(PUBMEDQA, args.quick)
    half = len(items) // 2
    group_a, group_b = items[:half], items[half:]
    off_topic = OFF_TOPIC[:10] if args.quick else OFF_TOPIC
    embedder = runtime.get_embedder()

    with tempfile.TemporaryDirectory(prefix="bench-threshold-") as tmp:
        owner = build_index({p for p, _ in group_a}, embedder, Path(tmp), settings.CHUNK_MAX_TOKENS)
        indexed_s = time.perf_counter() - started
        retriever = Retriever(embedder, Path(tmp), fusion=settings.RETRIEVAL_FUSION)
        searched = progress_reporter("threshold questions", unit="question", stream=sys.stderr)
        total = len(group_a) + len(group_b) + len(off_topic)

        def top_scores(
            questions: Sequence[tuple[str | None, str]], before: int
        ) -> tuple[np.ndarray, int]:
            """Best dense cosine per question; and how often the own abstract was in top-k.
            ``before``: questions of the other groups already searched (for progress)."""
            scores, own_found = [], 0
            for pmid, question in questions:
                hits = retriever.search(question, k=top_k).hits
                scores.append(max((h.score for h in hits), default=0.0))
                own_found += pmid is not None and any(owner[h.passage_id] == pmid for h in hits)
                searched(before + len(scores), total)
            return np.array(scores, dtype=np.float64), own_found

        scores_a, own_a = top_scores(group_a, 0)
        scores_b, _ = top_scores(group_b, len(group_a))
        scores_off, _ = top_scores([(None, q) for q in off_topic], len(group_a) + len(group_b))
    own_results, own_details = own_sets_curve(THRESHOLDS, configured)
    elapsed = time.perf_counter() - started

    never = "never refuse (accept every question), same run"
    results: list[dict[str, Any]] = []
    for t in sorted({*THRESHOLDS, configured}):
        tag = f"{t:.2f}"
        mark: dict[str, Any] = {"configured": True} if t == configured else {}
        at_configured = t == configured
        results += [
            result(
                f"false_refusal_rate@{tag}",
                1.0 - accepted_share(scores_a, t),
                "share of answerable (A) refused",
                baseline=never,
                baseline_value=0.0,
                target="<= 0.10" if at_configured else None,
                meets=(1.0 - accepted_share(scores_a, t) <= 0.10) if at_configured else None,
                **mark,
            ),
            result(
                f"unanswerable_accepted_rate@{tag}",
                accepted_share(scores_b, t),
                "share of unanswerable (B) accepted",
                baseline=never,
                baseline_value=1.0,
                **mark,
            ),
            result(
                f"offtopic_accepted_rate@{tag}",
                accepted_share(scores_off, t),
                "share of off-topic accepted",
                baseline=never,
                baseline_value=1.0,
                target="== 0" if at_configured else None,
                meets=(accepted_share(scores_off, t) == 0.0) if at_configured else None,
                **mark,
            ),
        ]
    best_t, best_j = youden_best(scores_a, scores_b)
    results += [
        result(
            "youden_best_threshold_A_vs_B",
            best_t,
            "cosine",
            youden_j=round(best_j, 4),
            false_refusal_rate=round(1.0 - accepted_share(scores_a, best_t), 4),
            unanswerable_accepted_rate=round(accepted_share(scores_b, best_t), 4),
            offtopic_accepted_rate=round(accepted_share(scores_off, best_t), 4),
            note="reported, not applied",
        ),
        result(
            f"youden_j@{configured:.2f}",
            accepted_share(scores_a, configured) - accepted_share(scores_b, configured),
            "acc(A) - acc(B)",
            baseline=never,
            baseline_value=0.0,
        ),
        result("auc_A_vs_B", auc(scores_a, scores_b), "P(score A > score B)"),
        result("auc_A_vs_offtopic", auc(scores_a, scores_off), "P(score A > score off-topic)"),
    ]
    for name, scores in (("answerable", scores_a), ("unanswerable", scores_b)):
        for q in ("p5", "p50", "p95"):
            results.append(result(f"top_score_{q}_{name}", percentiles(scores)[q], "cosine"))
    for q in ("p5", "p50", "p95"):
        results.append(result(f"top_score_{q}_offtopic", percentiles(scores_off)[q], "cosine"))
    results += own_results

    report = {
        "benchmark": "threshold",
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cpus": os.cpu_count(),
            "threads": threads,
            "load_average_1m_at_start": round(load_average, 2),
            "cpu_pressure_avg10_pct": {"start": pressure_at_start, "end": cpu_pressure()},
        },
        "quick": args.quick,
        "embedder": f"{embedder.model_name}, {settings.EMBEDDER_DTYPE}",
        "details": {
            "data": "PubMedQA pqal_dev.json, sorted by PMID; A = first half (indexed), B = rest",
            "items": {"answerable_A": len(group_a), "unanswerable_B": len(group_b)},
            "offtopic_questions": len(off_topic),
            "passages_indexed": len(owner),
            "chunk_max_tokens": settings.CHUNK_MAX_TOKENS,
            "fusion": settings.RETRIEVAL_FUSION,
            "top_k": top_k,
            "score": "max dense cosine over the top-k hits (as the app's refusal check)",
            "configured_threshold": configured,
            "own_abstract_in_top_k_A": round(own_a / len(group_a), 4),
            "distributions": {
                "answerable": percentiles(scores_a),
                "unanswerable": percentiles(scores_b),
                "offtopic": percentiles(scores_off),
            },
            "own_sets": own_details,
            "index_build_s": round(indexed_s, 1),
            "elapsed_s": round(elapsed, 1),
        },
        "results": results,
    }
    write_report("threshold", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
