"""The audit log's hash chain and signed checkpoints, as pure functions (no database).

Each event's ``hash`` is SHA-256 over its predecessor's hash and the event's canonical JSON
(sorted keys, no whitespace, UTF-8, timestamps as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``). Changing,
removing, inserting or reordering any event therefore breaks every link after it. A checkpoint
is an HMAC-SHA256 signature of one ``(seq, hash)`` pair with a key kept outside the database:
exported to other storage, it catches the one attack the chain alone cannot, truncating the log
and re-chaining what is left.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64
# The fields an event's hash covers, in addition to ``prev_hash``.
HASHED_FIELDS = (
    "seq",
    "at",
    "actor",
    "action",
    "object_type",
    "object_id",
    "outcome",
    "source_ip",
    "details",
)
# Every stored field of an event, in the order exports and verification read them.
STORED_FIELDS = (*HASHED_FIELDS, "prev_hash", "hash")


def timestamp_text(at: datetime) -> str:
    """``at`` in UTC with microseconds and a ``Z``: the form every hash and export uses."""
    if at.tzinfo is None:
        raise ValueError("audit timestamps must be timezone-aware")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(value: Any) -> bytes:
    """One byte string per JSON value: sorted keys, no whitespace, UTF-8, no NaN."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


@dataclass(frozen=True)
class ChainEvent:
    """One audit event as the chain sees it (``at`` is timezone-aware)."""

    seq: int
    at: datetime
    actor: str
    action: str
    object_type: str
    object_id: str
    outcome: str
    source_ip: str
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def fields(self) -> dict[str, Any]:
        """The hashed fields, with the timestamp in its canonical text form."""
        return {
            "seq": self.seq,
            "at": timestamp_text(self.at),
            "actor": self.actor,
            "action": self.action,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "outcome": self.outcome,
            "source_ip": self.source_ip,
            "details": self.details,
        }


def event_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    """SHA-256 hex of ``prev_hash`` and the canonical JSON of the hashed ``fields``."""
    missing = set(HASHED_FIELDS) - set(fields)
    if missing:
        raise ValueError(f"audit event lacks {sorted(missing)}")
    digest = hashlib.sha256(prev_hash.encode("ascii"))
    digest.update(b"\n")
    digest.update(canonical_json({name: fields[name] for name in HASHED_FIELDS}))
    return digest.hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement that the chain had ``hash`` at ``seq`` (signed at ``at``)."""

    seq: int
    hash: str
    at: str
    signature: str

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "hash": self.hash, "at": self.at, "signature": self.signature}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Checkpoint:
        try:
            return cls(
                seq=int(data["seq"]),
                hash=str(data["hash"]),
                at=str(data["at"]),
                signature=str(data["signature"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed checkpoint {data!r}") from exc


def _signed_bytes(seq: int, chain_hash: str, at: str) -> bytes:
    return canonical_json({"seq": seq, "hash": chain_hash, "at": at})


def checkpoint_sign(*, key: bytes, seq: int, chain_hash: str, at: datetime) -> Checkpoint:
    """Sign the chain head ``(seq, chain_hash)`` with ``key``."""
    when = timestamp_text(at)
    signature = hmac.new(key, _signed_bytes(seq, chain_hash, when), hashlib.sha256).hexdigest()
    return Checkpoint(seq=seq, hash=chain_hash, at=when, signature=signature)


def checkpoint_valid(checkpoint: Checkpoint, *, key: bytes) -> bool:
    """Whether ``checkpoint`` was signed with ``key`` and not altered since."""
    expected = hmac.new(
        key, _signed_bytes(checkpoint.seq, checkpoint.hash, checkpoint.at), hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected, checkpoint.signature)


@dataclass(frozen=True)
class ChainReport:
    """The outcome of :func:`chain_verify`: ``ok``, or the first bad sequence number and why."""

    ok: bool
    events: int
    last_seq: int
    last_hash: str
    checkpoints: int
    first_bad_seq: int | None = None
    problem: str = ""


def chain_verify(
    events: Iterable[ChainEvent],
    *,
    checkpoints: Iterable[Checkpoint] = (),
    key: bytes | None = None,
    head: tuple[int, str] | None = None,
) -> ChainReport:
    """Check an ordered run of events from ``seq`` 1, then the checkpoints and the head.

    Checks, in order, for each event: sequence continuity, the link to its predecessor, its own
    hash, and a UTC timestamp no earlier than its predecessor's. Then each checkpoint (its
    signature, when ``key`` is given, and that the event at its ``seq`` exists with its hash),
    and finally that the stored chain ``head`` (seq, hash) matches the last event. Stops at the
    first problem and names the sequence number where it starts.
    """
    expected_seq = 1
    prev_hash = GENESIS_HASH
    prev_at: datetime | None = None
    hashes: dict[int, str] = {}
    wanted = sorted(checkpoints, key=lambda c: c.seq)
    wanted_seqs = {c.seq for c in wanted}
    count = 0

    def bad(seq: int, problem: str) -> ChainReport:
        return ChainReport(
            ok=False,
            events=count,
            last_seq=expected_seq - 1,
            last_hash=prev_hash,
            checkpoints=0,
            first_bad_seq=seq,
            problem=problem,
        )

    for event in events:
        if event.seq != expected_seq:
            where = min(event.seq, expected_seq)
            kind = "missing" if event.seq > expected_seq else "out of order or duplicated"
            return bad(
                where, f"sequence broken: expected {expected_seq}, found {event.seq} ({kind})"
            )
        if event.prev_hash != prev_hash:
            return bad(event.seq, "link broken: prev_hash does not match the previous event")
        if event.at.tzinfo is None or event.at.utcoffset() != UTC.utcoffset(None):
            return bad(event.seq, "timestamp is not UTC")
        if prev_at is not None and event.at < prev_at:
            return bad(event.seq, "timestamp earlier than the previous event's")
        try:
            recomputed = event_hash(prev_hash, event.fields())
        except (TypeError, ValueError) as exc:
            return bad(event.seq, f"event cannot be hashed: {exc}")
        if not hmac.compare_digest(recomputed, event.hash):
            return bad(event.seq, "hash mismatch: the event was altered")
        if event.seq in wanted_seqs:
            hashes[event.seq] = event.hash
        prev_hash, prev_at = event.hash, event.at
        expected_seq += 1
        count += 1

    for checkpoint in wanted:
        if key is not None and not checkpoint_valid(checkpoint, key=key):
            return bad(checkpoint.seq, f"checkpoint at seq {checkpoint.seq} has a bad signature")
        if checkpoint.seq > count:
            return bad(
                count + 1,
                f"checkpoint at seq {checkpoint.seq} but the log ends at {count}: "
                "events were removed",
            )
        if hashes.get(checkpoint.seq) != checkpoint.hash:
            return bad(
                checkpoint.seq,
                f"checkpoint at seq {checkpoint.seq} does not match the log: it was re-chained",
            )
    if head is not None and head != (count, prev_hash):
        return bad(
            min(head[0], count) + 1 if head[0] != count else count,
            f"chain head says seq {head[0]} but the log ends at {count}",
        )
    return ChainReport(
        ok=True, events=count, last_seq=count, last_hash=prev_hash, checkpoints=len(wanted)
    )
