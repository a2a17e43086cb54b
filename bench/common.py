"""Helpers shared by the benchmarks: machine load readings and result rows (the format of
docs/benchmarks.md)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_pressure() -> float | None:
    """Share of the last 10 s that some task waited for a CPU (Linux PSI); None if unknown."""
    try:
        first = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    fields = dict(item.split("=") for item in first.split()[1:])
    return float(fields["avg10"])


def result(
    metric: str,
    value: float,
    unit: str,
    *,
    baseline: str | None = None,
    baseline_value: float | None = None,
    target: str | None = None,
    meets: bool | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One result row: the candidate, its same-run baseline and ratio, and the target."""
    row: dict[str, Any] = {"metric": metric, "value": round(value, 4), "unit": unit}
    if baseline is not None and baseline_value is not None:
        row["baseline"] = baseline
        row["baseline_value"] = round(baseline_value, 4)
        row["ratio"] = round(value / baseline_value, 3) if baseline_value else None
    if target is not None:
        row["target"] = target
        row["meets_target"] = meets
    row.update(extra)
    return row


def write_report(name: str, report: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>.json`` and echo it."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return out


def django_on_scratch_copy(database: Path, *, prefix: str) -> Path:
    """Set Django up on a scratch copy of the demo ``database`` (so a benchmark's answers never
    reach it); returns the scratch folder, for the caller to remove."""
    scratch = Path(tempfile.mkdtemp(prefix=prefix))
    shutil.copy2(database, scratch / "clinic.sqlite3")
    os.environ["DATABASE_URL"] = f"sqlite:///{scratch / 'clinic.sqlite3'}"
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinic_app.settings")
    import django

    django.setup()
    return scratch
