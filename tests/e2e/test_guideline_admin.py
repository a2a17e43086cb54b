"""A guideline admin uploads files in the browser and watches the job to the end."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import sign_in

pytestmark = pytest.mark.e2e

DOC = b"""# Heron wound care

## Cleaning

Irrigate heron wing wounds with warm saline twice a day until they close.
"""


def test_admin_uploads_files_and_the_job_page_shows_progress_to_the_end(
    page: Page, demo_password: str, screenshots, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    good = tmp_path / "heron-wounds.md"
    good.write_bytes(DOC)
    bad = tmp_path / "scan.pdf"
    bad.write_bytes(b"GIF89a not really a pdf")
    sign_in(page, "guideline-admin", demo_password)
    assert page.url.endswith("/guidelines/")
    page.get_by_label("Files").set_input_files([str(good), str(bad)])
    page.get_by_label("Organisation").fill("Bird Board")
    page.get_by_label("Jurisdiction").fill("UK")
    page.get_by_role("button", name="Upload and ingest").click()

    expect(page).to_have_url(re.compile(r"/guidelines/jobs/\d+/$"))
    expect(page.locator("#job-done")).to_be_visible(timeout=120_000)
    expect(page.locator("#job-progress")).to_have_attribute("value", "100")
    expect(page.locator("#job-counts")).to_contain_text("added 1")
    expect(page.locator("#job-counts")).to_contain_text("failed 1")
    rows = page.locator("#job-items tbody tr")
    expect(rows.filter(has_text="scan.pdf")).to_contain_text("not a PDF")
    page.screenshot(path=screenshots / "ingest-job.png", full_page=True)

    # A reload shows the same finished job, from the database.
    page.reload()
    expect(page.locator("#job-done")).to_be_visible()
    expect(page.locator("#job-counts")).to_contain_text("added 1")

    # The new guideline opens in the quality view with its extracted text and passages.
    rows.filter(has_text="heron-wounds.md").get_by_role("link").click()
    expect(page.locator("h1")).to_have_text("Heron wound care")
    expect(page.locator("pre.extracted")).to_contain_text("Irrigate heron wing wounds")
    expect(page.locator("pre.original-text")).to_contain_text("# Heron wound care")
    expect(page.locator(".chunks li")).not_to_have_count(0)
    page.screenshot(path=screenshots / "guideline-quality-view.png", full_page=True)


def test_an_oversized_selection_is_stopped_before_sending(
    page: Page, demo_password: str, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    sign_in(page, "guideline-admin", demo_password)
    page.evaluate("() => document.getElementById('upload-form').dataset.maxBytes = '100'")
    big = tmp_path / "big.md"
    big.write_bytes(b"# Big\n\n" + b"x" * 500)
    page.get_by_label("Files").set_input_files(str(big))
    expect(page.locator("#size-warning")).to_be_visible()
    expect(page.locator("#size-warning")).to_contain_text("above the limit")
    page.get_by_role("button", name="Upload and ingest").click()
    expect(page).to_have_url(re.compile(r"/guidelines/$"))
