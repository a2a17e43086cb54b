"""Progress where people wait: a live bar on a terminal, a line per 10% in logs."""

from __future__ import annotations

import io

from clinic_app.core.progress import progress_reporter


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_logs_get_one_line_per_tenth_with_rate_and_eta() -> None:
    out = io.StringIO()
    report = progress_reporter("embedding passages", unit="passage", stream=out)
    for done in range(0, 1001, 7):
        report(done, 1000)
    report(1000, 1000)
    lines = out.getvalue().splitlines()
    assert [line.split("(")[1].split(")")[0] for line in lines] == [
        f"{p}%" for p in range(10, 101, 10)
    ]
    assert all("passages/s" in line and "ETA" in line for line in lines)


def test_a_terminal_gets_a_live_bar_with_rate_and_eta() -> None:
    out = Terminal()
    report = progress_reporter("embedding passages", unit="passage", stream=out)
    for done in (0, 256, 512, 600):
        report(done, 600)
    text = out.getvalue()
    assert "embedding passages" in text and "600/600" in text and "passage/s" in text
    assert "\r" in text  # redrawn in place, not one line per update


def test_disabled_progress_writes_nothing() -> None:
    out = Terminal()
    report = progress_reporter("x", stream=out, enabled=False)
    report(5, 10)
    assert out.getvalue() == ""
