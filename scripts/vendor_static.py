"""Fetch (or check) the third-party browser files listed in ``static/vendor/vendored.json``.

The page never loads code from a CDN: chart code is served from ``static/vendor/`` like the
project's own files. This script keeps those files honest:

1. ``npm pack name@version`` downloads each package's tarball from the npm registry;
2. the tarball must match the recorded Subresource-Integrity hash (``integrity``, sha512) that
   the registry published for that version, or nothing is written;
3. each listed member is read from the tarball, its sha256 compared with the recorded one, and
   written under ``static/vendor/<dir>/``.

``--check`` reads only the files already in ``static/vendor`` and compares their sha256 (no
network); the test suite does the same (``tests/test_vendored_static.py``).

Usage::

    python scripts/vendor_static.py            # fetch, verify, write
    python scripts/vendor_static.py --check    # verify what is committed
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "static" / "vendor"
MANIFEST = VENDOR / "vendored.json"


def manifest_read(path: Path = MANIFEST) -> list[dict[str, Any]]:
    """The packages recorded in the manifest."""
    return list(json.loads(path.read_text(encoding="utf-8"))["packages"])


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check(packages: list[dict[str, Any]], vendor: Path = VENDOR) -> list[str]:
    """Problems with the committed files (missing or changed); empty when all match."""
    problems = []
    for pkg in packages:
        for member in pkg["files"].values():
            path = vendor / pkg["dir"] / member["to"]
            if not path.is_file():
                problems.append(f"{path.relative_to(vendor)}: missing")
            elif (got := sha256_of(path.read_bytes())) != member["sha256"]:
                problems.append(f"{path.relative_to(vendor)}: sha256 {got} != {member['sha256']}")
    return problems


def fetch(pkg: dict[str, Any], vendor: Path = VENDOR) -> None:
    """Download one package with npm, verify the tarball and its members, write the files."""
    with tempfile.TemporaryDirectory() as tmp:
        spec = f"{pkg['name']}@{pkg['version']}"
        out = subprocess.run(
            ["npm", "pack", spec, "--silent", "--pack-destination", tmp],
            check=True,
            capture_output=True,
            text=True,
        )
        tarball = Path(tmp) / out.stdout.strip().splitlines()[-1]
        algo, _, expected = pkg["integrity"].partition("-")
        digest = base64.b64encode(hashlib.new(algo, tarball.read_bytes()).digest()).decode()
        if digest != expected:
            raise SystemExit(f"{spec}: tarball {algo} {digest} is not the recorded integrity")
        with tarfile.open(tarball) as tar:
            for name, member in pkg["files"].items():
                extracted = tar.extractfile(name)
                if extracted is None:
                    raise SystemExit(f"{spec}: {name} is not a file in the tarball")
                data = extracted.read()
                if sha256_of(data) != member["sha256"]:
                    raise SystemExit(f"{spec}: {name} does not have the recorded sha256")
                target = vendor / pkg["dir"] / member["to"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        print(f"{spec}: {len(pkg['files'])} files verified and written")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="verify the committed files only")
    args = parser.parse_args(argv)
    packages = manifest_read()
    if not args.check:
        for pkg in packages:
            fetch(pkg)
    problems = check(packages)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"{sum(len(p['files']) for p in packages)} vendored files match their sha256")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
