"""``manage.py audit_checkpoint``: sign the audit chain's head now and export it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from clinic_app.audit import record as audit


class Command(BaseCommand):
    help = (
        "Sign the audit chain's current head (HMAC with AUDIT_CHECKPOINT_KEY) and append it to "
        "AUDIT_CHECKPOINT_FILE, or to --output. Run it from cron to bound what a truncation "
        "could hide."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", type=Path, help="also append the checkpoint here")

    def handle(self, *args: Any, **options: Any) -> None:
        checkpoint = audit.audit_checkpoint()
        if checkpoint is None:
            self.stdout.write("the audit log is empty: nothing to sign")
            return
        if options["output"]:
            audit.checkpoint_export(checkpoint, options["output"])
        self.stdout.write(json.dumps(checkpoint.as_dict(), sort_keys=True))
