"""Benchmark: can a yes/no bottom line be read from the embedded model's likelihoods?

Issue 17 asks for a Yes / No / It depends opening chosen by comparing the model's likelihood of
the options after the evidence, not parsed from free text. This measures whether the embedded
models carry that signal, on PubMedQA's expert-labelled dev items (``pqal_dev.json``; every
``--step``-th item in PMID order) with each item's own abstract as the sources:

* ``answer_prompt``: the app's own prompt (``inference.prompts.render``, ChatML), log-probability
  of the answer's first token being ``Yes``, ``No`` or ``It`` (for "It depends");
* ``judgement_prompt``: a prompt that asks for one word, yes / no / maybe (both cases summed);

each read raw and calibrated by the same prompt with content-free input ("N/A", after Zhao et al.
2021, "Calibrate before use"). Reported per model installed: accuracy, the share of the most
chosen label (target: no label above 0.70), and the AUC of ``logp(yes) - logp(no)`` between
gold-yes and gold-no items (0.5 is no signal), against "always yes" (the majority label) in the
same run. Target for adoption: accuracy >= 0.60. Writes ``bench/results/bottom_line.json``.

    .venv/bin/python bench/bottom_line.py [--quick] [--step N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import cpu_pressure, result, write_report  # noqa: E402
from clinic_app.core.progress import progress_reporter  # noqa: E402
from inference.prompts import PROFILES, SourcePassage, render  # noqa: E402

PUBMEDQA = ROOT.parent / "shared" / "data" / "pubmedqa" / "pqal_dev.json"
MODELS_DIR = ROOT / "var" / "models"
MODELS = ("qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct")
LABELS = ("yes", "no", "maybe")


def judgement_prompt(question: str, abstract: str) -> str:
    return (
        "<|im_start|>system\nYou answer research questions from the abstract given. Reply with "
        "one word: yes, no or maybe.<|im_end|>\n"
        f"<|im_start|>user\nAbstract:\n{abstract}\n\nQuestion: {question}\nReply with one word: "
        "yes, no or maybe.<|im_end|>\n<|im_start|>assistant\n"
    )


def answer_prompt(question: str, contexts: list[str], sections: list[str]) -> str:
    sources = [
        SourcePassage(i, "PubMed abstract", section, text)
        for i, (text, section) in enumerate(zip(contexts, sections, strict=False))
    ]
    return render(PROFILES["chatml"], question, sources)


class Scorer:
    """Next-token log-probabilities of each label's first tokens after a prompt."""

    def __init__(self, model_dir: Path, words: dict[str, list[str]]) -> None:
        from inference.backends.transformers_backend import TransformersBackend

        loaded = TransformersBackend(model_path=str(model_dir), dtype="auto").load()
        self.model, self.tokenizer = loaded.model, loaded.tokenizer
        self.dtype = str(next(self.model.parameters()).dtype)
        self.ids = {
            label: [self.tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in ws]
            for label, ws in words.items()
        }

    def __call__(self, prompt: str) -> dict[str, float]:
        import torch

        encoded = self.tokenizer(prompt, return_tensors="pt")
        with torch.no_grad():
            logits = self.model(**encoded).logits[0, -1].float()
        logp = torch.log_softmax(logits, -1)
        return {k: float(torch.logsumexp(logp[ids], 0)) for k, ids in self.ids.items()}


def auc(pos: list[float], neg: list[float]) -> float:
    if not pos or not neg:
        return 0.5
    wins = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def summarise(rows: list[tuple[str, dict[str, float]]], prior: dict[str, float]) -> dict[str, Any]:
    picks = [max(LABELS, key=lambda k: s[k] - prior[k]) for _, s in rows]
    gold = [g for g, _ in rows]
    shares = Counter(picks)
    diff = [(g, s["yes"] - s["no"]) for g, s in rows]
    return {
        "accuracy": sum(p == g for p, g in zip(picks, gold, strict=True)) / len(rows),
        "top_label_share": max(shares.values()) / len(rows),
        "labels": dict(shares),
        "auc_yes_vs_no": auc([d for g, d in diff if g == "yes"], [d for g, d in diff if g == "no"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="every 50th item (10)")
    parser.add_argument("--step", type=int, default=10, help="every N-th item (default 10: 50)")
    args = parser.parse_args()
    step = 50 if args.quick else args.step
    import torch

    torch.set_num_threads(os.cpu_count() or 2)
    started = time.perf_counter()
    load_average, pressure_at_start = os.getloadavg()[0], cpu_pressure()
    payload = json.loads(PUBMEDQA.read_text())
    items = sorted(payload.items(), key=lambda kv: int(kv[0]))[::step]
    gold = [item["final_decision"] for _, item in items]
    majority = Counter(gold).most_common(1)[0][0]
    always = sum(g == majority for g in gold) / len(gold)
    results: list[dict[str, Any]] = []
    details: dict[str, Any] = {"items": len(items), "gold": dict(Counter(gold))}
    progress = progress_reporter("bottom line", unit="prompt", stream=sys.stderr)
    installed = [m for m in MODELS if (MODELS_DIR / m / "model.safetensors").is_file()]
    total, done = 2 * len(items) * len(installed), 0
    for model in installed:
        layouts = {
            "answer_prompt": (
                Scorer(MODELS_DIR / model, {"yes": ["Yes"], "no": ["No"], "maybe": ["It"]}),
                lambda q, it: answer_prompt(q, it["CONTEXTS"], it["LABELS"]),
                answer_prompt("N/A", ["N/A"], ["N/A"]),
            ),
            "judgement_prompt": (
                Scorer(
                    MODELS_DIR / model,
                    {"yes": ["yes", "Yes"], "no": ["no", "No"], "maybe": ["maybe", "Maybe"]},
                ),
                lambda q, it: judgement_prompt(q, "\n".join(it["CONTEXTS"])),
                judgement_prompt("N/A", "N/A"),
            ),
        }
        for layout, (scorer, build, content_free) in layouts.items():
            prior = scorer(content_free)
            rows = []
            for _, item in items:
                rows.append((item["final_decision"], scorer(build(item["QUESTION"], item))))
                done += 1
                progress(done, total)
            for reading, offset in (("raw", dict.fromkeys(LABELS, 0.0)), ("calibrated", prior)):
                s = summarise(rows, offset)
                name = f"{model}_{layout}_{reading}"
                details[name] = {**s, "dtype": scorer.dtype}
                results.append(
                    result(
                        f"accuracy_{name}",
                        s["accuracy"],
                        "fraction",
                        baseline=f"always '{majority}', same items",
                        baseline_value=always,
                        target=">= 0.60 and no label > 0.70",
                        meets=s["accuracy"] >= 0.60 and s["top_label_share"] <= 0.70,
                        top_label_share=round(s["top_label_share"], 4),
                        auc_yes_vs_no=round(s["auc_yes_vs_no"], 4),
                    )
                )
    report = {
        "benchmark": "bottom_line",
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_1m_at_start": round(load_average, 2),
            "cpu_pressure_avg10_pct": {"start": pressure_at_start, "end": cpu_pressure()},
        },
        "quick": args.quick,
        "models": installed,
        "details": details,
        "results": results,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    write_report("bottom_line", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
