"""The typed contracts the browser relies on: the answer payload's keys and the flag kinds,
spelled once on the server and handed to the page."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth.models import User
from django.test import Client

from clinic_app.answers import services
from clinic_app.answers.contracts import AnswerPayload, BasisPayload
from clinic_app.answers.selectors import answer_payload
from clinic_app.answers.streaming import CollectingSink, unrecorded_failure
from inference.types import FlagKind
from tests.conftest import OFF_TOPIC_QUESTION, ROOT

pytestmark = pytest.mark.django_db


def test_a_recorded_answer_and_an_unrecorded_failure_have_the_contracts_keys(
    clinician: User,
) -> None:
    answer = services.question_ask(user=clinician, text=OFF_TOPIC_QUESTION)
    services.answer_generate(answer_id=answer.pk, sink=CollectingSink())
    answer.refresh_from_db()
    recorded = answer_payload(answer)
    required = AnswerPayload.__required_keys__
    assert set(recorded) == required
    assert set(recorded["basis"]) == BasisPayload.__required_keys__
    assert {f["kind"] for f in recorded["flags"]} <= set(FlagKind)
    failure = unrecorded_failure(answer.pk, "The database is unreachable.")
    assert set(failure) == required | {"recorded"} and failure["recorded"] is False
    assert set(failure["basis"]) == BasisPayload.__required_keys__


def test_the_ask_page_receives_every_flag_kind_and_its_script_spells_none_itself(
    clinician: User,
) -> None:
    client = Client()
    client.force_login(clinician)
    html = client.get("/ask/").content.decode()
    found = re.search(r'<script id="flag-kinds" type="application/json">(.*?)</script>', html)
    assert found, "the page hands the flag kinds to its script"
    assert json.loads(found.group(1)) == {kind.name: kind.value for kind in FlagKind}
    script = (ROOT / "static" / "js" / "ask.js").read_text()
    spelled = [kind.value for kind in FlagKind if f'"{kind.value}"' in script]
    assert spelled == [], f"ask.js spells flag kinds itself: {spelled}"
