"""Third-party browser files are exactly the ones recorded (scripts/vendor_static.py)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

from tests.conftest import ROOT


def _vendor_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "vendor_static", ROOT / "scripts" / "vendor_static.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_vendored_file_matches_its_recorded_sha256() -> None:
    vendor = _vendor_script()
    packages = vendor.manifest_read()
    assert {p["name"] for p in packages} >= {"uplot"}
    assert vendor.check(packages) == []


def test_a_changed_or_missing_vendored_file_is_reported(tmp_path: Path) -> None:
    vendor = _vendor_script()
    packages = vendor.manifest_read()
    uplot = next(p for p in packages if p["name"] == "uplot")
    folder = tmp_path / uplot["dir"]
    folder.mkdir()
    source = ROOT / "static" / "vendor" / uplot["dir"]
    for member in uplot["files"].values():
        (folder / member["to"]).write_bytes((source / member["to"]).read_bytes())
    assert vendor.check([uplot], tmp_path) == []
    (folder / "uPlot.iife.min.js").write_bytes(b"alert(1)")
    (folder / "LICENSE").unlink()
    problems = vendor.check([uplot], tmp_path)
    assert len(problems) == 2
    assert any("uPlot.iife.min.js: sha256" in p for p in problems)
    assert any("LICENSE: missing" in p for p in problems)


def test_pages_load_scripts_and_styles_from_static_never_from_another_host() -> None:
    external = re.compile(r"<(?:script|link)[^>]+(?:src|href)=\"(?:https?:)?//", re.I)
    offenders = [
        t.name for t in (ROOT / "templates").glob("*.html") if external.search(t.read_text())
    ]
    assert offenders == []
