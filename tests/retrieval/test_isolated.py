"""Parsing in a limited child process: the limits apply to parsing, not to the caller."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from retrieval.errors import DocumentError
from retrieval.isolated import parse_isolated


def test_a_slow_consumer_never_trips_the_parse_time_limit(tmp_path: Path) -> None:
    """Storing a large collection takes far longer than parsing it: only parsing is timed."""
    records = tmp_path / "many.jsonl"
    records.write_text(
        "\n".join(
            json.dumps({"id": i, "source": "s", "title": f"T{i}", "clean_text": f"# T{i}\n\nx {i}"})
            for i in range(300)
        )
    )
    seen = 0
    for item in parse_isolated(records, source_name="many.jsonl", timeout_s=3.0):
        assert not isinstance(item, DocumentError)
        seen += 1
        time.sleep(0.015)  # 300 x 15 ms = 4.5 s of "storing", more than the 3 s limit
    assert seen == 300


def test_a_parse_over_its_memory_limit_fails_that_file_only(tmp_path: Path) -> None:
    page = tmp_path / "huge.html"
    page.write_text("<html><body>" + "<p>word " * 3_000_000 + "</body></html>")
    with pytest.raises(DocumentError, match=r"more than 300 MB|could not be parsed"):
        list(parse_isolated(page, source_name="huge.html", memory_mb=300))
