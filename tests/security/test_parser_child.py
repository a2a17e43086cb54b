"""The parser child (retrieval/isolated.py) as a compromised parser would see it: no secrets in
its environment, and limits on what it may write and spawn.

The child's environment is read from ``/proc/<pid>/environ`` while it parses a real upload
through the public ``parse_isolated``, with the parent's environment holding the secrets a
worker has. Its limits are read from ``/proc/<pid>/limits`` the same way. The file-size limit is
also exercised for real: a file whose parsed text exceeds it fails with a clear message.
``RLIMIT_NPROC`` is only shown to be set: the kernel does not enforce it for root, which these
tests run as (the production image does not).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psutil
import pytest

from retrieval.errors import DocumentError
from retrieval.isolated import child_environment, parse_isolated
from retrieval.types import Document

SECRETS = {
    "SECRET_KEY": "django-secret-for-the-parser-test",
    "DATABASE_URL": "postgresql://clinic:owner-password@db:5432/clinic",
    "REDIS_URL": "redis://:redis-password@redis:6379/0",
    "CELERY_BROKER_URL": "redis://:redis-password@redis:6379/0",
    "VLLM_API_KEY": "vllm-key",
    "AUDIT_CHECKPOINT_KEY": "checkpoint-key",
    "POSTGRES_PASSWORD": "owner-password",
    "DEMO_PASSWORD": "demo-password",
    "HF_TOKEN": "hf_token",
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
}


def markdown_guideline(path: Path, sections: int) -> Path:
    """A Markdown guideline with many sections: big enough that parsing takes a while."""
    body = "".join(
        f"## Recommendation {i}\n\nAdults with atrial fibrillation and a CHA2DS2-VASc score of "
        f"{i % 9} should be offered oral anticoagulation after weighing bleeding risk ({i}).\n\n"
        for i in range(sections)
    )
    path.write_text(f"# Atrial fibrillation guideline\n\n{body}", encoding="utf-8")
    return path


def parse_watching_the_child(
    path: Path, **kwargs: object
) -> tuple[list[Document | DocumentError], dict[str, str], str, BaseException | None]:
    """Parse ``path`` in a thread; meanwhile read the child's environment and, once it has
    limited itself, its limits. Returns (results, environment, limits, error)."""
    results: list[Document | DocumentError] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            results.extend(parse_isolated(path, source_name=path.name, **kwargs))  # type: ignore[arg-type]
        except BaseException as exc:
            failure.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    environ: dict[str, str] = {}
    limits = ""
    me = psutil.Process()
    deadline = time.monotonic() + 60
    while worker.is_alive() and time.monotonic() < deadline and "Max file size" not in limits:
        for child in me.children():
            try:
                if "retrieval.isolated" not in " ".join(child.cmdline()):
                    continue
                environ = environ or child.environ()
                text = Path(f"/proc/{child.pid}/limits").read_text()
                if _limit(text, "Max processes") == "0":  # set by the child, after it starts
                    limits = text
            except (psutil.Error, OSError):
                continue
        time.sleep(0.002)
    worker.join(120)
    return results, environ, limits, failure[0] if failure else None


def _limit(limits: str, name: str) -> str:
    for line in limits.splitlines():
        if line.startswith(name):
            return line[len(name) :].split()[0]
    return ""


def test_a_parser_exploit_finds_no_secrets_in_its_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    path = markdown_guideline(tmp_path / "af.md", sections=40_000)

    results, environ, limits, error = parse_watching_the_child(path)

    assert error is None, error
    assert environ, "the parser child was not seen running"
    leaked = {
        name
        for name in environ
        if name in SECRETS or any(v in environ[name] for v in SECRETS.values())
    }
    assert not leaked, f"the parser child inherited {sorted(leaked)}"
    assert environ["PATH"] and environ["OMP_NUM_THREADS"] == "1"
    # The same parse still works: one document with every section.
    docs = [r for r in results if isinstance(r, Document)]
    assert len(docs) == 1 and len(docs[0].sections) >= 40_000
    assert "oral anticoagulation" in docs[0].sections[0].text
    # And the child limited itself: output size, no new processes, no core dumps.
    assert limits, "the parser child's limits were not seen"
    assert _limit(limits, "Max file size") not in ("", "unlimited")
    assert _limit(limits, "Max processes") == "0"
    assert _limit(limits, "Max core file size") == "0"
    assert _limit(limits, "Max address space") not in ("", "unlimited")


def test_child_environment_keeps_only_the_allow_list() -> None:
    parent = {**SECRETS, "PATH": "/usr/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "X_TOKEN": "t"}
    env = child_environment(parent)
    assert env == {
        "PATH": "/usr/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    }


def test_a_file_that_expands_past_the_output_limit_fails_without_filling_the_disk(
    tmp_path: Path,
) -> None:
    # ~2 MB of Markdown becomes more than 1 MB of JSON lines: the child is stopped at 1 MB.
    path = markdown_guideline(tmp_path / "big.md", sections=12_000)
    assert path.stat().st_size > 1_500_000

    with pytest.raises(DocumentError, match=r"more than 1 MB of text"):
        list(parse_isolated(path, source_name="big.md", output_mb=1))

    # The same file within a limit that fits it parses normally.
    docs = list(parse_isolated(path, source_name="big.md", output_mb=8))
    assert len(docs) == 1 and isinstance(docs[0], Document)
