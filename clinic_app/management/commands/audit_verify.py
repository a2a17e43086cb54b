"""``manage.py audit_verify``: check the audit chain; exit 1 naming the first bad seq."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from clinic_app.audit import record as audit


class Command(BaseCommand):
    help = (
        "Verify the audit log: sequence continuity, every hash and link, monotonic UTC "
        "timestamps, the signed checkpoints and the chain head. Exits 1 at the first problem."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--checkpoints",
            action="append",
            type=Path,
            default=[],
            metavar="FILE",
            help="an exported checkpoint file (JSON lines); repeatable. The file named by "
            "AUDIT_CHECKPOINT_FILE is always read when it exists.",
        )
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        files = [*audit.default_checkpoint_files(), *options["checkpoints"]]
        for path in options["checkpoints"]:
            if not path.is_file():
                raise CommandError(f"checkpoint file {path} does not exist")
        try:
            report = audit.audit_verify(checkpoint_files=files)
        except ValueError as exc:  # a malformed checkpoint file
            raise CommandError(str(exc)) from exc
        audit.audit_record(
            action="audit.verify",
            actor="manage.py",
            outcome="success" if report.ok else "failure",
            details={"events": report.events, "first_bad_seq": report.first_bad_seq},
        )
        if options["json"]:
            self.stdout.write(json.dumps(report.__dict__, sort_keys=True))
        elif report.ok:
            self.stdout.write(
                f"audit chain OK: {report.events} events, head seq {report.last_seq} "
                f"{report.last_hash[:16]}..., {report.checkpoints} checkpoint(s) verified"
            )
        if not report.ok:
            raise CommandError(
                f"audit chain BROKEN at seq {report.first_bad_seq}: {report.problem}",
                returncode=1,
            )
