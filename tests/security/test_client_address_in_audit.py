"""Behind a trusted reverse proxy, every audited request records the client's address, never the
proxy's: the answer API, the auditor's pages and the guideline admin's actions all read it
through ``core.client_ip`` (X-Forwarded-For believed only from ``TRUSTED_PROXIES``)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from clinic_app.models import AuditEvent, Guideline

PROXY, CLIENT, SPOOFED = "10.0.0.2", "198.51.100.7", "203.0.113.66"


def client_for(username: str) -> Client:
    client = Client()
    client.force_login(User.objects.get(username=username))
    return client


def last(action: str) -> AuditEvent:
    event = AuditEvent.objects.filter(action=action).order_by("-seq").first()
    assert event is not None, f"no {action} event"
    return event


@pytest.mark.django_db
def test_each_audited_route_records_the_client_behind_the_trusted_proxy(settings) -> None:  # type: ignore[no-untyped-def]
    settings.TRUSTED_PROXIES = [PROXY]
    via_proxy = {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": CLIENT}

    client_for("clinician").get("/api/answers/999999/", **via_proxy)
    assert last("answer.viewed").source_ip == CLIENT

    client_for("auditor").get("/audit/", **via_proxy)
    assert last("audit.viewed").source_ip == CLIENT

    guideline = Guideline.objects.filter(active=True).first()
    assert guideline is not None
    client_for("guideline-admin").post(f"/guidelines/{guideline.pk}/deactivate/", **via_proxy)
    assert last("guideline.deactivated").source_ip == CLIENT


@pytest.mark.django_db
def test_a_client_that_is_not_a_trusted_proxy_cannot_choose_its_address(settings) -> None:  # type: ignore[no-untyped-def]
    settings.TRUSTED_PROXIES = [PROXY]
    client_for("auditor").get("/audit/", REMOTE_ADDR=CLIENT, HTTP_X_FORWARDED_FOR=SPOOFED)
    assert last("audit.viewed").source_ip == CLIENT
