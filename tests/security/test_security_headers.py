"""Every page is served under a Content-Security-Policy that forbids inline code, and needs none;
HTTPS deployments send HSTS, secure cookies and redirect plain HTTP (except the health probe)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.test import Client, override_settings
from django.urls import NoReverseMatch, reverse
from playwright.sync_api import Browser

from clinic_app.models import AuditEvent, Guideline, IngestJob
from tests.live import Server, app_env, manage, start_server

# Script types a browser does not execute (json_script's data blocks).
DATA_SCRIPT_TYPES = {"application/json", "application/ld+json"}
EXPECTED_POLICY = {
    "default-src": {"'self'"},
    "script-src": {"'self'"},
    "style-src": {"'self'"},
    "img-src": {"'self'", "data:"},
    "connect-src": {"'self'"},
    "object-src": {"'none'"},
    "base-uri": {"'none'"},
    "frame-ancestors": {"'none'"},
    "form-action": {"'self'"},
}


class InlineCode(HTMLParser):
    """Collects what a policy without 'unsafe-inline' would block: inline scripts, on*=
    handlers, javascript: URLs, style attributes and <style> blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self._script: str | None = None  # the open inline <script>, if any

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name.lower(): value or "" for name, value in attrs}
        for name, value in names.items():
            if name.startswith("on"):
                self.problems.append(f"<{tag} {name}=...>")
            if value.strip().lower().startswith("javascript:"):
                self.problems.append(f"<{tag} {name}={value[:40]!r}>")
        if "style" in names:
            self.problems.append(f"<{tag} style={names['style'][:40]!r}>")
        if tag == "style":
            self.problems.append("<style> block")
        is_data = names.get("type", "").lower() in DATA_SCRIPT_TYPES
        if tag == "script" and "src" not in names and not is_data:
            self._script = ""

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._script += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._script is not None:
            if self._script.strip():
                self.problems.append(f"inline <script>: {self._script.strip()[:60]!r}")
            self._script = None


def inline_code(html: str) -> list[str]:
    parser = InlineCode()
    parser.feed(html)
    parser.close()
    return parser.problems


def policy(header: str) -> dict[str, set[str]]:
    directives: dict[str, set[str]] = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            directives[words[0]] = set(words[1:])
    return directives


@pytest.fixture
def pages(seeded_db: None, tmp_path: Path) -> Iterator[dict[str, list[str]]]:
    """Every template-backed page, by who may open it; the objects they show are created here."""
    clinician = User.objects.get(username="clinician")
    admin_user = User.objects.get(username="guideline-admin")
    guideline = Guideline.objects.filter(deleted_at__isnull=True).first()
    assert guideline is not None
    # A guideline whose uploaded original is a PDF (the page links to it).
    pdf = b"%PDF-1.4\n% original\n"
    sha = hashlib.sha256(pdf).hexdigest()
    (tmp_path / "originals" / sha[:2]).mkdir(parents=True)
    (tmp_path / "originals" / sha[:2] / sha).write_bytes(pdf)
    with_pdf = Guideline.objects.exclude(pk=guideline.pk).filter(deleted_at__isnull=True).first()
    assert with_pdf is not None
    Guideline.objects.filter(pk=with_pdf.pk).update(original_sha256=sha, original_type="pdf")
    job = IngestJob.objects.create(created_by=admin_user, files=[{"name": "a.pdf", "size": 9}])
    Client().force_login(clinician)  # a sign-in event, so the audit pages have one to show
    event = AuditEvent.objects.order_by("-seq").first()
    assert event is not None
    with override_settings(VAR_DIR=tmp_path):
        yield {
            "": ["/login/"],
            "clinician": ["/ask/", "/ask/?q=fibrillation", "/audit/"],  # /audit/: the 403 page
            "guideline-admin": [
                "/guidelines/",
                "/guidelines/?state=inactive",
                "/guidelines/feedback/",
                f"/guidelines/{guideline.pk}/",
                f"/guidelines/{with_pdf.pk}/",
                f"/guidelines/jobs/{job.pk}/",
            ],
            "auditor": ["/audit/", "/audit/?action=auth.login", f"/audit/events/{event.seq}/"],
        }


def test_no_page_needs_inline_code_and_every_page_forbids_it(
    pages: dict[str, list[str]],
) -> None:
    checked = 0
    for username, urls in pages.items():
        client = Client()
        if username:
            client.force_login(User.objects.get(username=username))
        for url in urls:
            response = client.get(url)
            assert response.status_code in (200, 403), (url, response.status_code)
            assert policy(response["Content-Security-Policy"]) == EXPECTED_POLICY, url
            assert inline_code(response.content.decode()) == [], (username, url)
            checked += 1
    # The auditor's chain check (POST only) shows its result on the audit page.
    auditor = Client()
    auditor.force_login(User.objects.get(username="auditor"))
    response = auditor.post("/audit/verify/", follow=True)
    assert response.status_code == 200 and inline_code(response.content.decode()) == []
    assert checked == sum(len(urls) for urls in pages.values())


def test_the_original_pdf_is_linked_not_embedded_and_keeps_its_sandbox(
    pages: dict[str, list[str]],
) -> None:
    client = Client()
    client.force_login(User.objects.get(username="guideline-admin"))
    detail = pages["guideline-admin"][4]
    page = client.get(detail).content.decode()
    assert "<object" not in page and "<embed" not in page and "<iframe" not in page
    assert f'href="{detail}original" target="_blank" rel="noopener"' in page
    original = client.get(f"{detail}original")
    assert original.status_code == 200
    assert original["Content-Security-Policy"] == "sandbox; default-src 'none'"


def test_django_admin_pages_need_no_inline_code(seeded_db: None) -> None:
    superuser = User.objects.create_superuser("root-admin", password="an-unguessable-passphrase")
    client = Client()
    client.force_login(superuser)
    urls = [reverse("admin:index"), reverse("admin:password_change")]
    for model, model_admin in admin.site._registry.items():
        meta = model._meta
        for view in ("changelist", "add"):
            try:
                urls.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_{view}"))
            except NoReverseMatch:
                continue
        first = model_admin.get_queryset(_admin_request(superuser)).first()
        if first is not None:
            urls.append(
                reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[first.pk])
            )
    problems, rendered = {}, 0
    for url in urls:
        response = client.get(url)
        if response.status_code != 200:  # e.g. clinical records cannot be added by hand
            continue
        rendered += 1
        assert policy(response["Content-Security-Policy"]) == EXPECTED_POLICY, url
        found = inline_code(response.content.decode())
        if found:
            problems[url] = found
    assert problems == {}
    assert rendered >= 12, urls  # index, password change, list/add/change of the models


def _admin_request(user: User):  # type: ignore[no-untyped-def]
    from django.test import RequestFactory

    request = RequestFactory().get("/")
    request.user = user
    return request


# -- HTTPS deployment, on the real ASGI server -----------------------------------------------


@pytest.fixture(scope="module")
def https_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """SECURE_COOKIES=1 behind a TLS-terminating proxy (played by the test, from 127.0.0.1)."""
    env = app_env(
        tmp_path_factory.mktemp("https"),
        SECURE_COOKIES="1",
        TRUSTED_PROXIES="127.0.0.1",
        SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO,https",
    )
    manage(env, "migrate", "--noinput", "-v0")
    server = start_server(env, name="https-server")
    try:
        yield server
    finally:
        server.process.stop()


def test_plain_http_is_sent_to_https_except_the_health_probe(https_server: Server) -> None:
    with httpx.Client(base_url=https_server.base_url, timeout=20) as client:
        page = client.get("/login/")
        assert page.status_code == 301
        assert page.headers["location"] == f"https://127.0.0.1:{https_server.port}/login/"
        assert client.get("/healthz").status_code == 200


def test_https_pages_send_hsts_policy_and_secure_cookies(https_server: Server) -> None:
    with httpx.Client(base_url=https_server.base_url, timeout=20) as client:
        page = client.get("/login/", headers={"X-Forwarded-Proto": "https"})
    assert page.status_code == 200
    headers = page.headers
    assert headers["strict-transport-security"] == "max-age=31536000; includeSubDomains; preload"
    assert policy(headers["content-security-policy"]) == EXPECTED_POLICY
    assert headers["referrer-policy"] == "same-origin"
    assert headers["cross-origin-opener-policy"] == "same-origin"
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    cookie = next(c for c in headers.get_list("set-cookie") if c.startswith("csrftoken="))
    assert "; Secure" in cookie


# -- in a real browser -------------------------------------------------------------------------

RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
"""


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = app_env(tmp_path_factory.mktemp("csp-browser"))
    manage(env, "migrate", "--noinput", "-v0")
    manage(env, "setup_demo", "--skip-corpus")
    manage(env, "collectstatic", "--noinput", "-v0")  # outside DEBUG whitenoise serves these
    server = start_server(env, name="csp-browser-server")
    try:
        yield server
    finally:
        server.process.stop()


@pytest.mark.e2e
def test_browser_reports_no_policy_violation_on_sign_in_and_ask_pages(
    plain_server: Server, browser: Browser
) -> None:
    password = plain_server.env["DEMO_PASSWORD"]
    context = browser.new_context(base_url=plain_server.base_url)
    try:
        context.add_init_script(RECORD_VIOLATIONS)
        page = context.new_page()
        page.goto("/login/")
        assert page.evaluate("window.__violations") == []
        page.fill("#id_username", "clinician")
        page.fill("#id_password", password)
        # The ask page opens its websocket on load: connect-src 'self' must allow it.
        with page.expect_websocket() as socket_info:
            page.click("button[type=submit]")
            page.wait_for_url("**/ask/")
        page.wait_for_timeout(500)
        assert not socket_info.value.is_closed()
        assert page.evaluate("window.__violations") == []
        page.goto("/admin/login/")
        assert page.evaluate("window.__violations") == []
    finally:
        context.close()
