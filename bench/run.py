"""Run every benchmark (or the one named) and collect their JSON results in bench/results/.

Each benchmark is a script ``bench/<name>.py`` that writes ``bench/results/<name>.json`` in the
format of docs/benchmarks.md (candidate, same-run baseline, ratio, target). ``--quick`` is
passed through.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    names = [a for a in argv if not a.startswith("--")]
    available = sorted(
        p.stem for p in HERE.glob("*.py") if p.stem not in ("run", "__init__", "common")
    )
    unknown = [n for n in names if n not in available]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; available: {', '.join(available)}", file=sys.stderr)
        return 2
    failures = 0
    for name in names or available:
        print(f"=== bench {name}", flush=True)
        args = [sys.executable, str(HERE / f"{name}.py"), *(["--quick"] if quick else [])]
        failures += subprocess.run(args, check=False).returncode != 0
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
