"""Ask a question from the command line through the same service the page uses."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser

from clinic_app.answers import services
from clinic_app.answers.streaming import CollectingSink
from clinic_app.models import AnswerStatus

EXIT_CODES = {
    AnswerStatus.COMPLETE: 0,
    AnswerStatus.FAILED: 1,
    AnswerStatus.REFUSED: 2,
    AnswerStatus.CANCELLED: 3,
}


class Command(BaseCommand):
    help = (
        "Print the streamed answer to a question, then its citations. Exit status: 0 answered, "
        "1 failed, 2 refused (no sufficient evidence), 3 cancelled."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("question")
        parser.add_argument("--user", default="clinician", help="asking clinician's username")
        parser.add_argument(
            "--follow-up-of",
            type=int,
            default=None,
            metavar="ANSWER_ID",
            help="continue the conversation of this answer (one of the user's own, the latest "
            "of its conversation)",
        )
        parser.add_argument(
            "--json",
            action="store_true",
            help="print the finished answer as one JSON object (id, status, text, message, "
            "evidence, sources with their guideline key, flags), nothing streamed",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user = User.objects.filter(username=options["user"]).first()
        if user is None:
            raise CommandError(f"no user {options['user']!r} (run `manage.py setup_demo`)")
        try:
            answer = services.question_ask(
                user=user,
                text=options["question"],
                follow_up_of=options["follow_up_of"],
                via="command",
            )
        except services.QuestionRejected as exc:
            raise CommandError(str(exc)) from exc

        def echo(delta: str) -> None:
            self.stdout.write(delta, ending="")
            self.stdout.flush()

        sink = CollectingSink(echo=None if options["json"] else echo)
        answer = services.answer_generate(answer_id=answer.pk, sink=sink)
        payload: Mapping[str, Any] = sink.final or {}
        if options["json"]:
            self.stdout.write(json.dumps(script_view(payload), ensure_ascii=False, indent=2))
            sys.exit(EXIT_CODES[AnswerStatus(answer.status)])
        self.stdout.write("")
        if answer.status != AnswerStatus.COMPLETE:
            self.stderr.write(f"{answer.status}: {answer.message}")
        elif answer.message:  # no summary was written: the guideline's sentences, and why
            for e in payload.get("evidence", []):
                self.stdout.write(f"[S{e['source']}] {e['text']}")
            self.stdout.write(f"\n{answer.message}\n")
        for c in payload.get("citations", []):
            g = c["passage"]["guideline"]
            mark = "*" if c["cited"] else " "
            self.stdout.write(
                f"{mark}[S{c['number']}] {g['title']} ({g['organisation']}, {g['year']}) "
                f"- {c['passage']['section']} - {g['url'] or g['doi']} (score {c['score']:.2f})"
            )
        if answer.status == AnswerStatus.COMPLETE:
            self.stdout.write(f"\n{answer.disclaimer}")
        sys.exit(EXIT_CODES[AnswerStatus(answer.status)])


def script_view(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The answer as scripts read it: what the page shows, sources flattened to their keys."""
    return {
        "id": payload.get("id"),
        "thread_id": payload.get("thread_id"),
        "turn": payload.get("turn"),
        "follow_up_of": payload.get("follow_up_of"),
        "status": payload.get("status"),
        "text": payload.get("text", ""),
        "message": payload.get("message", ""),
        "evidence": payload.get("evidence", []),
        "sources": [
            {
                "number": c["number"],
                "cited": c["cited"],
                "score": c["score"],
                "passage_id": c["passage"]["id"],
                "guideline_key": c["passage"]["guideline"]["key"],
                "guideline": c["passage"]["guideline"]["title"],
                "section": c["passage"]["section"],
            }
            for c in payload.get("citations", [])
        ],
        "flags": payload.get("flags", []),
        "disclaimer": payload.get("disclaimer", ""),
    }
