"""Evaluate the question-answering pipeline on a labelled dataset (see clinic_app/evaluation/).

PubMedQA runs in a scratch database and index: the command re-runs itself in a subprocess
whose ``DATABASE_URL`` and ``INDEX_DIR`` point into a temporary folder, so the clinicians'
library and history are never touched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from clinic_app.evaluation.datasets import (
    FORMATS,
    DatasetError,
    pubmedqa_load,
    questions_load,
    questions_select,
)
from clinic_app.evaluation.pubmedqa import PUBMEDQA_NUDGE, pubmedqa_evaluate, pubmedqa_ingest
from clinic_app.evaluation.questions import questions_evaluate
from clinic_app.evaluation.report import Report, report_render
from clinic_app.evaluation.run import (
    EVALUATION_USERNAME,
    backend_override,
    evaluation_record,
    evaluation_user,
    scratch_check,
    scratch_environment,
)


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = (
        "Run a labelled dataset through the same services as the page and report retrieval, "
        "answer and refusal numbers (JSON with --output, and a table)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dataset", type=Path, required=True, help="dataset file")
        parser.add_argument("--format", choices=FORMATS, required=True)
        parser.add_argument("--limit", type=_positive, default=None, help="first N questions")
        parser.add_argument(
            "--ids", default="", help="questions-jsonl: comma-separated ids to run (a subset)"
        )
        parser.add_argument(
            "--backend",
            choices=("embedded", "llamacpp", "transformers", "vllm"),
            default=None,
            help="generation backend for this run (default: INFERENCE_BACKEND)",
        )
        parser.add_argument("--output", type=Path, default=None, help="write the JSON report")
        parser.add_argument(
            "--user",
            default=EVALUATION_USERNAME,
            help="account the questions are asked as (created as a clinician if missing)",
        )
        parser.add_argument(
            "--retrieval-only", action="store_true", help="measure retrieval, generate nothing"
        )
        parser.add_argument(
            "--threads",
            choices=("on", "off"),
            default="on",
            help="questions-jsonl: ask a line with follow_up_of in its conversation (on), or "
            "every line alone, as before conversations existed (off); follow-ups are reported "
            "apart either way",
        )
        parser.add_argument(
            "--no-nudge",
            action="store_true",
            help=f"PubMedQA: ask the bare question, without {PUBMEDQA_NUDGE!r}",
        )
        parser.add_argument(
            "--record",
            action="store_true",
            help="keep the report in the database for comparison over time (audited)",
        )
        parser.add_argument("--keep-scratch", action="store_true", help="keep the PubMedQA scratch")
        # Internal: set by the parent process for the scratch run.
        parser.add_argument("--in-scratch", type=Path, default=None, help="(internal)")

    def handle(self, *args: Any, **options: Any) -> None:
        dataset: Path = options["dataset"].resolve()
        if not dataset.is_file():
            raise CommandError(f"no dataset file {dataset}")
        if options["ids"] and options["format"] != "questions-jsonl":
            raise CommandError("--ids selects questions of a questions-jsonl file")
        try:
            if options["format"] == "pubmedqa" and options["in_scratch"] is None:
                pubmedqa_load(path=dataset)  # fail fast, before any scratch work
                report_json = self._rerun_in_scratch(dataset, options)
                if options["record"] and report_json is not None:
                    self._record(json.loads(report_json.read_text(encoding="utf-8")))
                    if not options["output"]:
                        shutil.rmtree(report_json.parent, ignore_errors=True)
                return
            with backend_override(name=options["backend"]):
                report = self._evaluate(dataset, options)
        except DatasetError as exc:
            raise CommandError(f"dataset not evaluated:\n{exc}") from exc
        if options["output"]:
            options["output"].parent.mkdir(parents=True, exist_ok=True)
            options["output"].write_text(report.to_json() + "\n", encoding="utf-8")
        self.stdout.write(report_render(report))
        if options["output"]:
            self.stdout.write(f"\nJSON report: {options['output']}")
        if options["record"] and options["in_scratch"] is None:
            self._record(asdict(report))

    def _record(self, report: dict[str, Any]) -> None:
        recorded = evaluation_record(report=report, actor="evaluate-command")
        self.stdout.write(f"Recorded as evaluation run {recorded.pk}.")

    def _progress(self, line: str) -> None:
        """Per-question lines (``[n/total] ...``) gain the rate and the time left, measured from
        the first finished question (so loading the model does not skew them)."""
        counted = re.match(r"\[(\d+)/(\d+)\]", line)
        if counted:
            done, total = int(counted.group(1)), int(counted.group(2))
            now = time.monotonic()
            if done == 1:
                self._first_done = now
            elif hasattr(self, "_first_done") and now > self._first_done:
                rate = (done - 1) / (now - self._first_done)
                eta = round((total - done) / rate)
                line += f" | {rate * 60:.1f} questions/min, ETA {eta // 60}:{eta % 60:02d}"
        self.stderr.write(line)
        self.stderr.flush()

    def _evaluate(self, dataset: Path, options: dict[str, Any]) -> Report:
        if options["format"] == "questions-jsonl":
            questions = questions_load(path=dataset)
            ids = [i.strip() for i in options["ids"].split(",") if i.strip()]
            chosen = questions_select(questions, ids=ids, limit=options["limit"])
            return questions_evaluate(
                path=dataset,
                questions=chosen,
                total=len(questions),
                user=evaluation_user(username=options["user"]),
                retrieval_only=options["retrieval_only"],
                threads=options["threads"] == "on",
                progress=self._progress,
            )
        scratch_check(root=options["in_scratch"])
        items = pubmedqa_load(path=dataset)
        call_command("migrate", interactive=False, verbosity=0)
        self._progress(f"ingesting {len(items)} abstracts into the scratch index...")
        ingest = pubmedqa_ingest(path=dataset)
        self._progress(
            f"ingested {ingest['abstracts']} abstracts, {ingest['passages']} passages "
            f"in {ingest['seconds']} s"
        )
        return pubmedqa_evaluate(
            path=dataset,
            items=items[: options["limit"]] if options["limit"] else items,
            total=len(items),
            ingest=ingest,
            user=evaluation_user(username=options["user"]),
            nudge="" if options["no_nudge"] else PUBMEDQA_NUDGE,
            retrieval_only=options["retrieval_only"],
            progress=self._progress,
        )

    def _rerun_in_scratch(self, dataset: Path, options: dict[str, Any]) -> Path | None:
        """Run this command again in a subprocess on a scratch database and index; returns the
        JSON report it wrote (``--output``, or a temporary file for ``--record``; else None)."""
        root = Path(tempfile.mkdtemp(prefix="clinic-eval-"))
        output = options["output"].resolve() if options["output"] else None
        if output is None and options["record"]:
            output = Path(tempfile.mkdtemp(prefix="clinic-eval-report-")) / "report.json"
        argv = [
            sys.executable,
            str(Path(settings.BASE_DIR) / "manage.py"),
            "evaluate",
            "--dataset",
            str(dataset),
            "--format",
            "pubmedqa",
            "--user",
            options["user"],
            "--in-scratch",
            str(root),
        ]
        if options["limit"]:
            argv += ["--limit", str(options["limit"])]
        if options["backend"]:
            argv += ["--backend", options["backend"]]
        if output is not None:
            argv += ["--output", str(output)]
        argv += [
            flag
            for flag, on in (
                ("--retrieval-only", options["retrieval_only"]),
                ("--no-nudge", options["no_nudge"]),
            )
            if on
        ]
        env = scratch_environment(root=root, base=dict(os.environ))
        try:
            # Progress (stderr) streams through; the table (stdout) is relayed when done.
            done = subprocess.run(
                argv,
                env=env,
                cwd=settings.BASE_DIR,
                stdout=subprocess.PIPE,
                text=True,
                check=False,
            )
        finally:
            if options["keep_scratch"]:
                self.stderr.write(f"scratch database and index kept in {root}")
            else:
                shutil.rmtree(root, ignore_errors=True)
        self.stdout.write(done.stdout.rstrip("\n"))
        if done.returncode != 0:
            raise CommandError(f"the scratch evaluation failed (exit status {done.returncode})")
        return output
