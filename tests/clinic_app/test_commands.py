"""Command-line entry points: `ask` prints through the page's service; `ingest` reports errors."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from clinic_app.models import Guideline, IndexVersion
from tests.conftest import ANSWERABLE_QUESTION, OFF_TOPIC_QUESTION

pytestmark = pytest.mark.django_db


def run_ask(question: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("ask", question, stdout=out, stderr=err)
    return int(exit_info.value.code or 0), out.getvalue(), err.getvalue()


def test_ask_prints_the_answer_then_its_sources_and_the_disclaimer() -> None:
    code, out, _ = run_ask(ANSWERABLE_QUESTION)
    assert code == 0
    assert (
        "[S1] 2023 ACC/AHA/ACCP/HRS Guideline for Diagnosis and Management of Atrial Fibrillation"
        in out
    )
    assert out.rstrip().endswith("Verify against the sources before acting.")


def test_ask_exits_2_with_the_reason_when_refusing() -> None:
    code, out, err = run_ask(OFF_TOPIC_QUESTION)
    assert code == 2
    assert "refused: No sufficiently relevant passage" in err
    assert "[S1]" not in out


def test_ask_json_prints_one_object_for_scripts() -> None:
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("ask", "--json", ANSWERABLE_QUESTION, stdout=out, stderr=err)
    assert exit_info.value.code == 0
    answer = json.loads(out.getvalue())  # nothing streamed before it
    assert answer["status"] == "complete" and isinstance(answer["id"], int)
    assert answer["text"] and answer["disclaimer"]
    assert answer["sources"] and all(
        s["guideline_key"].startswith("acc_aha_af_2023/") for s in answer["sources"][:1]
    )
    assert {"number", "cited", "score", "passage_id", "guideline", "section"} <= set(
        answer["sources"][0]
    )
    assert isinstance(answer["flags"], list) and isinstance(answer["evidence"], list)
    # A refusal is JSON too, with the reason, and exit status 2.
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("ask", "--json", OFF_TOPIC_QUESTION, stdout=out, stderr=err)
    assert exit_info.value.code == 2
    refused = json.loads(out.getvalue())
    assert refused["status"] == "refused" and refused["message"] and refused["sources"] == []


def test_ask_rejects_an_unknown_user() -> None:
    with pytest.raises(CommandError, match="no user 'nobody'"):
        call_command("ask", "anything", "--user", "nobody")


def test_ingest_adds_markdown_publishes_an_index_and_lists_bad_files(
    tmp_path: Path, settings, index_dir: Path
) -> None:  # type: ignore[no-untyped-def]
    # Publish into a copy, so the session's index stays in step with the rolled-back database.
    settings.INDEX_DIR = tmp_path / "index"
    shutil.copytree(index_dir, settings.INDEX_DIR)
    tmp_path = tmp_path / "docs"
    tmp_path.mkdir()
    (tmp_path / "sepsis_bundle.md").write_text(
        "# Sepsis bundle\n\n## Antibiotics\n\nGive broad-spectrum antibiotics within one hour of recognition.\n"
    )
    (tmp_path / "broken.md").write_bytes(b"\xff\xfe\x00garbage")
    before = IndexVersion.objects.get(live=True).version
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError, match="1 file"):
        call_command("ingest", str(tmp_path), "--organisation", "Test org", stdout=out, stderr=err)
    assert "documents: 1 added" in out.getvalue()
    assert "broken.md" in err.getvalue()
    # Not a terminal: the embedding progress is logged as lines with rate and ETA.
    assert "embedding passages:" in err.getvalue() and "(100%)" in err.getvalue()
    guideline = Guideline.objects.get(key="file/sepsis_bundle")
    assert guideline.organisation == "Test org" and guideline.passages.count() == 1
    assert IndexVersion.objects.get(live=True).version == before + 1


def test_setup_demo_shows_the_corpus_embedding_moving(
    tmp_path: Path, settings, index_dir: Path
) -> None:  # type: ignore[no-untyped-def]
    settings.INDEX_DIR = tmp_path / "index"
    shutil.copytree(index_dir, settings.INDEX_DIR)
    out, err = io.StringIO(), io.StringIO()
    call_command("setup_demo", "--guidelines", "timi_ua_nstemi_2000", stdout=out, stderr=err)
    assert "1 documents added" in out.getvalue()
    # Not a terminal: a line per 10% with the rate and the time left.
    assert "embedding demo passages:" in err.getvalue() and "(100%)" in err.getvalue()
    assert "passages/s, ETA" in err.getvalue()


def test_ask_follow_up_of_continues_the_users_own_conversation_only() -> None:
    def ask_json(*args: str) -> dict:  # type: ignore[type-arg]
        out = io.StringIO()
        with pytest.raises(SystemExit):
            call_command("ask", "--json", *args, stdout=out, stderr=io.StringIO())
        return json.loads(out.getvalue())  # type: ignore[no-any-return]

    first = ask_json(OFF_TOPIC_QUESTION)
    second = ask_json("--follow-up-of", str(first["id"]), "And who won in 2014?")
    assert second["follow_up_of"] == first["id"] and second["turn"] == 2
    assert second["thread_id"] == first["thread_id"]
    # Another clinician's answer cannot be continued.
    from django.contrib.auth.models import User

    other = User.objects.create_user("cli-second-clinician")
    other.groups.add(*User.objects.get(username="clinician").groups.all())
    with pytest.raises(CommandError, match="No such answer of yours"):
        call_command("ask", "--user", other.username, "--follow-up-of", str(second["id"]), "And?")
