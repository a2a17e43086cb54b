"""Settings fail loudly on bad values, and every setting is documented."""

from __future__ import annotations

import re

import pytest
import yaml

from clinic_app import env
from tests.conftest import ROOT

SETTINGS_READ = sorted(
    set(
        re.findall(
            r'env_(?:str|bool|int|float|choice|list)\(\s*"([A-Z_0-9]+)"',
            (ROOT / "clinic_app" / "settings.py").read_text(),
        )
    )
    | {"DEMO_PASSWORD"}
)


def test_every_setting_is_listed_in_env_example_and_readme() -> None:
    example = (ROOT / ".env.example").read_text()
    readme = (ROOT / "README.md").read_text()
    assert len(SETTINGS_READ) > 30
    missing_example = [n for n in SETTINGS_READ if not re.search(rf"^{n}=", example, re.M)]
    missing_readme = [n for n in SETTINGS_READ if f"`{n}`" not in readme]
    assert missing_example == [] and missing_readme == []


@pytest.mark.parametrize(
    ("reader", "value", "message"),
    [
        (lambda: env.env_int("X_TEST", 1), "ten", "not an integer"),
        (lambda: env.env_int("X_TEST", 1, minimum=5), "2", "at least 5"),
        (lambda: env.env_bool("X_TEST"), "maybe", "not a boolean"),
        (lambda: env.env_float("X_TEST", 0.1), "high", "not a number"),
        (lambda: env.env_choice("X_TEST", "a", ("a", "b")), "c", "must be one of a, b"),
    ],
)
def test_bad_setting_values_fail_loudly(
    monkeypatch: pytest.MonkeyPatch, reader, value: str, message: str
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("X_TEST", value)
    with pytest.raises(env.SettingError, match=message):
        reader()


def test_compose_file_describes_the_production_services() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert {"web", "worker", "postgres", "redis", "vllm"} <= set(compose["services"])
    assert "epfl-llm/meditron-7b" in compose["services"]["vllm"]["command"]
    worker_env = compose["services"]["worker"]["environment"]
    assert worker_env["INFERENCE_BACKEND"] == "vllm" and worker_env["REDIS_URL"].startswith(
        "redis://"
    )
