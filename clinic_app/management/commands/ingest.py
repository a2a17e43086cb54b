"""Ingest guideline files from the command line and publish the index.

Formats: PDF, HTML, Markdown, plain text, Meditron guidelines JSONL and PubMedQA JSON, sniffed
from the content unless ``--format`` names one. Folders are searched for the known suffixes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from clinic_app.core.progress import progress_reporter
from clinic_app.library import ingest
from retrieval.errors import DocumentError
from retrieval.parsers import FORMATS, parse_file
from retrieval.types import Document, DocumentMeta

SUFFIXES = {".md", ".markdown", ".txt", ".html", ".htm", ".pdf", ".jsonl", ".json"}


class Command(BaseCommand):
    help = (
        "Ingest guideline files (PDF, HTML, Markdown, text, Meditron JSONL, PubMedQA JSON) or "
        "folders of them, then publish the index."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", type=Path)
        parser.add_argument("--format", choices=FORMATS, default="auto")
        parser.add_argument("--organisation", default="")
        parser.add_argument("--year", type=int, default=None)
        parser.add_argument("--url", default="")
        parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    def handle(self, *args: Any, **options: Any) -> None:
        # Files named explicitly are read whatever their suffix; folders only for known ones.
        files = sorted(
            {
                f
                for p in options["paths"]
                for f in ([p] if p.is_file() else p.rglob("*"))
                if f.is_file() and (f == p or f.suffix.lower() in SUFFIXES)
            }
        )
        if not files:
            raise CommandError(f"no files found (known suffixes: {', '.join(sorted(SUFFIXES))})")
        errors: list[str] = []
        documents = self._documents(files, options, errors)
        progress = tqdm(
            documents,
            desc="ingesting",
            unit="doc",
            file=self.stderr,
            disable=True if options["no_progress"] else None,
        )
        report = ingest.guidelines_ingest(
            documents=progress,
            actor="cli",
            progress=progress_reporter(
                "embedding passages",
                unit="passage",
                stream=self.stderr,
                enabled=not options["no_progress"],
            ),
        )
        progress.close()
        self.stdout.write(
            f"files: {len(files)}; "
            f"documents: {report.documents_added} added, {report.documents_unchanged} unchanged; "
            f"passages: {report.passages_added}; errors: {len(errors)}; "
            f"index version: {report.index_version or 'unchanged'}"
        )
        for warning in report.warnings:
            self.stderr.write(f"warning: {warning}")
        for error in errors:
            self.stderr.write(f"error: {error}")
        if errors:
            raise CommandError(f"{len(errors)} file(s) or record(s) could not be ingested")

    def _documents(
        self, files: list[Path], options: dict[str, Any], errors: list[str]
    ) -> Iterator[Document]:
        """Parse files lazily, so a large collection streams into the database."""
        for f in files:
            meta = DocumentMeta(
                key=f"file/{f.stem}",
                title="",  # filled from the document (HTML/PDF title) or the file name
                organisation=options["organisation"],
                year=options["year"],
                url=options["url"],
            )
            try:
                result = parse_file(f, format=options["format"], meta=meta)
            except DocumentError as exc:
                errors.append(str(exc))
                continue
            errors.extend(str(e) for e in result.errors)
            yield from result.documents
