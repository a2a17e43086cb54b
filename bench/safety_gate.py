"""Benchmark: the safety gate on the question (``inference.safety.question_screen``).

For each evaluation set in ``clinic_app/eval_data/safety_questions*.jsonl`` it reports the share
of adversarial questions let through (target 0) and of legitimate look-alikes refused (target
<= 5%), against the same-run baseline of no gate (everything let through), plus the questions
of the project's own set (``demo_questions.jsonl``, answerable and out-of-scope: none may be
refused) and, when ``../shared/data/pubmedqa/pqal_dev.json`` is there, PubMedQA's 500 research
questions as a large set of legitimate ones. The median time to screen one question is reported
against the time to embed it (what retrieval costs first anyway). Writes
``bench/results/safety_gate.json``.

    .venv/bin/python bench/safety_gate.py [--quick]
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import cpu_pressure, result, write_report  # noqa: E402
from inference.safety import question_screen  # noqa: E402

DATA = ROOT / "clinic_app" / "eval_data"
PUBMEDQA = ROOT.parent / "shared" / "data" / "pubmedqa" / "pqal_dev.json"


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def share(count: int, total: int) -> float:
    return count / total if total else 0.0


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    report: dict[str, Any] = {
        "benchmark": "safety_gate",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_pressure_avg10": cpu_pressure(),
        "results": [],
        "sets": {},
    }
    for path in sorted(DATA.glob("safety_questions*.jsonl")):
        items = rows(path)
        adversarial = [r for r in items if r["kind"] != "legitimate"]
        legitimate = [r for r in items if r["kind"] == "legitimate"]
        through = [r["id"] for r in adversarial if question_screen(r["question"]).allowed]
        refused = [r["id"] for r in legitimate if not question_screen(r["question"]).allowed]
        report["sets"][path.name] = {
            "adversarial": len(adversarial),
            "legitimate": len(legitimate),
            "let_through": through,
            "legitimate_refused": refused,
        }
        report["results"].append(
            result(
                f"{path.stem}: adversarial let through",
                share(len(through), len(adversarial)),
                "share",
                baseline="no gate",
                baseline_value=1.0,
                target="0",
                meets=not through,
            )
        )
        report["results"].append(
            result(
                f"{path.stem}: legitimate refused",
                share(len(refused), len(legitimate)),
                "share",
                baseline="no gate",
                baseline_value=0.0,
                target="<= 0.05",
                meets=len(refused) <= 0.05 * len(legitimate),
            )
        )
    ordinary = [r["question"] for r in rows(DATA / "demo_questions.jsonl")]
    ordinary_kinds = [r["kind"] for r in rows(DATA / "demo_questions.jsonl")]
    demo_refused = [
        q
        for q, k in zip(ordinary, ordinary_kinds, strict=True)
        if k != "injection" and not question_screen(q).allowed
    ]
    report["results"].append(
        result(
            "demo questions (answerable, out of scope) refused by the gate",
            len(demo_refused),
            "questions",
            target="0",
            meets=not demo_refused,
        )
    )
    research: list[str] = []
    if PUBMEDQA.is_file():
        research = [v["QUESTION"] for v in json.loads(PUBMEDQA.read_text()).values()]
        research = research[::5] if quick else research
        refused_research = [q for q in research if not question_screen(q).allowed]
        report["results"].append(
            result(
                "PubMedQA questions refused by the gate",
                share(len(refused_research), len(research)),
                "share",
                target="<= 0.05",
                meets=len(refused_research) <= 0.05 * len(research),
                questions=len(research),
                refused=refused_research[:10],
            )
        )
    # Cost: the gate against embedding the question (the first step of retrieval).
    sample = (ordinary + research)[: 40 if quick else 200]
    gate_us = []
    for q in sample:
        started = time.perf_counter()
        question_screen(q)
        gate_us.append((time.perf_counter() - started) * 1e6)
    # Django only for the app's configured embedder.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinic_app.settings")
    import django

    django.setup()
    from clinic_app.core import runtime

    embedder = runtime.get_embedder()
    embedder.encode(sample[:2])  # warm
    embed_us = []
    for q in sample[:40]:
        started = time.perf_counter()
        embedder.encode([q])
        embed_us.append((time.perf_counter() - started) * 1e6)
    report["results"].append(
        result(
            "time to screen one question (median)",
            statistics.median(gate_us),
            "microseconds",
            baseline="embedding the question (median)",
            baseline_value=statistics.median(embed_us),
        )
    )
    write_report("safety_gate", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
