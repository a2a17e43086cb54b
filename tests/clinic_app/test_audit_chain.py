"""The hash chain detects every single edit, deletion, insertion, reordering and flipped byte.

Pure tests on ``clinic_app.audit.chain`` over a chain of 10,000 events (no database).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from functools import cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clinic_app.audit.chain import (
    GENESIS_HASH,
    ChainEvent,
    checkpoint_sign,
    checkpoint_valid,
    event_hash,
    timestamp_text,
)
from clinic_app.audit.chain import chain_verify as verify

N = 10_000
KEY = b"test-checkpoint-key"
STRING_FIELDS = ("actor", "action", "object_type", "object_id", "outcome", "source_ip")
HASH_FIELDS = ("prev_hash", "hash")
START = datetime(2026, 1, 1, tzinfo=UTC)


def chained(
    rows: list[dict], prev_hash: str = GENESIS_HASH, first_seq: int = 1
) -> list[ChainEvent]:
    """Events with correct seq, links and hashes for ``rows`` (the hashed fields but seq)."""
    events = []
    for seq, row in enumerate(rows, start=first_seq):
        fields = {**row, "seq": seq, "at": timestamp_text(row["at"])}
        digest = event_hash(prev_hash, fields)
        events.append(ChainEvent(seq=seq, prev_hash=prev_hash, hash=digest, **row))
        prev_hash = digest
    return events


def row(i: int) -> dict:
    actions = ("auth.login", "question.asked", "answer.complete", "answer.refused")
    return {
        "at": START + timedelta(milliseconds=37 * i),
        "actor": f"user{i % 7}",
        "action": actions[i % len(actions)],
        "object_type": "answer",
        "object_id": str(i),
        "outcome": "success",
        "source_ip": "10.0.0.1",
        "details": {"passage_ids": [i, i + 1], "top_score": 0.5 + (i % 50) / 100, "ü": "ß"},
    }


@cache
def chain() -> tuple[ChainEvent, ...]:
    return tuple(chained([row(i) for i in range(N)]))


def head(events: tuple[ChainEvent, ...] | list[ChainEvent]) -> tuple[int, str]:
    return (events[-1].seq, events[-1].hash) if events else (0, GENESIS_HASH)


# The head is stored apart from the events (``AuditHead``): an attacker who edits events
# without also moving the head is caught by it at the end of the log.
HEAD = None  # filled lazily: head(chain())

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
positions = st.integers(min_value=0, max_value=N - 1)


def test_an_untouched_chain_of_ten_thousand_events_verifies() -> None:
    report = verify(chain(), head=head(chain()))
    assert report.ok, report.problem
    assert (report.events, report.last_seq, report.last_hash) == (N, N, chain()[-1].hash)


@PROPERTY
@given(
    i=positions,
    name=st.sampled_from(STRING_FIELDS),
    value=st.text(min_size=0, max_size=20),
)
def test_editing_any_field_of_any_event_is_detected_at_that_event(
    i: int, name: str, value: str
) -> None:
    events = list(chain())
    if getattr(events[i], name) == value:
        value += "x"
    events[i] = dataclasses.replace(events[i], **{name: value})
    report = verify(events, head=head(chain()))
    assert not report.ok
    assert report.first_bad_seq == i + 1


@PROPERTY
@given(i=positions, extra=st.integers(min_value=-5, max_value=5).filter(bool))
def test_editing_details_or_time_is_detected(i: int, extra: int) -> None:
    events = list(chain())
    details = {**events[i].details, "top_score": events[i].details["top_score"] + extra}
    events[i] = dataclasses.replace(events[i], details=details)
    assert verify(events, head=head(chain())).first_bad_seq == i + 1

    events = list(chain())
    # Any shift of the timestamp, even one that keeps the order, changes the hash.
    events[i] = dataclasses.replace(events[i], at=events[i].at + timedelta(microseconds=extra))
    assert verify(events, head=head(chain())).first_bad_seq == i + 1


@PROPERTY
@given(i=positions, name=st.sampled_from(HASH_FIELDS), bit=st.integers(0, 255))
def test_a_flipped_byte_in_a_hash_is_detected(i: int, name: str, bit: int) -> None:
    events = list(chain())
    original = getattr(events[i], name)
    raw = bytearray(original.encode("ascii"))
    position = bit % len(raw)
    raw[position] = ord("0") if raw[position] != ord("0") else ord("1")
    events[i] = dataclasses.replace(events[i], **{name: raw.decode("ascii")})
    report = verify(events, head=head(chain()))
    assert not report.ok
    # A bad ``prev_hash`` fails at its own event; a bad ``hash`` fails at this event's check or
    # at the link from the next.
    assert report.first_bad_seq == i + 1


@PROPERTY
@given(i=positions, bit=st.integers(0, 7), field=st.sampled_from(STRING_FIELDS))
def test_a_flipped_bit_in_any_text_field_is_detected(i: int, bit: int, field: str) -> None:
    events = list(chain())
    raw = bytearray(getattr(events[i], field).encode("utf-8") or b"\x00")
    raw[0] ^= 1 << bit
    events[i] = dataclasses.replace(
        events[i], **{field: raw.decode("utf-8", errors="surrogateescape")}
    )
    assert verify(events, head=head(chain())).first_bad_seq == i + 1


@PROPERTY
@given(i=positions)
def test_deleting_any_event_is_detected(i: int) -> None:
    events = list(chain())
    del events[i]
    report = verify(events, head=head(chain()))
    assert not report.ok
    assert report.first_bad_seq == i + 1


@PROPERTY
@given(i=st.integers(min_value=0, max_value=N), renumber=st.booleans())
def test_inserting_an_event_anywhere_is_detected(i: int, renumber: bool) -> None:
    """A forged event, correctly hashed onto its predecessor; optionally later seqs shifted."""
    events = list(chain())
    prev = events[i - 1] if i > 0 else None
    forged_row = row(10 * N)
    forged_row["at"] = prev.at if prev else START
    forged = chained([forged_row], prev_hash=prev.hash if prev else GENESIS_HASH, first_seq=i + 1)[
        0
    ]
    tail = events[i:]
    if renumber:
        tail = [dataclasses.replace(e, seq=e.seq + 1) for e in tail]
    events = [*events[:i], forged, *tail]
    report = verify(events, head=head(chain()))
    assert not report.ok
    # The forgery itself is consistent; the damage shows at the event after it (or the head).
    assert report.first_bad_seq in (i + 1, i + 2)


@PROPERTY
@given(i=positions, j=positions)
def test_swapping_two_events_is_detected(i: int, j: int) -> None:
    if i == j:
        j = (i + 1) % N
    events = list(chain())
    events[i], events[j] = events[j], events[i]
    report = verify(events, head=head(chain()))
    assert not report.ok
    assert report.first_bad_seq == min(i, j) + 1


@PROPERTY
@given(i=positions, j=positions)
def test_swapping_two_events_and_their_sequence_numbers_is_detected(i: int, j: int) -> None:
    if i == j:
        j = (i + 1) % N
    events = list(chain())
    a, b = events[i], events[j]
    events[i], events[j] = dataclasses.replace(b, seq=a.seq), dataclasses.replace(a, seq=b.seq)
    report = verify(events, head=head(chain()))
    assert not report.ok
    assert report.first_bad_seq == min(i, j) + 1


def test_removing_the_newest_events_is_caught_by_the_head() -> None:
    events = list(chain())[:-3]
    report = verify(events, head=head(chain()))
    assert not report.ok
    assert report.first_bad_seq == N - 2
    assert "head" in report.problem


def test_truncating_and_rechaining_is_caught_by_a_signed_checkpoint() -> None:
    """The attacker rewrites the whole log consistently and moves the head: only the
    checkpoint, signed with a key outside the database, still remembers the real chain."""
    original = chain()
    checkpoint = checkpoint_sign(
        key=KEY, seq=5000, chain_hash=original[4999].hash, at=original[4999].at
    )
    assert verify(original, checkpoints=[checkpoint], key=KEY, head=head(original)).ok

    rows = [row(i) for i in range(N) if i != 1234]  # one event removed, the rest re-chained
    forged = chained(rows)
    report = verify(forged, checkpoints=[checkpoint], key=KEY, head=head(forged))
    assert not report.ok
    assert report.first_bad_seq == 5000
    assert "re-chained" in report.problem

    shorter = chained(rows[:4000])  # truncated below the checkpoint
    report = verify(shorter, checkpoints=[checkpoint], key=KEY, head=head(shorter))
    assert not report.ok and "removed" in report.problem
    assert report.first_bad_seq == 4001


def test_a_checkpoint_signed_with_another_key_or_edited_is_rejected() -> None:
    original = chain()
    good = checkpoint_sign(key=KEY, seq=10, chain_hash=original[9].hash, at=original[9].at)
    assert checkpoint_valid(good, key=KEY)
    assert not checkpoint_valid(good, key=b"another key")
    moved = dataclasses.replace(good, seq=11, hash=original[10].hash)
    assert not checkpoint_valid(moved, key=KEY)
    report = verify(original, checkpoints=[moved], key=KEY, head=head(original))
    assert not report.ok and "signature" in report.problem


def test_timestamps_must_be_utc_and_never_go_backwards() -> None:
    rows = [row(i) for i in range(5)]
    rows[3]["at"] = rows[2]["at"] - timedelta(seconds=1)
    events = chained(rows)  # correctly hashed, but time runs backwards at seq 4
    report = verify(events, head=head(events))
    assert not report.ok and report.first_bad_seq == 4 and "earlier" in report.problem

    rows = [row(i) for i in range(3)]
    events = chained(rows)
    local = events[1].at.astimezone(UTC).replace(tzinfo=None)
    events[1] = dataclasses.replace(events[1], at=local)
    report = verify(events, head=head(events))
    assert not report.ok and report.first_bad_seq == 2
