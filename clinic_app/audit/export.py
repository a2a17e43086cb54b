"""Audit log exports: CSV (safe to open in a spreadsheet) and JSON Lines (one event per line).

Both write every stored field, ``seq``, ``prev_hash`` and ``hash`` included, so an export can be
checked against the chain. Rows are produced lazily, a batch at a time, for a streaming response.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

from asgiref.sync import sync_to_async

from clinic_app.audit.chain import STORED_FIELDS, canonical_json, timestamp_text
from clinic_app.audit.selectors import AuditExport
from clinic_app.models import AuditEvent

COLUMNS = STORED_FIELDS
# A spreadsheet treats a cell starting with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_BATCH = 500


def csv_cell(value: str) -> str:
    """``value``, prefixed with a single quote when a spreadsheet would run it as a formula."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def event_record(event: AuditEvent) -> dict[str, Any]:
    """One event with every field, the timestamp in the chain's canonical UTC form."""
    return {
        "seq": event.seq,
        "at": timestamp_text(event.at),
        "actor": event.actor,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "outcome": event.outcome,
        "source_ip": event.source_ip,
        "details": event.details,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


def cap_note(export: AuditExport) -> str:
    return (
        f"export capped at {export.rows} rows: the newest {export.rows} of {export.matching} "
        "matching events; narrow the filters to export the rest"
    )


def _events(export: AuditExport) -> Iterator[AuditEvent]:
    return export.events.iterator(chunk_size=_BATCH)


def csv_chunks(export: AuditExport) -> Iterator[bytes]:
    """The CSV file: a header row, one row per event; a last ``# note`` row when capped."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for count, event in enumerate(_events(export), start=1):
        record = event_record(event)
        record["details"] = canonical_json(record["details"]).decode("utf-8")
        writer.writerow(
            [csv_cell(v) if isinstance(v, str) else v for v in (record[c] for c in COLUMNS)]
        )
        if count % _BATCH == 0:
            yield _drain(buffer)
    if export.capped:
        writer.writerow([f"# {cap_note(export)}"])
    yield _drain(buffer)


def jsonl_chunks(export: AuditExport) -> Iterator[bytes]:
    """One canonical JSON object per event and line; a last ``{"note": ...}`` line when capped."""
    lines: list[bytes] = []
    for event in _events(export):
        lines.append(canonical_json(event_record(event)) + b"\n")
        if len(lines) >= _BATCH:
            yield b"".join(lines)
            lines = []
    if export.capped:
        note = {"note": cap_note(export), "capped": True, "rows": export.rows}
        lines.append(canonical_json({**note, "matching": export.matching}) + b"\n")
    yield b"".join(lines)


def _drain(buffer: io.StringIO) -> bytes:
    data = buffer.getvalue().encode("utf-8")
    buffer.seek(0)
    buffer.truncate()
    return data


async def chunks_async(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    """``chunks`` for an ASGI server: each batch is read from the database in Django's sync
    thread, so the response streams instead of being collected in memory first."""
    iterator = iter(chunks)
    take = sync_to_async(lambda: next(iterator, None), thread_sensitive=True)
    while (chunk := await take()) is not None:
        yield chunk
