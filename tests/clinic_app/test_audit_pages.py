"""The auditor's pages: filters, event detail, exports, chain verification; all audited."""

from __future__ import annotations

import csv
import html
import io
import itertools
import json
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client

from clinic_app.answers import services
from clinic_app.answers.streaming import CollectingSink
from clinic_app.audit import record as audit
from clinic_app.audit.chain import event_hash
from clinic_app.audit.export import csv_cell
from clinic_app.audit.triggers import audit_maintenance
from clinic_app.models import Answer, AnswerStatus, AuditEvent, Citation, Passage, Role
from tests.conftest import OFF_TOPIC_QUESTION

pytestmark = pytest.mark.django_db

AUDIT_PAGES = [
    ("get", "/audit/"),
    ("get", "/audit/events/1/"),
    ("get", "/audit/export.csv"),
    ("get", "/audit/export.jsonl"),
    ("post", "/audit/verify/"),
]


def client_for(username: str) -> Client:
    client = Client()
    client.force_login(User.objects.get(username=username))
    return client


@pytest.fixture
def auditor_client() -> Client:
    return client_for("auditor")


def body(response) -> str:  # type: ignore[no-untyped-def]
    if response.streaming:
        return b"".join(response.streaming_content).decode()
    return response.content.decode()


def page_text(response) -> str:  # type: ignore[no-untyped-def]
    """The page's HTML with entities decoded, so that expected text reads as typed."""
    return html.unescape(response.content.decode())


def listed_seqs(client: Client, query: str) -> list[int]:
    """The sequence numbers matching ``query`` (read from the JSONL export, which takes the
    page's filters), leaving out the auditor's own sign-in and reading events."""
    lines = body(client.get(f"/audit/export.jsonl?{query}")).splitlines()
    records = [json.loads(line) for line in lines]
    return [r["seq"] for r in records if r["actor"] != "auditor"]


def last_event(action: str) -> AuditEvent:
    event = AuditEvent.objects.filter(action=action).order_by("-seq").first()
    assert event is not None, f"no {action} event"
    return event


# ----------------------------------------------------------------------------- permissions


@pytest.mark.parametrize("username", ["clinician", "guideline-admin"])
@pytest.mark.parametrize(("method", "url"), AUDIT_PAGES)
def test_clinicians_and_guideline_admins_cannot_open_any_audit_page(
    username: str, method: str, url: str
) -> None:
    audit.audit_record(action="test.event", actor="x")  # so that /audit/events/1/ exists
    client = client_for(username)
    before = AuditEvent.objects.count()
    response = getattr(client, method)(url)
    assert response.status_code == 403
    assert "requires the Auditor role" in response.content.decode()
    # A refused request reads nothing, so it records no audit.* event either.
    assert not AuditEvent.objects.filter(action__startswith="audit.").exists()
    assert AuditEvent.objects.count() == before


def test_verify_without_a_csrf_token_is_refused() -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.get(username="auditor"))
    assert client.post("/audit/verify/").status_code == 403
    assert not AuditEvent.objects.filter(action="audit.verify").exists()


# --------------------------------------------------------------------------------- listing


def test_auditor_sees_events_newest_first_each_linking_to_its_detail(
    auditor_client: Client,
) -> None:
    first = audit.audit_record(action="test.first", actor="dr.a")
    second = audit.audit_record(action="test.second", actor="dr.b")
    page = auditor_client.get("/audit/").content.decode()
    assert page.index(f'/audit/events/{second.seq}/"') < page.index(f'/audit/events/{first.seq}/"')
    assert "Verify chain" in page and "/audit/export.csv" in page


def test_listing_is_paginated(auditor_client: Client) -> None:
    for i in range(105):
        audit.audit_record(action="test.bulk", actor="bulk", object_id=i)
    page1 = auditor_client.get("/audit/?action=test.bulk").content.decode()
    page2 = auditor_client.get("/audit/?action=test.bulk&page=2").content.decode()
    assert page1.count("<code>test.bulk</code>") == 100
    assert page2.count("<code>test.bulk</code>") == 5
    assert "Page 1 of 2" in page1 and "action=test.bulk&amp;page=2" in page1
    # Nonsense page numbers fall back to a real page instead of an error.
    assert auditor_client.get("/audit/?page=zzz").status_code == 200
    assert auditor_client.get("/audit/?page=99999").status_code == 200


def test_filters_by_user_action_outcome_and_free_text(auditor_client: Client) -> None:
    a = audit.audit_record(action="auth.login", actor="dr.alpha", source_ip="10.1.2.3")
    b = audit.audit_record(
        action="auth.login_failed", actor="dr.beta", outcome="failure", source_ip="10.9.9.9"
    )
    c = audit.audit_record(
        action="answer.refused",
        actor="dr.alpha",
        object_type="answer",
        object_id=987654321,
        outcome="refused",
        details={"reason": "no_evidence", "note": "Zebra-Marker"},
    )
    assert listed_seqs(auditor_client, "actor=dr.alpha") == [a.seq, c.seq]
    assert listed_seqs(auditor_client, "action=auth.login") == [a.seq]
    assert listed_seqs(auditor_client, "action=auth.") == [a.seq, b.seq]
    assert listed_seqs(auditor_client, "outcome=failure") == [b.seq]
    assert listed_seqs(auditor_client, "actor=dr.alpha&outcome=refused") == [c.seq]
    # Free text: source address, object id, and text inside the details (case-insensitive).
    assert listed_seqs(auditor_client, "q=10.9.9") == [b.seq]
    assert listed_seqs(auditor_client, "q=987654321") == [c.seq]
    assert listed_seqs(auditor_client, "q=zebra-marker") == [c.seq]
    page = auditor_client.get("/audit/?actor=dr.beta").content.decode()
    assert "<code>auth.login_failed</code>" in page and "<code>auth.login</code>" not in page


def test_date_range_is_in_utc_days_both_ends_included(auditor_client: Client) -> None:
    event = audit.audit_record(action="test.dated", actor="dr.date")
    day = event.at.astimezone(UTC).date()
    before, after = day - timedelta(days=1), day + timedelta(days=1)
    assert listed_seqs(auditor_client, f"action=test.dated&date_from={day}&date_to={day}") == [
        event.seq
    ]
    assert listed_seqs(auditor_client, f"action=test.dated&date_from={after}") == []
    assert listed_seqs(auditor_client, f"action=test.dated&date_to={before}") == []
    assert listed_seqs(auditor_client, "action=test.dated&date_to=9999-12-31") == [event.seq]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("date_from=2026-13-45", "Enter a valid date as YYYY-MM-DD"),
        ("date_to=yesterday", "Enter a valid date as YYYY-MM-DD"),
        ("date_from=2026-03-02&date_to=2026-03-01", "The 'From' date is after the 'To' date."),
        ("actor=%00x", "Null characters are not allowed."),
    ],
)
def test_bad_filters_show_a_clear_message_not_an_error(
    auditor_client: Client, query: str, message: str
) -> None:
    response = auditor_client.get(f"/audit/?{query}")
    assert response.status_code == 400
    assert message in page_text(response)
    event = last_event("audit.viewed")
    assert event.outcome == "failure" and event.actor == "auditor"
    export = auditor_client.get(f"/audit/export.csv?{query}")
    assert export.status_code == 400 and "Invalid filters" in export.content.decode()
    assert last_event("audit.exported").outcome == "failure"


def test_viewing_the_log_is_itself_audited_with_the_filters(auditor_client: Client) -> None:
    auditor_client.get("/audit/?action=auth.login&date_from=2026-01-01", REMOTE_ADDR="10.0.0.7")
    event = last_event("audit.viewed")
    assert (event.actor, event.outcome, event.source_ip) == ("auditor", "success", "10.0.0.7")
    assert event.details["filters"] == {"action": "auth.login", "from": "2026-01-01"}
    assert event.details["page"] == 1


# ---------------------------------------------------------------------------------- detail


def test_detail_shows_every_field_and_is_audited(auditor_client: Client) -> None:
    event = audit.audit_record(
        action="guideline.ingested",
        actor="admin",
        object_type="guideline",
        object_id="who/2024",
        source_ip="10.2.3.4",
        details={"passages": 12, "title": "Hypertension"},
    )
    page = page_text(auditor_client.get(f"/audit/events/{event.seq}/"))
    for text in (
        f"Audit event {event.seq}",
        "guideline.ingested",
        "who/2024",
        "10.2.3.4",
        event.prev_hash,
        event.hash,
        '"passages": 12',
    ):
        assert text in page
    viewed = last_event("audit.event_viewed")
    assert (viewed.actor, viewed.object_type, viewed.object_id) == (
        "auditor",
        "audit_event",
        str(event.seq),
    )
    assert auditor_client.get("/audit/events/999999/").status_code == 404


def test_detail_of_a_refusal_shows_what_the_clinician_saw(
    auditor_client: Client, clinician: User
) -> None:
    answer = services.question_ask(user=clinician, text=OFF_TOPIC_QUESTION)
    answer = services.answer_generate(answer_id=answer.pk, sink=CollectingSink())
    assert answer.status == AnswerStatus.REFUSED
    event = AuditEvent.objects.get(action="answer.refused", object_id=str(answer.pk))
    page = page_text(auditor_client.get(f"/audit/events/{event.seq}/"))
    assert "What the clinician saw" in page
    assert "Who won the football world cup in 2018?" in page
    assert "No sufficiently relevant passage" in page
    assert "not a substitute for clinical judgment" in page  # the disclaimer shown
    assert "the model was not prompted" in page
    assert f"Index version</dt><dd>{answer.index_version}" in page
    assert last_event("audit.event_viewed").details == {"answer_id": answer.pk}


def test_detail_of_an_answer_without_a_summary_shows_the_quotes_and_why(
    auditor_client: Client, clinician: User
) -> None:
    question = "Burns patient with atrial fibrillation: tetanus prophylaxis and skin graft timing?"
    answer = services.question_ask(user=clinician, text=question)
    answer = services.answer_generate(answer_id=answer.pk, sink=CollectingSink())
    assert answer.status == AnswerStatus.COMPLETE and answer.text == ""
    event = AuditEvent.objects.get(action="answer.complete", object_id=str(answer.pk))
    page = page_text(auditor_client.get(f"/audit/events/{event.seq}/"))
    assert "What the clinician saw" in page
    assert html.escape(answer.message) in page
    assert 'class="alert warning answer-message"' in page
    for item in answer.evidence:
        assert html.escape(item["text"]) in page
    assert '"summary": "skipped"' in page
    assert "the model was not prompted" in page


def test_detail_of_an_answer_shows_its_citations_passages_disclaimer_and_basis(
    auditor_client: Client, clinician: User
) -> None:
    # A finished answer as the service stores it (the model itself is exercised elsewhere).
    answer = services.question_ask(user=clinician, text="When is anticoagulation indicated?")
    passages = list(Passage.objects.select_related("guideline").order_by("pk")[:2])
    Answer.objects.filter(pk=answer.pk).update(
        status=AnswerStatus.COMPLETE,
        text="Anticoagulate when CHA2DS2-VASc is high [S1].",
        backend="transformers",
        model_name="qwen-test",
        model_version="rev-7",
        index_version=3,
        top_score=0.71,
        prompt_sha256="ab" * 32,
        flags=[{"kind": "uncited", "detail": "sentence without a citation"}],
    )
    Citation.objects.create(answer=answer, number=1, passage=passages[0], score=0.71, cited=True)
    Citation.objects.create(answer=answer, number=2, passage=passages[1], score=0.52)
    event = audit.audit_record(
        action="answer.complete", actor=clinician, object_type="answer", object_id=answer.pk
    )
    page = page_text(auditor_client.get(f"/audit/events/{event.seq}/"))
    for text in (
        "When is anticoagulation indicated?",
        "Anticoagulate when CHA2DS2-VASc is high [S1].",
        "[S1]</strong> " + passages[0].guideline.title,
        "[S2]</strong> " + passages[1].guideline.title,
        "Section: " + passages[0].section,
        "not a substitute for clinical judgment",
        "qwen-test",
        "rev-7",
        "ab" * 32,
        "0.71",
        "sentence without a citation",
        "Asked by clinician",
    ):
        assert text in page, text
    assert page.count('class="badge">cited<') == 1 and page.count("not cited") == 1
    assert passages[0].text in page and passages[1].text in page


# ---------------------------------------------------------------------------------- export


def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(auditor_client: Client) -> None:
    for bad in ("=HYPERLINK(1)", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"):
        assert csv_cell(bad) == "'" + bad
    assert csv_cell("dr.safe") == "dr.safe" and csv_cell("") == ""
    audit.audit_record(
        action="auth.login_failed",
        actor="=cmd|' /C calc'!A0",
        object_id="-1",
        outcome="failure",
        source_ip="@evil",
    )
    response = auditor_client.get("/audit/export.csv?outcome=failure")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(body(response))))
    assert len(rows) == 1
    row = rows[0]
    assert row["actor"] == "'=cmd|' /C calc'!A0"
    assert row["object_id"] == "'-1" and row["source_ip"] == "'@evil"
    assert row["hash"] and row["prev_hash"] and int(row["seq"]) > 0
    assert json.loads(row["details"]) == {}


def test_jsonl_export_has_every_field_and_rehashes_to_the_chain(auditor_client: Client) -> None:
    for i in range(3):
        audit.audit_record(action="test.export", actor="dr.x", details={"i": i, "ü": "ö"})
    response = auditor_client.get("/audit/export.jsonl")
    assert response.status_code == 200
    records = [json.loads(line) for line in body(response).splitlines()]
    assert records and [r["seq"] for r in records] == sorted(r["seq"] for r in records)
    for prev, record in itertools.pairwise(records):
        assert record["prev_hash"] == prev["hash"]
    for record in records:  # each line carries exactly what was hashed
        hashed = {k: v for k, v in record.items() if k not in ("prev_hash", "hash")}
        assert event_hash(record["prev_hash"], hashed) == record["hash"]
    assert records[-1]["details"] == {"i": 2, "ü": "ö"}
    assert int(response["X-Audit-Export-Rows"]) == len(records)


def test_exports_are_capped_with_a_clear_note(auditor_client: Client, settings) -> None:  # type: ignore[no-untyped-def]
    settings.AUDIT_EXPORT_MAX_ROWS = 3
    events = [audit.audit_record(action="test.cap", actor="dr.c") for _ in range(5)]
    response = auditor_client.get("/audit/export.jsonl?action=test.cap")
    lines = [json.loads(line) for line in body(response).splitlines()]
    assert [r["seq"] for r in lines[:-1]] == [e.seq for e in events[-3:]]  # the newest three
    assert lines[-1]["capped"] is True and "newest 3 of 5" in lines[-1]["note"]
    assert "capped" in response["X-Audit-Export-Capped"]
    rows = list(
        csv.reader(io.StringIO(body(auditor_client.get("/audit/export.csv?action=test.cap"))))
    )
    assert len(rows) == 1 + 3 + 1 and rows[-1][0].startswith("# export capped at 3 rows")
    assert (
        "Exports are capped at 3 rows"
        in auditor_client.get("/audit/?action=test.cap").content.decode()
    )
    assert last_event("audit.exported").details["capped"] is True


def test_exporting_is_audited_with_format_filters_and_row_count(auditor_client: Client) -> None:
    for _ in range(2):
        audit.audit_record(action="test.counted", actor="dr.n")
    response = auditor_client.get("/audit/export.csv?action=test.counted", REMOTE_ADDR="10.0.0.9")
    rows = list(csv.DictReader(io.StringIO(body(response))))
    event = last_event("audit.exported")
    assert (event.actor, event.source_ip, event.outcome) == ("auditor", "10.0.0.9", "success")
    assert event.details["format"] == "csv"
    assert event.details["filters"] == {"action": "test.counted"}
    assert event.details["rows"] == len(rows) == 2
    # The export's own event is not part of the export it records.
    assert all(int(r["seq"]) < event.seq for r in rows)


def test_under_asgi_the_export_streams_batches_instead_of_collecting_them(
    auditor: User,
) -> None:
    from asgiref.sync import async_to_sync
    from django.test import AsyncRequestFactory

    from clinic_app.audit.views import audit_export_jsonl

    for i in range(3):
        audit.audit_record(action="test.asgi", actor="dr.s", object_id=i)
    request = AsyncRequestFactory().get("/audit/export.jsonl?action=test.asgi")
    request.user = auditor
    response = audit_export_jsonl(request)
    assert response.is_async  # a sync iterator would be read whole before the first byte

    async def collect() -> bytes:
        return b"".join([part async for part in response])

    lines = async_to_sync(collect)().decode().splitlines()
    assert [json.loads(line)["object_id"] for line in lines] == ["0", "1", "2"]


# ---------------------------------------------------------------------------------- verify


def test_verify_button_reports_an_intact_chain_and_is_audited(
    auditor_client: Client, settings, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    settings.AUDIT_CHECKPOINT_FILE = str(tmp_path / "checkpoints.jsonl")
    audit.audit_record(action="test.before_verify", actor="dr.v")
    audit.audit_checkpoint()
    response = auditor_client.post("/audit/verify/", follow=True)
    assert response.redirect_chain[-1][0] == "/audit/"
    page = response.content.decode()
    event = last_event("audit.verify")
    assert event.outcome == "success" and event.details["ok"] is True
    assert event.details["checkpoints"] >= 1
    assert "Chain OK." in page and f"head at seq {event.details['last_seq']}" in page
    # The result is shown once, not on every later visit.
    assert "Chain OK." not in auditor_client.get("/audit/").content.decode()


def test_verify_button_names_the_first_tampered_event(
    auditor_client: Client, settings, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    settings.AUDIT_CHECKPOINT_FILE = str(tmp_path / "checkpoints.jsonl")
    target = audit.audit_record(action="test.target", actor="dr.t")
    audit.audit_record(action="test.after", actor="dr.t")
    with audit_maintenance(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE clinic_app_auditevent SET actor = 'someone' WHERE seq = %s", [target.seq]
        )
    page = auditor_client.post("/audit/verify/", follow=True).content.decode()
    assert f"Chain BROKEN at seq {target.seq}:" in page and "altered" in page
    event = last_event("audit.verify")
    assert event.outcome == "failure" and event.details["first_bad_seq"] == target.seq


def test_verify_reports_an_unreadable_checkpoint_file(
    auditor_client: Client, settings, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "checkpoints.jsonl"
    bad.write_text("not json\n")
    settings.AUDIT_CHECKPOINT_FILE = str(bad)
    page = auditor_client.post("/audit/verify/", follow=True).content.decode()
    assert "Chain BROKEN" in page and "checkpoints.jsonl:1" in page
    assert last_event("audit.verify").outcome == "failure"


# ------------------------------------------------------------------- other audited actions


def test_role_changes_are_recorded_from_either_side(clinician: User) -> None:
    user = User.objects.create_user("new-hire", password="x")
    auditors = Group.objects.get(name=Role.AUDITOR.value)
    clinicians = Group.objects.get(name=Role.CLINICIAN.value)
    user.groups.add(auditors, clinicians)
    added = last_event("user.roles_changed")
    assert (added.object_type, added.object_id) == ("user", str(user.pk))
    assert added.details == {
        "change": "post_add",
        "groups": ["auditor", "clinician"],
        "username": "new-hire",
    }
    auditors.user_set.remove(user)
    removed = last_event("user.roles_changed")
    assert removed.details["change"] == "post_remove" and removed.details["groups"] == ["auditor"]
    user.groups.clear()
    cleared = last_event("user.roles_changed")
    assert cleared.details == {
        "change": "post_clear",
        "groups": ["clinician"],
        "username": "new-hire",
    }
    count = AuditEvent.objects.filter(action="user.roles_changed").count()
    user.groups.add(clinicians)
    user.groups.add(clinicians)  # no change: nothing recorded
    assert AuditEvent.objects.filter(action="user.roles_changed").count() == count + 1


def test_a_clinician_opening_an_answer_is_recorded(clinician: User) -> None:
    answer = services.question_ask(user=clinician, text="What is the target INR on warfarin?")
    client = client_for("clinician")
    assert client.get(f"/api/answers/{answer.pk}/", REMOTE_ADDR="10.3.3.3").status_code == 200
    viewed = last_event("answer.viewed")
    assert (viewed.actor, viewed.object_id, viewed.outcome, viewed.source_ip) == (
        "clinician",
        str(answer.pk),
        "success",
        "10.3.3.3",
    )
    other = User.objects.create_user("other-clinician", password="x")
    other.groups.add(*clinician.groups.all())
    assert client_for("other-clinician").get(f"/api/answers/{answer.pk}/").status_code == 404
    denied = last_event("answer.viewed")
    assert (denied.actor, denied.outcome) == ("other-clinician", "failure")


def test_role_changes_made_in_the_django_admin_name_the_admin() -> None:
    admin_user = User.objects.create_superuser("site-admin", password="admin-pass-123")
    target = User.objects.create_user("promoted", password="x")
    auditors = Group.objects.get(name="auditor")
    client = Client()
    client.force_login(admin_user)
    page = client.get(f"/admin/auth/user/{target.pk}/change/")
    form = page.context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and k != "password"}
    data.update(
        {
            "username": "promoted",
            "groups": [auditors.pk],
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
            "is_active": "on",
        }
    )
    data.pop("last_login", None)
    data.pop("user_permissions", None)
    data.pop("date_joined", None)
    response = client.post(f"/admin/auth/user/{target.pk}/change/", data, REMOTE_ADDR="10.9.9.9")
    assert response.status_code == 302, response.content[:2000]
    changed = last_event("user.roles_changed")
    assert (changed.actor, changed.source_ip, changed.object_id) == (
        "site-admin",
        "10.9.9.9",
        str(target.pk),
    )
    assert changed.details["groups"] == ["auditor"]
    edit = last_event("admin.changed")
    assert (edit.actor, edit.object_type, edit.object_id) == ("site-admin", "user", str(target.pk))


def test_answers_cannot_be_edited_or_deleted_in_the_django_admin(clinician: User) -> None:
    answer = services.question_ask(user=clinician, text="What is the target INR on warfarin?")
    admin_user = User.objects.create_superuser("site-admin-2", password="admin-pass-123")
    client = Client()
    client.force_login(admin_user)
    assert client.get(f"/admin/clinic_app/answer/{answer.pk}/change/").status_code == 200
    assert client.post(f"/admin/clinic_app/answer/{answer.pk}/delete/").status_code == 403
    assert (
        client.post(f"/admin/clinic_app/answer/{answer.pk}/change/", {"text": "x"}).status_code
        == 403
    )
