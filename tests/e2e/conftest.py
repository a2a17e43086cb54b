"""Browser fixtures: one live instance on the embedded default and one headless Chromium per run.

The instance is what `make run` serves (SQLite in its own VAR_DIR, tasks in-process, the real
embedded model from var/models), seeded with the test slice of the corpus. Playwright drives
Debian's chromium: Playwright's own browser download does not work on these machines.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from tests import live

# Wide enough for the three-column layout (history, answer, evidence).
VIEWPORT = {"width": 1440, "height": 1000}
# The page keeps its socket private; this only records the sockets it opens, so that a test can
# wait until the page is connected instead of racing the first "Ask" against the handshake.
TRACK_SOCKETS = """
(() => {
  const Native = window.WebSocket;
  window.__sockets = [];
  window.WebSocket = class extends Native {
    constructor(...args) { super(...args); window.__sockets.push(this); }
  };
})();
"""


@pytest.fixture(scope="session")
def e2e_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[live.Server]:
    """A seeded instance served by uvicorn (`manage.py serve`) in a subprocess; stopped when the run ends."""
    var_dir = tmp_path_factory.mktemp("e2e-var")
    env = live.app_env(var_dir)
    live.seed(env)
    # Outside DEBUG, whitenoise serves only collected files (as `make setup` does).
    live.manage(env, "collectstatic", "--noinput", "-v0")
    server = live.start_server(env, name="e2e-server")
    try:
        yield server
    finally:
        server.process.stop()
        shutil.rmtree(var_dir, ignore_errors=True)


@pytest.fixture
def context(browser: Browser, e2e_server: live.Server) -> Iterator[BrowserContext]:
    """A fresh, anonymous browser profile (no cookies, no session storage) for each test."""
    context = browser.new_context(base_url=e2e_server.base_url, viewport=VIEWPORT)  # type: ignore[arg-type]
    context.set_default_timeout(15_000)
    context.add_init_script(TRACK_SOCKETS)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture(scope="session")
def screenshots(artifacts: Path) -> Path:
    path = artifacts / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


def sign_in(page: Page, username: str, password: str) -> None:
    """Sign in through the login form, as a person would."""
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


@pytest.fixture
def clinician_page(page: Page, demo_password: str) -> Page:
    """A page signed in as the demo clinician, on the ask page with its websocket connected."""
    sign_in(page, "clinician", demo_password)
    assert page.url.endswith("/ask/"), f"clinician lands on the ask page, not {page.url}"
    wait_until_connected(page)
    return page


def wait_until_connected(page: Page) -> None:
    page.wait_for_function(
        "() => (window.__sockets || []).some((s) => s.readyState === WebSocket.OPEN)"
    )
