"""Create the roles and demo accounts, and ingest the demo guideline corpus (idempotent)."""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from clinic_app import services
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
        created = self._accounts(reset=options["reset_passwords"])
        if created:
            password, names = created
            shown = "from DEMO_PASSWORD" if os.environ.get("DEMO_PASSWORD") else password
            self.stdout.write(
                self.style.WARNING(
                    f"Demo accounts {', '.join(names)}: password {shown} (shown once; "
                    "`manage.py setup_demo --reset-passwords` sets a new one)"
                )
            )
        if options["skip_corpus"]:
            return
        wanted = {g.strip() for g in options["guidelines"].split(",") if g.strip()}
        documents = (
            d for d in load_open_medicine() if not wanted or d.meta.key.split("/")[0] in wanted
        )
        report = services.guidelines_ingest(documents=documents, actor="setup_demo")
        self.stdout.write(
            f"Demo corpus: {report.documents_added} documents added, "
            f"{report.documents_unchanged} unchanged, {report.passages_added} passages; "
            f"index version {report.index_version or 'unchanged'}"
        )

    @transaction.atomic
    def _accounts(self, *, reset: bool) -> tuple[str, list[str]] | None:
        for role in Role:
            Group.objects.get_or_create(name=role.value)
        password = os.environ.get("DEMO_PASSWORD") or secrets.token_urlsafe(12)
        touched: list[str] = []
        for username, role in DEMO_USERS.items():
            user, was_created = User.objects.get_or_create(username=username)
            if was_created or reset:
                user.set_password(password)
                user.save()
                touched.append(username)
            user.groups.add(Group.objects.get(name=role.value))
        return (password, touched) if touched else None
