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


def _env_example_names() -> set[str]:
    example = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^([A-Z_0-9]+)=", example, re.M))


def _docs_settings_table_names() -> list[str]:
    """The first column of every row of docs/settings.md's table (`NAME`)."""
    text = (ROOT / "docs" / "settings.md").read_text()
    return re.findall(r"^\| `([A-Z_0-9]+)` \|", text, re.M)


def test_every_setting_is_listed_in_env_example_and_docs_settings() -> None:
    example = _env_example_names()
    documented = set(_docs_settings_table_names())
    assert len(SETTINGS_READ) > 30
    missing_example = [n for n in SETTINGS_READ if n not in example]
    missing_docs = [n for n in SETTINGS_READ if n not in documented]
    assert missing_example == [] and missing_docs == []


def test_every_setting_in_docs_settings_exists_in_env_example() -> None:
    rows = _docs_settings_table_names()
    assert len(rows) > 30
    assert len(rows) == len(set(rows)), "a setting has two rows in docs/settings.md"
    stale = [n for n in rows if n not in _env_example_names()]
    assert stale == []


def test_readme_is_short_and_its_docs_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    links = re.findall(r"\]\((docs/[^)#\s]+\.md)(?:#[^)]*)?\)", readme)
    assert links, "README links no docs page"
    broken = [link for link in links if not (ROOT / link).is_file()]
    unlisted = [
        f"docs/{page.name}"
        for page in sorted((ROOT / "docs").glob("*.md"))
        if f"docs/{page.name}" not in links
    ]
    assert broken == [] and unlisted == []


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
