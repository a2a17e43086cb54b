"""Ingest guideline files from the command line (Markdown and plain text for now)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from clinic_app import services
from retrieval.errors import DocumentError
from retrieval.markdown import parse_markdown
from retrieval.types import Document, DocumentMeta

SUFFIXES = {".md", ".markdown", ".txt"}


class Command(BaseCommand):
    help = "Ingest Markdown or text guideline files (or folders of them) and publish the index."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", type=Path)
        parser.add_argument("--organisation", default="")
        parser.add_argument("--year", type=int, default=None)
        parser.add_argument("--url", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        files = sorted(
            f
            for p in options["paths"]
            for f in ([p] if p.is_file() else p.rglob("*"))
            if f.is_file() and f.suffix.lower() in SUFFIXES
        )
        if not files:
            raise CommandError("no .md, .markdown or .txt files found")
        documents: list[Document] = []
        errors: list[str] = []
        for f in files:
            meta = DocumentMeta(
                key=f"file/{f.stem}",
                title=f.stem.replace("_", " ").replace("-", " ").strip().capitalize(),
                organisation=options["organisation"],
                year=options["year"],
                url=options["url"],
            )
            try:
                documents.append(parse_markdown(f.read_bytes(), meta=meta, source_name=f.name))
            except DocumentError as exc:
                errors.append(str(exc))
        report = services.guidelines_ingest(documents=documents, actor="cli")
        self.stdout.write(
            f"documents: {report.documents_added} added, {report.documents_unchanged} unchanged; "
            f"passages: {report.passages_added}; errors: {len(errors)}; "
            f"index version: {report.index_version or 'unchanged'}"
        )
        for error in errors:
            self.stderr.write(f"error: {error}")
        if errors:
            raise CommandError(f"{len(errors)} file(s) could not be ingested")
