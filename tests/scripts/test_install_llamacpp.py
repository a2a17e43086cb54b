"""scripts/install_llamacpp.sh: a cached wheel is installed at once; without one, --background
returns at once and builds behind the app's back (what `make run` does on a new machine).

The compiler is the one thing replaced: a stand-in ``VPY`` whose ``pip wheel`` writes a wheel
after a pause (the real build takes 5-8 min and runs in every clean-clone CI install).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "install_llamacpp.sh"
VERSION = next(
    line.split("==")[1].strip()
    for line in (ROOT / "requirements-engine.txt").read_text().splitlines()
    if line.startswith("llama-cpp-python==")
)

FAKE_PYTHON = """#!/usr/bin/env bash
# A stand-in interpreter: llama_cpp is not installed; pip wheel "builds" in BUILD_SECONDS.
echo "$*" >> "$CALLS"
case "$1 $2 $3" in
  "-V  ") echo "Python 3.11.7";;
  "- "*) exit 1;;
  "-m pip wheel")
    out=$(echo "$@" | sed -E 's/.* -w ([^ ]+).*/\\1/')
    sleep "$BUILD_SECONDS"
    touch "$out/llama_cpp_python-VERSION-py3-none-linux_x86_64.whl";;
  "-m pip install") ;;
  *) [ "$1" = "-V" ] && echo "Python 3.11.7";;
esac
"""


def run(
    tmp_path: Path, *args: str, build_seconds: float
) -> tuple[subprocess.CompletedProcess[str], float]:
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON.replace("VERSION", VERSION))
    fake.chmod(0o755)
    env = {
        **os.environ,
        "VPY": str(fake),
        "CALLS": str(tmp_path / "calls"),
        "BUILD_SECONDS": str(build_seconds),
        "LLAMA_CPP_WHEEL_CACHE": str(tmp_path / "cache"),
        "LLAMA_CPP_BUILD_LOG": str(tmp_path / "build.log"),
    }
    started = time.monotonic()
    done = subprocess.run(
        ["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=120
    )
    return done, time.monotonic() - started


def calls(tmp_path: Path) -> list[str]:
    path = tmp_path / "calls"
    return path.read_text().splitlines() if path.exists() else []


def wheels(tmp_path: Path) -> list[Path]:
    return list((tmp_path / "cache").rglob("llama_cpp_python-*.whl"))


def test_without_a_cached_wheel_background_returns_at_once_and_the_build_installs_later(
    tmp_path: Path,
) -> None:
    done, took = run(tmp_path, "--background", build_seconds=3)
    assert done.returncode == 0, done.stderr
    assert "building in the background" in done.stdout and "transformers engine" in done.stdout
    assert took < 3, "make run must not wait for the build"
    assert not any("pip install" in c for c in calls(tmp_path))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any("pip install" in c for c in calls(tmp_path)):
        time.sleep(0.5)
    assert len(wheels(tmp_path)) == 1, (tmp_path / "build.log").read_text()
    installed = [c for c in calls(tmp_path) if "pip install" in c]
    assert installed and str(wheels(tmp_path)[0]) in installed[0]
    assert (wheels(tmp_path)[0].parent / "build.json").exists()


def test_a_cached_wheel_is_installed_in_the_foreground_without_building(tmp_path: Path) -> None:
    run(tmp_path, build_seconds=0)  # a first, foreground build fills the cache
    (tmp_path / "calls").unlink()
    done, _ = run(tmp_path, "--background", build_seconds=0)
    assert done.returncode == 0, done.stderr
    assert "background" not in done.stdout
    made = calls(tmp_path)
    assert not any("pip wheel" in c for c in made)
    assert any("pip install" in c and str(wheels(tmp_path)[0]) in c for c in made)
