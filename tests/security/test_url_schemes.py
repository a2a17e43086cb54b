"""Guideline URLs become links only when they are http(s) (ASVS 5.2/5.3: no script URLs).

A guideline source names its URL (a Meditron JSONL record's ``url``, the upload form, the
command line); the pages put it in an ``href``. A ``javascript:`` URL there runs in the page
of whoever clicks it, with their session. The attacks go through the real server: a record
uploaded by a guideline admin, and a row stored before URLs were checked.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest

from retrieval.parsers import parse_bytes
from retrieval.types import DocumentMeta
from retrieval.urls import safe_http_url
from tests.live import Server
from tests.security.live_app import cookies_for, django_shell, live_instance

ATTACK_URL = "javascript:fetch('/x?'+document.cookie)"
DROPPED = "url dropped (scheme not http/https)"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with live_instance("url-schemes") as instance:
        yield instance


class _Links(HTMLParser):
    """Every URL-valued attribute of a page, as written."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v or "" for k, v in attrs if k in ("href", "src", "action", "formaction")]


def script_links(html: str) -> list[str]:
    """URLs in the page a browser would run or load as a script or document of its own
    (after dropping the tabs, newlines and control characters browsers ignore)."""
    parser = _Links()
    parser.feed(html)
    unsafe = []
    for url in parser.urls:
        seen = re.sub(r"[\t\n\r]", "", url).strip("\x00\x01\x02\x03\x04\x05\x06\x07\x08 ").lower()
        if seen.startswith(("javascript:", "data:", "vbscript:", "file:")):
            unsafe.append(url)
    return unsafe


# ------------------------------------------------------------------------------ the check


@pytest.mark.parametrize(
    "raw",
    [
        ATTACK_URL,
        " JAVASCRIPT:alert(1)",
        "java\tscript:alert(1)",
        "java\nscript:alert(1)",
        "\x01javascript:alert(1)",
        "javascript&colon;alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "file:///etc/passwd",
        "/guidelines/1/",
        "//evil.example/x",
        "https:evil.example",
        "https://",
        "ht\u200btps://evil.example/",
    ],
)
def test_script_local_and_relative_urls_are_refused_in_every_disguise(raw: str) -> None:
    assert safe_http_url(raw) is None


def test_web_urls_are_kept() -> None:
    assert safe_http_url("https://doi.org/10.1/x") == "https://doi.org/10.1/x"
    assert safe_http_url(" HTTP://example.org/a?b=1 ") == "HTTP://example.org/a?b=1"


def test_a_script_url_given_with_an_uploaded_document_is_dropped_with_a_warning() -> None:
    """The upload form's and the command line's URL go through the parser's check too."""
    meta = DocumentMeta(key="file/x", title="X", url="vbscript:msgbox(1)")
    doc = parse_bytes(b"# X\n\nSome text.\n", format="markdown", meta=meta, source_name="x.md")
    (document,) = doc.documents
    assert document.meta.url == ""
    assert document.warnings == (f"x.md: {DROPPED}",)


# ---------------------------------------------------------------------- through the server


def _upload(server: Server, cookies: dict[str, str], name: str, content: bytes) -> dict[str, Any]:
    """Upload one file as the guideline admin does and wait for its job to finish."""
    with httpx.Client(base_url=server.base_url, cookies=cookies, timeout=30) as client:
        page = client.get("/guidelines/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert page.status_code == 200 and token
        response = client.post(
            "/guidelines/upload/",
            data={"csrfmiddlewaretoken": token.group(1)},
            files={"documents": (name, content, "application/octet-stream")},
            headers={"Referer": f"{server.base_url}/guidelines/"},
        )
        assert response.status_code == 302, response.text[:2000]
        job_url = response.headers["Location"]
        deadline = time.monotonic() + 300
        while True:
            status: dict[str, Any] = client.get(f"{job_url}status").json()
            if status["final"] or time.monotonic() > deadline:
                return status
            time.sleep(0.5)


def test_an_uploaded_meditron_record_cannot_plant_a_javascript_link(server: Server) -> None:
    records = [
        {
            "id": "xss-1",
            "source": "planted",
            "title": "Otter pool chlorination",
            "clean_text": "# Otter pool chlorination\n\nKeep free chlorine at 1 to 3 mg/L.\n",
            "url": ATTACK_URL,
        },
        {
            "id": "ok-1",
            "source": "planted",
            "title": "Otter pool filtration",
            "clean_text": "# Otter pool filtration\n\nBackwash the sand filter weekly.\n",
            "url": "https://example.org/otters/filtration",
        },
    ]
    content = "\n".join(json.dumps(r) for r in records).encode()
    admin = cookies_for(server, "guideline-admin")

    status = _upload(server, admin, "otters.jsonl", content)

    assert status["status"] == "complete" and status["added"] == 2, status
    stored = django_shell(
        server,
        "import json; from clinic_app.models import Guideline; print(json.dumps({g.key: [g.pk, "
        "g.url] for g in Guideline.objects.filter(key__startswith='meditron/planted/')}))",
    )
    planted_id, planted_url = stored["meditron/planted/xss-1"]
    assert planted_url == ""  # dropped, not stored
    assert stored["meditron/planted/ok-1"][1] == "https://example.org/otters/filtration"
    warnings = [i["reason"] for i in status["items"] if i["outcome"] == "warning"]
    assert warnings == [f"record xss-1 (otters.jsonl line 1): {DROPPED}"]
    # The job page (the ingest report) shows it too, and the guideline page links nothing bad.
    with httpx.Client(base_url=server.base_url, cookies=admin, timeout=30) as client:
        job_page = client.get(f"/guidelines/jobs/{status['id']}/").text
        detail = client.get(f"/guidelines/{planted_id}/")
    assert DROPPED in job_page
    assert detail.status_code == 200
    assert script_links(detail.text) == []


def test_a_javascript_url_stored_before_the_check_is_never_served_as_a_link(
    server: Server,
) -> None:
    """Rows from before the fix keep their URL in the database; the pages and the passage API
    must not hand it out."""
    ids = django_shell(
        server,
        "import json; from clinic_app.models import Guideline, Passage; "
        "g = Guideline.objects.create(key='legacy/xss', title='Legacy guideline', sha256='0' * 64, "
        f"url={ATTACK_URL!r}); "
        "p = Passage.objects.create(guideline=g, ordinal=0, text='Legacy passage text.'); "
        "print(json.dumps([g.pk, p.pk]))",
    )
    guideline_id, passage_id = ids

    with httpx.Client(
        base_url=server.base_url, cookies=cookies_for(server, "guideline-admin"), timeout=30
    ) as client:
        page = client.get(f"/guidelines/{guideline_id}/")
    assert page.status_code == 200 and "Legacy guideline" in page.text
    assert script_links(page.text) == []

    with httpx.Client(
        base_url=server.base_url, cookies=cookies_for(server, "clinician"), timeout=30
    ) as client:
        passage = client.get(f"/api/passages/{passage_id}/")
    assert passage.status_code == 200
    assert passage.json()["guideline"]["url"] == ""
