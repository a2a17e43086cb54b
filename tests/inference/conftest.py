"""A real vLLM CPU server for the backend tests, started once per test run.

It serves the tiny random Llama-2-shaped model that ``make vllm`` builds, from the vLLM venv
(``.venv-vllm``, or ``$VLLM_VENV``), on a free localhost port. Its log goes to
``test-artifacts/vllm-server.log``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
# Overridable so that a CI checkout can reuse a vLLM venv and model built elsewhere.
VLLM_PYTHON = Path(os.environ.get("VLLM_VENV", ROOT / ".venv-vllm")) / "bin" / "python"
TINY_MODEL = Path(os.environ.get("MODELS_DIR", ROOT / "var" / "models")) / "tiny-llama"
SERVED_NAME = "tiny-llama"
MAX_MODEL_LEN = 512
# Cold imports of vLLM + torch take most of the start-up; a loaded 2-core machine needs more.
START_TIMEOUT_S = 240.0


# Start-up time of this run's server, for the summary line (pytest captures fixture output).
_started_in: list[float] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _started_in:
        terminalreporter.write_line(f"vLLM test server healthy after {_started_in[0]:.1f} s")


@dataclass(frozen=True)
class VLLMServer:
    base_url: str
    model: str
    model_dir: Path
    max_model_len: int
    log_path: Path
    started_in_s: float

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (it forks helpers), then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="session")
def vllm_server() -> Iterator[VLLMServer]:
    """The tiny Llama on a real vLLM CPU server, for the whole session."""
    try:
        with launch_vllm_server(
            model_dir=TINY_MODEL,
            served_name=SERVED_NAME,
            max_model_len=MAX_MODEL_LEN,
            log_path=ROOT / "test-artifacts" / "vllm-server.log",
            # Logs "Added request ..." and "Aborted request(s) ..." lines the cancel test reads.
            extra_args=("--enable-log-requests",),
        ) as server:
            _started_in.append(server.started_in_s)
            yield server
    except VLLMStartError as exc:
        pytest.fail(str(exc), pytrace=False)


# -- a server for any model, for tests with their own fixture and for bench/inference.py --------


class VLLMStartError(RuntimeError):
    """The vLLM server exited or did not become healthy; the message ends with its log."""


@contextmanager
def launch_vllm_server(
    *,
    model_dir: Path,
    served_name: str,
    max_model_len: int,
    log_path: Path,
    dtype: str = "float32",
    extra_args: Sequence[str] = (),
    start_timeout_s: float = START_TIMEOUT_S,
    kv_cache_gib: int = 1,
) -> Iterator[VLLMServer]:
    """Run ``vllm.entrypoints.openai.api_server`` on ``model_dir`` until the block ends.

    Same engine settings as the session's ``vllm_server`` (engine in-process, eager, one
    executor, fixed seed). Raises :class:`VLLMStartError` when the vLLM venv or the model is
    missing, or the server does not come up; the server's process group is stopped on exit.
    """
    missing = [str(p) for p in (VLLM_PYTHON, model_dir / "config.json") if not p.exists()]
    if missing:
        raise VLLMStartError(
            f"a vLLM server needs {', '.join(missing)}: run `make vllm` (scripts/setup_vllm.sh, "
            "then scripts/make_tiny_llama.py) and `make models` first"
        )
    log_path.parent.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    env = {
        **os.environ,
        # Engine in the API server's process: starts in ~20 s instead of ~45 s on 2 cores,
        # since vLLM and torch are imported once instead of three times.
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        # KV cache in GiB; the default sizes it from free memory, far more than tests need.
        "VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gib),
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    command = [
        str(VLLM_PYTHON),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        served_name,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        dtype,
        "--enforce-eager",
        "--max-model-len",
        str(max_model_len),
        "--distributed-executor-backend",
        "uni",
        "--seed",
        "0",
        *extra_args,
    ]
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if process.poll() is not None:
                raise VLLMStartError(
                    f"vLLM server for {model_dir.name} exited with code {process.returncode} "
                    f"while starting; log {log_path}:\n{_tail(log_path)}"
                )
            if time.monotonic() - started > start_timeout_s:
                raise VLLMStartError(
                    f"vLLM server for {model_dir.name} not healthy after {start_timeout_s:.0f} s;"
                    f" log {log_path}:\n{_tail(log_path)}"
                )
            try:
                if httpx.get(f"{base_url}/health", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        yield VLLMServer(
            base_url=base_url,
            model=served_name,
            model_dir=model_dir,
            max_model_len=max_model_len,
            log_path=log_path,
            started_in_s=time.monotonic() - started,
        )
    finally:
        _stop(process)
