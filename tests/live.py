"""Run the real app as separate processes (ASGI server, Celery worker) for end-to-end tests."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.conftest import ARTIFACTS, ROOT, TEST_GUIDELINES, free_port

PYTHON = sys.executable
BIN = Path(PYTHON).parent


def app_env(var_dir: Path, **overrides: str) -> dict[str, str]:
    """Environment for a live instance: its own var/ directory, the installed models."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")
    }
    env.update(
        PYTHONPATH=str(ROOT),
        DJANGO_SETTINGS_MODULE="clinic_app.settings",
        VAR_DIR=str(var_dir),
        MODELS_DIR=str(ROOT / "var" / "models"),
        DEMO_PASSWORD=env.get("DEMO_PASSWORD", "test-password-123"),
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
        ANSWER_MAX_TOKENS="120",
        # Browser tests share one server and one clinician; the limits have their own tests.
        QUESTION_RATE_PER_MINUTE="120",
    )
    env.update(overrides)
    if not env.get("SECRET_KEY"):
        # The app refuses to start without a key: each instance keeps one, as `make setup` does.
        key_file = Path(env["VAR_DIR"]) / "secret_key"
        if not key_file.exists():
            key_file.parent.mkdir(parents=True, exist_ok=True)
            key_file.write_text(secrets.token_urlsafe(50))
    return env


def manage(env: dict[str, str], *args: str, timeout: float = 600) -> str:
    result = subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def seed(env: dict[str, str]) -> None:
    """Migrate, create the demo accounts and ingest the test slice of the corpus."""
    manage(env, "migrate", "--noinput", "-v0")
    manage(env, "setup_demo", "--guidelines", ",".join(TEST_GUIDELINES))


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        if self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, sig)
            self.popen.wait(timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with_kill = self.popen.poll() is None
            if with_kill:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)


def spawn(name: str, args: list[str], env: dict[str, str]) -> Process:
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / f"{name}.log"
    handle = log_path.open("wb")
    popen = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )
    return Process(name, popen, log_path)


@dataclass
class Server:
    process: Process
    base_url: str
    host: str
    port: int
    extra: list[Process] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


def start_server(env: dict[str, str], name: str = "server", timeout: float = 60) -> Server:
    port = free_port()
    process = spawn(
        name,
        [PYTHON, str(ROOT / "manage.py"), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env,
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise RuntimeError(f"{name} exited early:\n{process.log()}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                return Server(process, base_url, "127.0.0.1", port, env=dict(env))
        except httpx.HTTPError:
            time.sleep(0.3)
    process.stop()
    raise RuntimeError(f"{name} did not answer /healthz in {timeout}s:\n{process.log()}")


def start_worker(env: dict[str, str], name: str = "worker", timeout: float = 90) -> Process:
    process = spawn(
        name,
        [
            str(BIN / "celery"),
            "-A",
            "clinic_app.celery",
            "worker",
            "--loglevel=INFO",
            "--concurrency=1",
            "--without-gossip",
            "--without-mingle",
        ],
        env,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise RuntimeError(f"{name} exited early:\n{process.log()}")
        if re.search(r"celery@\S+ ready", process.log()):
            return process
        time.sleep(0.3)
    process.stop()
    raise RuntimeError(f"{name} not ready in {timeout}s:\n{process.log()}")


@contextmanager
def stopping(*processes: Process) -> Iterator[None]:
    try:
        yield
    finally:
        for p in processes:
            p.stop()


def login_cookies(base_url: str, username: str, password: str) -> dict[str, str]:
    """Sign in through the real login form; returns the session cookies."""
    with httpx.Client(base_url=base_url, follow_redirects=False, timeout=10) as client:
        page = client.get("/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert token, "login form has a CSRF token"
        response = client.post(
            "/login/",
            data={
                "username": username,
                "password": password,
                "csrfmiddlewaretoken": token.group(1),
            },
            headers={"Referer": f"{base_url}/login/"},
        )
        assert response.status_code == 302, f"login failed: {response.status_code}"
        return dict(client.cookies)
