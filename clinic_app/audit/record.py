"""Writing, checkpointing and reading back the audit chain.

Call :func:`audit_record` inside the transaction of the action being recorded: the event commits
or rolls back with the action, and if the event cannot be written the action fails with it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from clinic_app.audit.chain import (
    GENESIS_HASH,
    STORED_FIELDS,
    ChainEvent,
    ChainReport,
    Checkpoint,
    canonical_json,
    chain_verify,
    checkpoint_sign,
    event_hash,
    timestamp_text,
)
from clinic_app.models import AuditCheckpoint, AuditEvent, AuditHead
from clinic_app.observability import metrics

log = logging.getLogger(__name__)

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")
_MAX_DETAIL_DEPTH = 6


def _clean(value: str, limit: int) -> str:
    """Neutralise control characters so a value cannot forge log lines or export rows."""
    return _CONTROL.sub(" ", value)[:limit]


def _clean_details(value: Any, depth: int = 0) -> Any:
    """A JSON-safe copy of ``value`` with control characters neutralised in every string."""
    if depth > _MAX_DETAIL_DEPTH:
        return _clean(json.dumps(value, default=str), 2000)
    if isinstance(value, str):
        return _clean(value, 4000)
    if isinstance(value, dict):
        return {_clean(str(k), 200): _clean_details(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_details(v, depth + 1) for v in value]
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    return _clean(str(value), 4000)


def _actor_name(actor: AbstractBaseUser | AnonymousUser | str | None) -> str:
    if isinstance(actor, str) or actor is None:
        return actor or ""
    return "" if not actor.is_authenticated else actor.get_username()


def audit_record(
    *,
    action: str,
    actor: AbstractBaseUser | AnonymousUser | str | None,
    object_type: str = "",
    object_id: str | int = "",
    outcome: str = "success",
    source_ip: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the chain: who, what, which object, outcome, from where, details.

    Appends are serialised by updating the single head row first (a row lock on PostgreSQL, the
    write lock on SQLite), so concurrent writers never fork the chain.
    """
    # Stored exactly as hashed: a JSON round trip fixes key types and number forms.
    clean_details = json.loads(canonical_json(_clean_details(details or {})))
    fields: dict[str, Any] = {
        "actor": _clean(_actor_name(actor), 150),
        "action": _clean(action, 60),
        "object_type": _clean(object_type, 60),
        "object_id": _clean(str(object_id), 64),
        "outcome": _clean(outcome, 20),
        "source_ip": _clean(source_ip, 64),
        "details": clean_details,
    }
    with metrics.timed(metrics.AUDIT_APPEND_SECONDS), transaction.atomic():
        # 1. Take the head: claim the next sequence number and lock out other appenders.
        if not AuditHead.objects.filter(pk=1).update(seq=F("seq") + 1):
            AuditHead.objects.create(pk=1, seq=1, hash=GENESIS_HASH)
        head = AuditHead.objects.get(pk=1)
        # 2. Timestamps never go backwards along the chain, even across workers' clocks.
        at = timezone.now()
        if head.at is not None and at < head.at:
            at = head.at
        # 3. Link, hash, append, move the head.
        hashed = {**fields, "seq": head.seq, "at": timestamp_text(at)}
        digest = event_hash(head.hash, hashed)
        event = AuditEvent.objects.create(
            seq=head.seq, at=at, prev_hash=head.hash, hash=digest, **fields
        )
        AuditHead.objects.filter(pk=1).update(hash=digest, at=at)
        # 4. Every so often, sign the head and export the signature outside the database.
        every = settings.AUDIT_CHECKPOINT_EVERY
        if every and head.seq % every == 0:
            _checkpoint_write(seq=head.seq, chain_hash=digest)
    return event


def checkpoint_key() -> bytes:
    """The checkpoint signing key: ``AUDIT_CHECKPOINT_KEY``, else one derived from SECRET_KEY."""
    if settings.AUDIT_CHECKPOINT_KEY:
        return settings.AUDIT_CHECKPOINT_KEY.encode()
    return hmac.new(settings.SECRET_KEY.encode(), b"audit-checkpoint", hashlib.sha256).digest()


def _checkpoint_write(*, seq: int, chain_hash: str) -> Checkpoint:
    checkpoint = checkpoint_sign(
        key=checkpoint_key(), seq=seq, chain_hash=chain_hash, at=timezone.now()
    )
    AuditCheckpoint.objects.create(**checkpoint.as_dict())
    transaction.on_commit(lambda: checkpoint_export(checkpoint))
    return checkpoint


def audit_checkpoint() -> Checkpoint | None:
    """Sign the current chain head now (None while the log is empty)."""
    with transaction.atomic():
        head = AuditHead.objects.select_for_update().filter(pk=1).first()
        if head is None or head.seq == 0:
            return None
        last = AuditCheckpoint.objects.order_by("-seq").first()
        if last is not None and last.seq == head.seq:
            return Checkpoint(seq=last.seq, hash=last.hash, at=last.at, signature=last.signature)
        return _checkpoint_write(seq=head.seq, chain_hash=head.hash)


def checkpoint_export(checkpoint: Checkpoint, path: Path | None = None) -> None:
    """Append ``checkpoint`` as one JSON line to the export file (``AUDIT_CHECKPOINT_FILE``).

    The file belongs on storage the database's users cannot rewrite (another volume, WORM or
    object storage synced from it). A failed export is logged, not raised: the checkpoint is
    also in the database and the next one will be exported.
    """
    target = path or (
        Path(settings.AUDIT_CHECKPOINT_FILE) if settings.AUDIT_CHECKPOINT_FILE else None
    )
    if target is None:
        return
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(checkpoint.as_dict(), sort_keys=True) + "\n"
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        log.error("audit checkpoint %s not exported to %s: %s", checkpoint.seq, target, exc)


def checkpoints_read(path: Path) -> list[Checkpoint]:
    """The checkpoints in an export file; a malformed line raises ValueError naming it."""
    checkpoints = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            checkpoints.append(Checkpoint.from_dict(json.loads(line)))
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: {exc}") from exc
    return checkpoints


def chain_events(*, chunk: int = 5000) -> Iterator[ChainEvent]:
    """Every stored event in sequence order, as the chain sees it, streamed in chunks."""
    rows = AuditEvent.objects.order_by("seq").values_list(*STORED_FIELDS)
    for row in rows.iterator(chunk_size=chunk):
        yield ChainEvent(*row)


def audit_verify(*, checkpoint_files: Sequence[Path] = ()) -> ChainReport:
    """Verify the whole chain, the checkpoints (database and export files) and the head.

    Runs in one snapshot (REPEATABLE READ on PostgreSQL; SQLite holds its lock), so appends
    made meanwhile neither break nor join the verification.
    """
    from django.db import connection

    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        checkpoints = {
            Checkpoint(seq=row.seq, hash=row.hash, at=row.at, signature=row.signature)
            for row in AuditCheckpoint.objects.all()
        }
        for path in checkpoint_files:
            checkpoints.update(checkpoints_read(path))
        row = AuditHead.objects.filter(pk=1).first()
        head = (row.seq, row.hash) if row is not None else (0, GENESIS_HASH)
        return chain_verify(
            chain_events(), checkpoints=checkpoints, key=checkpoint_key(), head=head
        )


def default_checkpoint_files() -> list[Path]:
    """The export file named by ``AUDIT_CHECKPOINT_FILE``, when it exists."""
    if not settings.AUDIT_CHECKPOINT_FILE:
        return []
    path = Path(settings.AUDIT_CHECKPOINT_FILE)
    return [path] if path.exists() else []
