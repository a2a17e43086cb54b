"""Create the roles and demo accounts, and ingest the demo guideline corpus (idempotent)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from clinic_app.core.progress import progress_reporter
from clinic_app.library import ingest
from clinic_app.models import Role
from retrieval.loaders import load_open_medicine

DEMO_USERS = {
    "clinician": Role.CLINICIAN,
    "guideline-admin": Role.GUIDELINE_ADMIN,
    "auditor": Role.AUDITOR,
}


class Command(BaseCommand):
    help = "Create roles, demo accounts (clinician, guideline-admin, auditor) and the demo index."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--skip-corpus", action="store_true", help="do not ingest the corpus")
        parser.add_argument(
            "--guidelines",
            default="",
            help="comma-separated guideline ids to ingest (default: the whole demo corpus)",
        )
        parser.add_argument(
            "--reset-passwords",
            action="store_true",
            help="set the demo accounts' password again (DEMO_PASSWORD or a new generated one)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        given = os.environ.get("DEMO_PASSWORD", "")
        password = given or secrets.token_urlsafe(18)
        names = self._accounts(password=password, reset=options["reset_passwords"])
        if names:
            self._announce(names=names, password=password, generated=not given)
        if options["skip_corpus"]:
            return
        wanted = {g.strip() for g in options["guidelines"].split(",") if g.strip()}
        documents = (
            d for d in load_open_medicine() if not wanted or d.meta.key.split("/")[0] in wanted
        )
        # Embedding the demo corpus is the long step of a first `make run`: show it moving.
        report = ingest.guidelines_ingest(
            documents=documents,
            actor="setup_demo",
            progress=progress_reporter(
                "embedding demo passages", unit="passage", stream=self.stderr
            ),
        )
        self.stdout.write(
            f"Demo corpus: {report.documents_added} documents added, "
            f"{report.documents_unchanged} unchanged, {report.passages_added} passages; "
            f"index version {report.index_version or 'unchanged'}"
        )

    @transaction.atomic
    def _accounts(self, *, password: str, reset: bool) -> list[str]:
        """The demo accounts whose password was set; a weak password sets none (rolled back)."""
        for role in Role:
            Group.objects.get_or_create(name=role.value)
        touched: list[str] = []
        for username, role in DEMO_USERS.items():
            user, was_created = User.objects.get_or_create(username=username)
            if was_created or reset:
                try:
                    validate_password(password, user)
                except ValidationError as exc:
                    raise CommandError(
                        f"DEMO_PASSWORD is refused for {username}: {' '.join(exc.messages)} "
                        "Choose a longer, uncommon one, or unset DEMO_PASSWORD to have one "
                        "generated."
                    ) from exc
                user.set_password(password)
                user.save()
                touched.append(username)
            user.groups.add(Group.objects.get(name=role.value))
        return touched

    def _announce(self, *, names: list[str], password: str, generated: bool) -> None:
        """Say where the password is. Logs outlive the password's secrecy: a generated one is
        written to a file only its owner can read, and printed only in debug mode."""
        accounts = ", ".join(names)
        reset = "`manage.py setup_demo --reset-passwords` sets a new one"
        if not generated:
            self.stdout.write(f"Demo accounts {accounts}: password from DEMO_PASSWORD ({reset})")
            return
        path = Path(settings.VAR_DIR) / "demo_password"
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(password + "\n")
        path.chmod(0o600)  # an older file may have been readable by others
        shown = f"{password} (also in {path})" if settings.DEBUG else f"written to {path}"
        self.stdout.write(
            self.style.WARNING(f"Demo accounts {accounts}: password {shown} ({reset})")
        )
