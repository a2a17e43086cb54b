"""Every page checks its role; signing in and out is audited."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from clinic_app.models import AuditEvent, Passage

pytestmark = pytest.mark.django_db

PAGES = {"/ask/": "clinician", "/guidelines/": "guideline-admin", "/audit/": "auditor"}


def client_for(username: str | None) -> Client:
    client = Client()
    if username:
        client.force_login(User.objects.get(username=username))
    return client


@pytest.mark.parametrize("url", [*PAGES, "/api/answers/1/", "/api/passages/1/"])
def test_anonymous_users_are_sent_to_sign_in(url: str) -> None:
    response = client_for(None).get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


@pytest.mark.parametrize("username", ["clinician", "guideline-admin", "auditor"])
@pytest.mark.parametrize("url", list(PAGES))
def test_each_page_is_open_only_to_its_role(username: str, url: str) -> None:
    response = client_for(username).get(url)
    assert response.status_code == (200 if PAGES[url] == username else 403)


def test_clinician_cannot_open_django_admin() -> None:
    response = client_for("clinician").get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_ask_page_shows_the_disclaimer_and_question_box() -> None:
    html = client_for("clinician").get("/ask/").content.decode()
    assert "not a substitute for clinical judgment" in html
    assert 'id="question"' in html


def test_passage_api_gives_the_guideline_metadata() -> None:
    passage = Passage.objects.select_related("guideline").first()
    assert passage is not None
    data = client_for("clinician").get(f"/api/passages/{passage.pk}/").json()
    assert data["text"] == passage.text
    assert data["guideline"]["title"] == passage.guideline.title
    assert data["guideline"]["doi"]


def test_a_clinician_cannot_read_another_users_answer(clinician: User) -> None:
    from clinic_app.answers import services

    answer = services.question_ask(user=clinician, text="What is the target INR on warfarin?")
    other = User.objects.create_user("other-clinician", password="x")
    other.groups.add(*clinician.groups.all())
    assert client_for("other-clinician").get(f"/api/answers/{answer.pk}/").status_code == 404
    assert client_for("clinician").get(f"/api/answers/{answer.pk}/").status_code == 200


def test_sign_in_failure_and_success_and_sign_out_are_audited(demo_password: str) -> None:
    client = Client()
    assert client.post("/login/", {"username": "clinician", "password": "wrong"}).status_code == 200
    response = client.post("/login/", {"username": "clinician", "password": demo_password})
    assert response.status_code == 302
    client.post("/logout/")
    actions = list(AuditEvent.objects.order_by("id").values_list("action", "actor", "outcome"))
    assert ("auth.login_failed", "clinician", "failure") in actions
    assert ("auth.login", "clinician", "success") in actions
    assert ("auth.logout", "clinician", "success") in actions


def test_healthcheck_answers_without_signing_in() -> None:
    assert client_for(None).get("/healthz").json() == {"status": "ok"}
