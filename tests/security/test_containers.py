"""The production containers and services: the image, its build context, and who may talk to
Redis, vLLM and PostgreSQL as what.

Docker cannot run on these machines, so the image and compose file are read as Docker would read
them (PyYAML with merge keys, compose's ``${VAR}`` interpolation, .dockerignore patterns). What
can run here runs for real: Redis is started with the compose file's own command and attacked
without the password, and a real vLLM server started with ``--api-key`` refuses requests without
the key while the app's backend, configured from settings, gets answers.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil
import pytest
import redis
import yaml
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.conftest import ARTIFACTS, ROOT, free_port
from tests.inference.conftest import (
    MAX_MODEL_LEN,
    SERVED_NAME,
    TINY_MODEL,
    VLLMServer,
    VLLMStartError,
    launch_vllm_server,
)

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
APP_SERVICES = ("web", "worker")
# What a deployer puts in .env: distinct values, so a test can tell which one ended up where.
DEPLOY_ENV = {
    "POSTGRES_PASSWORD": "owner-pw-" + uuid.uuid4().hex,
    "APP_DB_PASSWORD": "app-pw-" + uuid.uuid4().hex,
    "REDIS_PASSWORD": "redis-pw-" + uuid.uuid4().hex,
    "VLLM_API_KEY": "vllm-key-" + uuid.uuid4().hex,
    "METRICS_TOKEN": "metrics-" + uuid.uuid4().hex,
    "HF_TOKEN": "hf-" + uuid.uuid4().hex,
}

_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_]\w*)")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's variable substitution: ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-default}`` and
    ``${VAR:?error}`` (which fails when VAR is unset or empty)."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        operator, argument = match.group(2), match.group(3)
        current = env.get(name, "")
        if operator in (":?", "?") and not current:
            raise KeyError(f"{name}: {argument}")
        if operator in (":-", "-") and not current:
            return argument
        return current

    return _VARIABLE.sub(substitute, value)


def environment(service: str, env: dict[str, str] = DEPLOY_ENV) -> dict[str, str]:
    return {k: interpolate(str(v), env) for k, v in SERVICES[service]["environment"].items()}


def command(service: str, env: dict[str, str] = DEPLOY_ENV) -> list[str]:
    raw = SERVICES[service]["command"]
    if isinstance(raw, str):
        return shlex.split(interpolate(raw, env))
    return [interpolate(part, env) for part in raw]


# -- the image ---------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile's last stage, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    instructions = [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
        for line in (raw.strip() for raw in text.splitlines())
        if line and not line.startswith("#")
    ]
    last_from = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    return instructions[last_from:]


def test_the_image_runs_as_a_fixed_non_root_uid() -> None:
    instructions = dockerfile_instructions()
    users = [args.strip() for name, args in instructions if name == "USER"]
    assert users, "no USER: the container would run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, f"USER {users[-1]}: use a fixed, non-zero uid"
    assert not gid or (gid.isdigit() and int(gid) != 0)
    # The user exists in the image with that uid, and nothing runs as root after USER.
    runs = " ".join(args for name, args in instructions if name == "RUN")
    assert re.search(rf"useradd\b[^&]*--uid {uid}\b", runs)
    last_user = max(i for i, (name, _) in enumerate(instructions) if name == "USER")
    assert all(name != "RUN" for name, _ in instructions[last_user:])


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves ``path`` (relative, '/'-separated) out of the build context: the
    last matching pattern wins, ``!`` re-includes, a matched directory takes its contents."""
    excluded = False
    parts = path.split("/")
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**", i):
                regex += ".*"
                i += 2
                if pattern.startswith("/", i):
                    regex += "/?"
                    i += 1
            elif pattern[i] == "*":
                regex += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                regex += "[^/]"
                i += 1
            else:
                regex += re.escape(pattern[i])
                i += 1
        compiled = re.compile(regex)
        prefixes = ("/".join(parts[: n + 1]) for n in range(len(parts)))
        if any(compiled.fullmatch(prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def test_the_build_context_leaves_out_secrets_local_data_and_virtualenvs() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in (
        ".env",
        ".env.production",
        "var/secret_key",
        "var/db.sqlite3",
        "var/models/tiny-llama/config.json",
        ".git/config",
        ".venv/bin/python",
        ".venv-vllm/bin/python",
        "test-artifacts/server.log",
        "bench/results/retrieval.json",
        "clinic_app/__pycache__/settings.cpython-311.pyc",
        "retrieval/__pycache__/isolated.cpython-311.pyc",
    ):
        assert dockerignore_excludes(path, patterns), f"{path} would be sent to the build"
    for path in (
        "manage.py",
        "requirements.txt",
        "requirements-data.txt",
        "clinic_app/settings.py",
        "static/js/ask.js",
        ".env.example",
    ):
        assert not dockerignore_excludes(path, patterns), f"{path} is needed in the image"
    # And over this very checkout, which has a var/, virtualenvs and .git of its own (walked
    # without descending into what Docker would drop whole).
    sent: list[str] = []
    for folder, dirs, files in os.walk(ROOT):
        relative = Path(folder).relative_to(ROOT).as_posix()
        prefix = "" if relative == "." else f"{relative}/"
        dirs[:] = [d for d in dirs if not dockerignore_excludes(prefix + d, patterns)]
        sent += [prefix + f for f in files if not dockerignore_excludes(prefix + f, patterns)]
    assert "manage.py" in sent and "clinic_app/settings.py" in sent
    leaked = [
        p
        for p in sent
        if p.split("/")[0] in (".git", "var", "test-artifacts", ".env")
        or p.split("/")[0].startswith(".venv")
        or "__pycache__/" in p
        or p.startswith("bench/results/")
    ]
    assert not leaked, leaked[:10]


# -- compose: who connects as what -------------------------------------------------------------


def test_web_and_worker_use_the_app_role_and_only_migrate_holds_the_owner() -> None:
    owner = SERVICES["postgres"]["environment"]["POSTGRES_USER"]
    migrate = environment("migrate")
    assert urlsplit(migrate["DATABASE_URL"]).username == owner
    assert urlsplit(migrate["DATABASE_URL"]).password == DEPLOY_ENV["POSTGRES_PASSWORD"]
    script = " ".join(command("migrate"))
    assert script.index("manage.py migrate") < script.index("manage.py db_roles")
    app_role = re.search(r"db_roles --app-role (\w+)", script)
    assert app_role and app_role.group(1) != owner
    for name in APP_SERVICES:
        env = environment(name)
        url = urlsplit(env["DATABASE_URL"])
        assert url.username == app_role.group(1), f"{name} connects as {url.username}"
        assert url.password == DEPLOY_ENV["APP_DB_PASSWORD"]
        # The owner's password reaches no app container, not even through env_file: .env.
        assert DEPLOY_ENV["POSTGRES_PASSWORD"] not in env.values()
        assert env.get("POSTGRES_PASSWORD", None) == ""
        assert SERVICES[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
        assert "migrate" not in " ".join(command(name))


def test_only_the_web_server_publishes_a_port() -> None:
    published = {name for name, service in SERVICES.items() if service.get("ports")}
    assert published == {"web", "grafana"}
    # Grafana (monitoring profile only) is published on the machine's loopback, not the network.
    assert SERVICES["grafana"]["profiles"] == ["monitoring"]
    assert all(str(p).startswith("127.0.0.1:") for p in SERVICES["grafana"]["ports"])


def test_compose_refuses_to_start_without_the_service_secrets() -> None:
    for variable in ("REDIS_PASSWORD", "VLLM_API_KEY", "APP_DB_PASSWORD"):
        env = {**DEPLOY_ENV, variable: ""}
        with pytest.raises(KeyError, match=variable):
            environment("web", env)


# -- Redis ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose_redis() -> Iterator[int]:
    """redis-server run with the compose file's command (only the port moved off 6379)."""
    assert shutil.which("redis-server"), "redis-server is needed (the suite's Redis runs here)"
    port = free_port()
    script = command("redis")
    assert script[:2] == ["sh", "-c"]
    moved = script[2].replace("redis-server -", f"redis-server - --port {port} --bind 127.0.0.1", 1)
    assert moved != script[2]
    env = {**os.environ, **environment("redis")}
    process = subprocess.Popen(
        ["sh", "-c", moved], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                redis.Redis(port=port, password=DEPLOY_ENV["REDIS_PASSWORD"]).ping()
                break
            except redis.ConnectionError:
                assert process.poll() is None, "redis-server exited"
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def intruder(port: int, password: str | None = None) -> redis.Redis:
    """A client that sends its command as is (RESP2, no HELLO) and takes no for an answer."""
    return redis.Redis(port=port, password=password, protocol=2, retry=Retry(NoBackoff(), 0))


@pytest.mark.parametrize("call", ["ping", "keys", "flushall", "config_get"])
def test_redis_refuses_a_client_without_the_password(compose_redis: int, call: str) -> None:
    with pytest.raises(redis.AuthenticationError, match="Authentication required"):
        getattr(intruder(compose_redis), call)()
    with pytest.raises(redis.AuthenticationError):
        intruder(compose_redis, password="guess").ping()


def test_the_apps_redis_url_authenticates(compose_redis: int) -> None:
    for name in APP_SERVICES:
        url = urlsplit(environment(name)["REDIS_URL"])
        assert url.password == DEPLOY_ENV["REDIS_PASSWORD"]
        local = url._replace(netloc=f":{url.password}@127.0.0.1:{compose_redis}").geturl()
        client = redis.Redis.from_url(local)
        assert client.ping()
        client.set("clinic-compose-test", "1", ex=5)
        assert client.get("clinic-compose-test") == b"1"


def test_the_redis_password_is_not_on_its_command_line(compose_redis: int) -> None:
    servers = [
        p
        for p in psutil.process_iter(["name", "cmdline"])
        if p.info["cmdline"] and f"{compose_redis}" in " ".join(p.info["cmdline"])
    ]
    assert servers
    assert all(DEPLOY_ENV["REDIS_PASSWORD"] not in " ".join(p.info["cmdline"]) for p in servers)


# -- vLLM -------------------------------------------------------------------------------------


def test_vllm_is_started_with_the_api_key_the_app_sends() -> None:
    args = command("vllm")
    assert "--api-key" in args
    key = args[args.index("--api-key") + 1]
    assert key == DEPLOY_ENV["VLLM_API_KEY"]
    for name in APP_SERVICES:
        assert environment(name)["VLLM_API_KEY"] == key
    assert "ports" not in SERVICES["vllm"]


@pytest.fixture(scope="module")
def keyed_vllm() -> Iterator[tuple[VLLMServer, str]]:
    """The tiny Llama on a real vLLM server started with --api-key: (server, key)."""
    key = "test-key-" + uuid.uuid4().hex
    try:
        with launch_vllm_server(
            model_dir=TINY_MODEL,
            served_name=SERVED_NAME,
            max_model_len=MAX_MODEL_LEN,
            log_path=ARTIFACTS / "vllm-server-api-key.log",
            extra_args=("--api-key", key),
        ) as server:
            yield server, key
    except VLLMStartError as exc:
        pytest.fail(str(exc), pytrace=False)


def test_vllm_refuses_completions_without_the_key_and_the_app_sends_it(
    keyed_vllm: tuple[VLLMServer, str], settings: Any
) -> None:
    server, key = keyed_vllm
    base_url, model = server.base_url, server.model
    body = {"model": model, "prompt": "Atrial fibrillation", "max_tokens": 4, "temperature": 0}
    # Anyone else on the network: no key, or a wrong one.
    assert httpx.post(f"{base_url}/v1/completions", json=body, timeout=30).status_code == 401
    wrong = {"Authorization": "Bearer not-the-key"}
    assert (
        httpx.post(f"{base_url}/v1/completions", json=body, headers=wrong, timeout=30).status_code
        == 401
    )
    assert httpx.get(f"{base_url}/v1/models", timeout=30).status_code == 401

    # The app, configured through its settings as docker-compose configures it.
    from clinic_app.core import runtime
    from inference.types import GenerationRequest

    settings.INFERENCE_BACKEND = "vllm"
    settings.VLLM_BASE_URL = base_url
    settings.VLLM_MODEL = model
    settings.VLLM_API_KEY = key
    runtime.get_backend.cache_clear()
    try:
        backend = runtime.get_backend()
        chunks = list(backend.stream(GenerationRequest(prompt="Atrial fibrillation", max_tokens=8)))
        assert "".join(chunks)
        # Its metadata request was let in too: the context is the server's, not the default.
        assert settings.VLLM_CONTEXT_TOKENS != MAX_MODEL_LEN
        assert backend.info.context_tokens == MAX_MODEL_LEN
    finally:
        runtime.get_backend.cache_clear()
