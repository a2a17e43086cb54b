"""A live instance for security tests: uvicorn on the embedded default, demo accounts, no corpus.

The same app `make run` serves (SQLite in its own VAR_DIR, tasks in-process), without the demo
corpus so that it starts in seconds; tests add the rows they attack with :func:`django_shell`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.live import Server, app_env, login_cookies, manage, start_server

PASSWORD = os.environ.get("DEMO_PASSWORD", "test-password-123")


@contextmanager
def live_instance(name: str, **overrides: str) -> Iterator[Server]:
    """Migrate, create the demo accounts, serve; stop and remove everything afterwards."""
    var_dir = Path(tempfile.mkdtemp(prefix=f"clinic-{name}-"))
    env = app_env(var_dir, **overrides)
    try:
        manage(env, "migrate", "--noinput", "-v0")
        manage(env, "setup_demo", "--skip-corpus", "-v0")
        server = start_server(env, name=name)
        try:
            yield server
        finally:
            server.process.stop()
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)


def django_shell(server: Server, code: str) -> Any:
    """Run ``code`` in ``manage.py shell`` against the instance's database; it must print one
    JSON value as its last line, which is returned."""
    out = manage(server.env, "shell", "-c", code)
    return json.loads(out.strip().splitlines()[-1])


def cookies_for(server: Server, username: str) -> dict[str, str]:
    return login_cookies(server.base_url, username, PASSWORD)
