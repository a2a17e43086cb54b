"""/readyz's generation check against a real vLLM CPU server (the session's tiny Llama)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from clinic_app.observability.readiness import readiness_check

if TYPE_CHECKING:
    from tests.inference.conftest import VLLMServer


@pytest.mark.django_db
def test_the_generation_check_asks_the_vllm_server_for_its_health(
    vllm_server: VLLMServer, settings: Any
) -> None:
    settings.INFERENCE_BACKEND = "vllm"
    settings.VLLM_BASE_URL = f"{vllm_server.base_url}/v1"  # the API path is accepted too
    checks = {c.name: c for c in readiness_check()}
    assert checks["generation"].ok, checks["generation"]
    assert checks["generation"].detail == "vLLM server healthy"
