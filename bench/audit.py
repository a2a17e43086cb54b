"""Benchmark: verifying the audit chain (100K events) and appending to it, SQLite and PostgreSQL.

For each database (a scratch SQLite file, and a scratch PostgreSQL database when the server on
localhost answers) the app's migrations run, 100,000 chained events are written in bulk, and
then, interleaved and repeated:

- ``audit.audit_verify()`` (what ``manage.py audit_verify`` and the auditor's button run: every
  seq, link, hash, timestamp and checkpoint) against the baseline of merely reading the same
  rows in the same order (``values_list`` iteration), so the ratio is the price of verifying;
- ``audit_record`` appends (head lock, hash, insert, head update, one transaction each) against
  plain inserts of the same rows without the chain.

Writes ``bench/results/audit.json``.

    .venv/bin/python bench/audit.py [--quick] [--events N]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import cpu_pressure, result, write_report  # noqa: E402
from clinic_app.core.progress import Progress, progress_reporter  # noqa: E402

PG_ADMIN = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TARGET_VERIFY_100K_S = 10.0
ROUNDS = 3
APPENDS = 300


def configure(database_url: str, var_dir: Path) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ["VAR_DIR"] = str(var_dir)
    # The scratch VAR_DIR holds no var/secret_key: a key for this run only.
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinic_app.settings")
    import django

    django.setup()


def populate(n: int, progress: Progress) -> None:
    """``n`` chained events written in bulk (INSERT is all the triggers allow), and the head."""
    from clinic_app.audit.chain import GENESIS_HASH, event_hash, timestamp_text
    from clinic_app.models import AuditEvent, AuditHead

    start = datetime(2026, 1, 1, tzinfo=UTC)
    prev, batch = GENESIS_HASH, []
    actions = ("auth.login", "question.asked", "answer.complete", "answer.viewed")
    for seq in range(1, n + 1):
        at = start + timedelta(milliseconds=250 * seq)
        fields: dict[str, Any] = {
            "actor": f"clinician{seq % 50}",
            "action": actions[seq % len(actions)],
            "object_type": "answer",
            "object_id": str(seq // 2),
            "outcome": "success",
            "source_ip": "10.1.2.3",
            "details": {"passage_ids": [seq, seq + 1, seq + 2], "top_score": 0.61, "ms": seq % 997},
        }
        digest = event_hash(prev, {**fields, "seq": seq, "at": timestamp_text(at)})
        batch.append(AuditEvent(seq=seq, at=at, prev_hash=prev, hash=digest, **fields))
        prev = digest
        if len(batch) == 5000:
            AuditEvent.objects.bulk_create(batch)
            batch = []
            progress(seq, n)
    AuditEvent.objects.bulk_create(batch)
    progress(n, n)
    AuditHead.objects.update_or_create(pk=1, defaults={"seq": n, "hash": prev, "at": at})


def time_verify() -> tuple[float, int]:
    from clinic_app.audit import record as audit

    started = time.perf_counter()
    report = audit.audit_verify()
    elapsed = time.perf_counter() - started
    if not report.ok:
        raise SystemExit(f"bench audit: the chain did not verify: {report.problem}")
    return elapsed, report.events


def time_read() -> float:
    from clinic_app.audit.record import chain_events

    started = time.perf_counter()
    count = sum(1 for _ in chain_events())
    elapsed = time.perf_counter() - started
    assert count > 0
    return elapsed


def time_appends(n: int, progress: Progress) -> tuple[list[float], list[float]]:
    """Per-event ms of ``audit_record`` and of a plain unchained insert, alternating;
    ``progress`` is called after each pair, outside both timings."""
    from django.db import transaction

    from clinic_app.audit.record import audit_record
    from clinic_app.models import AuditEvent

    chained, plain = [], []
    base = 10**9
    for i in range(n):
        started = time.perf_counter()
        audit_record(
            action="question.asked",
            actor="bench",
            object_type="answer",
            object_id=i,
            details={"passage_ids": [i]},
        )
        chained.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        with transaction.atomic():
            # Same row without the chain: a seq far above the chain's, no head, no hash.
            AuditEvent.objects.create(
                seq=base + i,
                at=datetime.now(UTC),
                actor="bench",
                action="question.asked",
                object_type="answer",
                object_id=str(i),
                details={"passage_ids": [i]},
                prev_hash="",
                hash="",
            )
        plain.append((time.perf_counter() - started) * 1000)
        progress(i + 1, n)
    return chained, plain


def run_database(label: str, n: int) -> dict[str, Any]:
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    populate(n, progress_reporter(f"audit {label}: populate", unit="event", stream=sys.stderr))
    populate_s = time.perf_counter() - started
    verify, read = [], []
    scans = progress_reporter(f"audit {label}: verify and read", unit="scan", stream=sys.stderr)
    for r in range(ROUNDS):
        pair = ("verify", "read") if r % 2 == 0 else ("read", "verify")
        for kind in pair:
            if kind == "verify":
                elapsed, events = time_verify()
                assert events == n
                verify.append(elapsed)
            else:
                read.append(time_read())
            scans(len(verify) + len(read), 2 * ROUNDS)
    chained, plain = time_appends(
        APPENDS if n >= 100_000 else APPENDS // 3,
        progress_reporter(f"audit {label}: append", unit="append", stream=sys.stderr),
    )
    connection.close()
    return {
        "database": label,
        "events": n,
        "populate_s": round(populate_s, 2),
        "verify_s": [round(v, 3) for v in verify],
        "read_s": [round(v, 3) for v in read],
        "append_ms_p50": round(statistics.median(chained), 3),
        "plain_insert_ms_p50": round(statistics.median(plain), 3),
    }


def child(database_url: str, n: int, label: str, out: Path) -> None:
    """One database per process: Django settings are read once."""
    import json

    with tempfile.TemporaryDirectory(prefix="bench-audit-var-") as var:
        configure(database_url, Path(var))
        out.write_text(json.dumps(run_database(label, n)))


def postgres_database() -> tuple[str, str] | None:
    try:
        import psycopg

        name = f"bench_audit_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # no server here: SQLite only, said in the report
        print(f"bench audit: PostgreSQL unavailable ({exc}); SQLite only", file=sys.stderr)
        return None
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}", name


def drop_postgres(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> int:
    import json
    import subprocess

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="10,000 events instead of 100,000")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--child", nargs=3, metavar=("URL", "LABEL", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    n = 10_000 if args.quick else args.events
    if args.child:
        url, label, out = args.child
        child(url, n, label, Path(out))
        return 0

    started = time.perf_counter()
    pressure_start = cpu_pressure()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        targets: list[tuple[str, str, str | None]] = [
            (f"sqlite:///{tmp}/audit.sqlite3", "sqlite", None)
        ]
        pg = postgres_database()
        if pg is not None:
            targets.append((pg[0], "postgresql", pg[1]))
        try:
            for url, label, _ in targets:
                out = Path(tmp) / f"{label}.json"
                command = [sys.executable, __file__, "--events", str(n), "--child", url, label]
                subprocess.run([*command, str(out)], check=True, cwd=ROOT)
                runs.append(json.loads(out.read_text()))
        finally:
            if pg is not None:
                drop_postgres(pg[1])

    results = []
    for run in runs:
        db, verify_s = run["database"], statistics.median(run["verify_s"])
        read_s = statistics.median(run["read_s"])
        scale = 100_000 / n  # the target is stated for 100K events
        results += [
            result(
                f"verify_s@{n // 1000}k_{db}",
                verify_s,
                "s",
                baseline=f"reading the same {n:,} rows in seq order without verifying, same run",
                baseline_value=read_s,
                target=f"<= {TARGET_VERIFY_100K_S / scale:g} s",
                meets=verify_s <= TARGET_VERIFY_100K_S / scale,
                events_per_s=round(n / verify_s),
            ),
            result(
                f"append_p50_ms_{db}",
                run["append_ms_p50"],
                "ms",
                baseline="plain insert of the same row without the chain, one transaction each, "
                "alternating",
                baseline_value=run["plain_insert_ms_p50"],
            ),
        ]
    report = {
        "benchmark": "audit",
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cpus": os.cpu_count(),
            "threads": {"verify": 1},
            "cpu_pressure_avg10_pct": {"start": pressure_start, "end": cpu_pressure()},
        },
        "events": n,
        "runs": runs,
        "results": results,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    write_report("audit", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
