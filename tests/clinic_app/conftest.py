from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User

from clinic_app.core import runtime
from inference.testing import ScriptedBackend, quote_first_source

Script = Callable[[str], str] | str


@pytest.fixture(autouse=True)
def scripted_model(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Service and websocket tests answer with the scripted backend (inference/testing.py):
    the first sentence of [S1], cited. Tests about the model itself are marked ``real_model``
    and get the configured backend (the embedded model)."""
    if request.node.get_closest_marker("real_model") is None:
        backend = ScriptedBackend(quote_first_source)
        monkeypatch.setattr(runtime, "get_backend", lambda: backend)


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Callable[[Script], ScriptedBackend]:
    """Answer with a given text (or script) instead; the outcome is then exact."""

    def install(script: Script) -> ScriptedBackend:
        backend = ScriptedBackend(script)
        monkeypatch.setattr(runtime, "get_backend", lambda: backend)
        return backend

    return install


@pytest.fixture
def clinician(db: None) -> User:
    return User.objects.get(username="clinician")


@pytest.fixture
def auditor(db: None) -> User:
    return User.objects.get(username="auditor")


@pytest.fixture
def guideline_admin(db: None) -> User:
    return User.objects.get(username="guideline-admin")
