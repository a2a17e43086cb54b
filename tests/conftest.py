"""Shared fixtures. Expensive things (the test index, loaded models) are built once per run."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"

# A slice of the demo corpus that is quick to embed but still answers the test questions.
TEST_GUIDELINES = (
    "acc_aha_af_2023",
    "kdigo_ckd_2024",
    "aba_burn_2016",
    "acc_aha_hypertension_2017",
)
ANSWERABLE_QUESTION = "Which patients with atrial fibrillation should receive oral anticoagulation?"
OFF_TOPIC_QUESTION = "Who won the football world cup in 2018?"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_documents() -> list:  # type: ignore[type-arg]
    from retrieval.loaders import load_open_medicine

    return [d for d in load_open_medicine() if d.meta.key.split("/")[0] in TEST_GUIDELINES]


@pytest.fixture(scope="session")
def index_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="clinic-test-index-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker, index_dir: Path) -> None:  # type: ignore[no-untyped-def]
    """Test database with roles, demo users and the test slice of the corpus, indexed once."""
    from django.conf import settings
    from django.core.management import call_command

    from clinic_app.library import ingest

    settings.INDEX_DIR = index_dir
    with django_db_blocker.unblock():
        os.environ.setdefault("DEMO_PASSWORD", "test-password-123")
        call_command("setup_demo", "--skip-corpus", verbosity=0)
        ingest.guidelines_ingest(documents=test_documents(), actor="tests")
        call_command("dumpdata", *SEED_MODELS, output=str(index_dir / "seed.json"), verbosity=0)


# Transactional tests empty the database when they end; they reload this seed (same primary
# keys, so the index on disk still matches) instead of re-embedding the corpus.
SEED_MODELS = (
    "auth.group",
    "auth.user",
    "clinic_app.guideline",
    "clinic_app.passage",
    "clinic_app.indexversion",
)


@pytest.fixture(scope="session", autouse=True)
def _audit_checkpoints_in_the_database_only() -> None:
    """No checkpoint file by default: tests never write beside the developer's own database,
    and transactional tests (whose events are flushed) leave no stale checkpoints behind.
    Tests of the export set their own file."""
    from django.conf import settings

    settings.AUDIT_CHECKPOINT_FILE = ""


@pytest.fixture(scope="session", autouse=True)
def _flush_may_empty_the_audit_log() -> Iterator[None]:
    """Transactional tests end with Django's ``flush``, which the audit triggers would refuse.

    Only the flush runs inside the maintenance switch; every other statement in the suite meets
    the triggers as production does (tests/clinic_app/test_audit.py proves they refuse).
    """
    from django.core.management.commands.flush import Command

    from clinic_app.audit.triggers import audit_maintenance

    original = Command.handle

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        with audit_maintenance(options.get("database") or "default"):
            return original(self, *args, **options)

    Command.handle = handle  # type: ignore[method-assign]
    yield
    Command.handle = original  # type: ignore[method-assign]


@pytest.fixture
def seeded_db(transactional_db: None, index_dir: Path) -> None:
    from django.core.management import call_command

    call_command("loaddata", str(index_dir / "seed.json"), verbosity=0)


@pytest.fixture(autouse=True)
def _clear_cache() -> Iterator[None]:
    """Cancel flags and other cached state never leak from one test into the next."""
    yield
    from django.conf import settings

    if settings.configured:
        from django.core.cache import cache

        cache.clear()


CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Debian Chromium for the whole run: Playwright's sync API allows one driver
    per thread, so every browser test (e2e, security) shares it."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (Debian's chromium package)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def demo_password() -> str:
    return os.environ.get("DEMO_PASSWORD", "test-password-123")


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
