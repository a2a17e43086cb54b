"""Guideline administration: upload jobs, lifecycle, index versions, upload hardening."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import textwrap
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from clinic_app.answers import services
from clinic_app.answers.streaming import CollectingSink
from clinic_app.asgi_limits import BodySizeLimit
from clinic_app.core import runtime
from clinic_app.library import index_versions, uploads
from clinic_app.models import (
    Answer,
    AnswerStatus,
    Citation,
    Guideline,
    IndexVersion,
    IngestJob,
    Passage,
)
from retrieval.errors import DocumentError
from retrieval.index import current_version
from retrieval.isolated import parse_isolated

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
UNIQUE = "Axolotl limb regeneration protocol"
UNIQUE_DOC = f"""# {UNIQUE}

## Dosing

Give the axolotl regeneration tonic at 3 drops per litre of tank water for 14 days after an
amputation, and keep the water at 16 to 18 degrees Celsius throughout the regeneration period.

## Monitoring

Photograph the blastema every third day and refer animals without visible regrowth by day 21.
"""


@pytest.fixture
def library_index(tmp_path: Path, settings, index_dir: Path) -> Iterator[Path]:  # type: ignore[no-untyped-def]
    """A private copy of the test index (vectors reused), so publishing touches nothing shared."""
    root = tmp_path / "index"
    shutil.copytree(index_dir, root, ignore=shutil.ignore_patterns("seed.json", "*.jsonl"))
    settings.INDEX_DIR = root
    settings.VAR_DIR = tmp_path / "var"
    runtime.get_retriever.cache_clear()
    yield root
    runtime.get_retriever.cache_clear()


@pytest.fixture
def admin() -> User:
    return User.objects.get(username="guideline-admin")


@pytest.fixture
def admin_client(admin: User) -> Client:
    client = Client()
    client.force_login(admin)
    return client


def upload(client: Client, files: list[tuple[str, bytes]], **metadata: Any) -> Any:
    """POST the upload form; returns the response (the job is queued after commit)."""
    data: dict[str, Any] = {"documents": [SimpleUploadedFile(n, b) for n, b in files]}
    data.update(metadata)
    return client.post("/guidelines/upload/", data, REMOTE_ADDR="10.2.2.2")


def run_job(client: Client, files: list[tuple[str, bytes]], **metadata: Any) -> dict[str, Any]:
    """Upload, run the job the way the worker does, and read the status the page polls."""
    response = upload(client, files, **metadata)
    assert response.status_code == 302, response.content[:3000]
    job = IngestJob.objects.order_by("-pk").first()
    assert job is not None and response["Location"] == f"/guidelines/jobs/{job.pk}/"
    uploads.ingest_job_run(job_id=job.pk)
    status = client.get(f"/guidelines/jobs/{job.pk}/status")
    assert status.status_code == 200
    return dict(status.json())


def top_guideline(question: str) -> Guideline:
    result = runtime.get_retriever().search(question, k=1)
    return Passage.objects.get(pk=result.hits[0].passage_id).guideline


# ----------------------------------------------------------------------------- upload jobs


def test_an_uploaded_file_is_ingested_with_its_metadata_and_becomes_searchable(
    admin_client: Client, library_index: Path, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    from prometheus_client import REGISTRY

    def jobs_complete() -> float:
        return REGISTRY.get_sample_value("clinic_ingest_jobs_total", {"state": "complete"}) or 0.0

    before, jobs_before = current_version(library_index), jobs_complete()
    with django_capture_on_commit_callbacks() as queued:
        status = run_job(
            admin_client,
            [("axolotl.md", UNIQUE_DOC.encode())],
            organisation="Amphibian Society",
            year="2025",
            jurisdiction="Mexico",
            review_date="2027-06-30",
            doi="10.1234/axo.2025",
        )
    assert queued, "the job is handed to a worker after the upload commits"
    assert status["final"] and status["status"] == "complete" and status["percent"] == 100
    assert (status["added"], status["duplicates"], status["failed"]) == (1, 0, 0)
    assert status["index_version"] == current_version(library_index) != before
    assert jobs_complete() == jobs_before + 1  # the operators' metric

    guideline = top_guideline("How often do I photograph the blastema of an axolotl?")
    assert guideline.title == UNIQUE
    assert (guideline.organisation, guideline.year, guideline.jurisdiction) == (
        "Amphibian Society",
        2025,
        "Mexico",
    )
    assert str(guideline.review_date) == "2027-06-30" and guideline.doi == "10.1234/axo.2025"
    assert guideline.source_name == "axolotl.md" and guideline.original_type == "markdown"

    # The quality view shows the original beside the extracted text and the chunks.
    page = admin_client.get(f"/guidelines/{guideline.pk}/").content.decode()
    assert "Photograph the blastema" in page and "Monitoring" in page
    assert page.count('class="chunk-meta"') == guideline.passages.count()
    original = admin_client.get(f"/guidelines/{guideline.pk}/original")
    assert original.status_code == 200
    assert b"".join(original.streaming_content) == UNIQUE_DOC.encode()
    assert original["Content-Security-Policy"].startswith("sandbox")


def test_identical_content_uploaded_again_is_recognised_and_not_indexed_twice(
    admin_client: Client, library_index: Path
) -> None:
    run_job(admin_client, [("first.md", UNIQUE_DOC.encode())])
    version = current_version(library_index)
    # Same content under another name, and with Windows line endings: still the same text.
    again = run_job(
        admin_client,
        [("copy.md", UNIQUE_DOC.encode()), ("crlf.md", UNIQUE_DOC.replace("\n", "\r\n").encode())],
    )
    assert (again["added"], again["duplicates"]) == (0, 2)
    assert Guideline.objects.filter(title=UNIQUE).count() == 1
    assert current_version(library_index) == version  # nothing new to index


def test_the_job_page_shows_the_saved_progress_after_a_reload(
    admin_client: Client, admin: User
) -> None:
    job = IngestJob.objects.create(
        created_by=admin,
        status="running",
        phase="parsing",
        total=40,
        done=10,
        added=9,
        failed=1,
        files=[{"name": "bulk.jsonl", "size": 1234, "sha256": "0" * 64, "path": "0000.upload"}],
        items=[{"file": "bulk.jsonl", "outcome": "failed", "reason": "bulk.jsonl line 7: bad"}],
    )
    page = admin_client.get(f"/guidelines/jobs/{job.pk}/").content.decode()
    assert "10 / 40" in page and "bulk.jsonl line 7: bad" in page
    status = admin_client.get(f"/guidelines/jobs/{job.pk}/status").json()
    assert (status["percent"], status["final"]) == (17, False)


def test_a_bulk_jsonl_import_keeps_good_records_and_lists_bad_lines(
    admin_client: Client, library_index: Path
) -> None:
    def record(i: int) -> str:
        return json.dumps(
            {
                "id": f"rec{i}",
                "source": "",
                "title": f"Synthetic guideline {i} on heron migration",
                "clean_text": f"# Heron {i}\n\nHerons of colony {i} migrate in week {i + 10}.",
                "raw_text": "",
                "url": f"https://example.org/heron/{i}",
                "overview": "",
            }
        )

    lines = [record(i) for i in range(5)]
    lines.insert(2, "{not json")
    lines.insert(4, json.dumps({"id": "empty", "title": "No text", "clean_text": ""}))
    status = run_job(
        admin_client, [("herons.jsonl", "\n".join(lines).encode())], organisation="Bird Board"
    )
    assert (status["added"], status["failed"]) == (5, 2)
    reasons = [i["reason"] for i in status["items"] if i["outcome"] == "failed"]
    assert any("line 3" in r and "invalid JSON" in r for r in reasons), reasons
    assert any("line 5" in r for r in reasons), reasons
    heron = Guideline.objects.get(key__endswith="rec3")
    assert heron.organisation == "Bird Board"  # the form fills what records lack


# ------------------------------------------------------------------------------- lifecycle


def ask(question: str, monkeypatch: pytest.MonkeyPatch, settings) -> Answer:  # type: ignore[no-untyped-def]
    """Ask through the real service (a short answer keeps the embedded model quick)."""
    settings.ANSWER_MAX_TOKENS = 16
    clinician = User.objects.get(username="clinician")
    answer = services.question_ask(user=clinician, text=question)
    return services.answer_generate(answer_id=answer.pk, sink=CollectingSink())


def cited_guidelines(answer: Answer) -> set[int]:
    return set(
        Citation.objects.filter(answer=answer).values_list("passage__guideline_id", flat=True)
    )


def test_a_deactivated_guideline_is_gone_from_new_answers_at_once(
    admin_client: Client,
    library_index: Path,
    monkeypatch: pytest.MonkeyPatch,
    settings,
    django_capture_on_commit_callbacks,
) -> None:  # type: ignore[no-untyped-def]
    run_job(admin_client, [("axolotl.md", UNIQUE_DOC.encode())])
    guideline = Guideline.objects.get(title=UNIQUE)
    question = "How many drops of regeneration tonic per litre for an axolotl after amputation?"
    first = ask(question, monkeypatch, settings)
    assert guideline.pk in cited_guidelines(first)

    with django_capture_on_commit_callbacks() as publish:
        response = admin_client.post(f"/guidelines/{guideline.pk}/deactivate/")
    assert response.status_code == 302 and publish, "a new index version is queued"
    # Before the new version is published the search results are already filtered.
    second = ask(question, monkeypatch, settings)
    assert guideline.pk not in cited_guidelines(second)
    assert second.status in (AnswerStatus.REFUSED, AnswerStatus.COMPLETE)
    # The earlier answer still shows exactly what it cited.
    assert guideline.pk in cited_guidelines(first)
    payload = admin_client.get(f"/guidelines/{guideline.pk}/").content.decode()
    assert "inactive" in payload

    # Publishing removes its passages from the index itself.
    index_versions.index_publish(actor="tests")
    ids = {h.passage_id for h in runtime.get_retriever().search(question, k=20).hits}
    assert not ids & set(guideline.passages.values_list("pk", flat=True))

    admin_client.post(f"/guidelines/{guideline.pk}/activate/")
    guideline.refresh_from_db()
    assert guideline.active


def test_a_superseded_guideline_gives_way_to_its_newer_version(
    admin_client: Client, library_index: Path, monkeypatch: pytest.MonkeyPatch, settings
) -> None:  # type: ignore[no-untyped-def]
    run_job(admin_client, [("axolotl-2019.md", UNIQUE_DOC.encode())], year="2019")
    newer_text = UNIQUE_DOC.replace("3 drops per litre", "5 drops per litre").replace(
        f"# {UNIQUE}", f"# {UNIQUE} (2025 update)"
    )
    run_job(admin_client, [("axolotl-2025.md", newer_text.encode())], year="2025")
    old = Guideline.objects.get(year=2019, title=UNIQUE)
    new = Guideline.objects.get(year=2025)
    question = "How many drops of axolotl regeneration tonic per litre of tank water?"
    before = ask(question, monkeypatch, settings)

    response = admin_client.post(f"/guidelines/{old.pk}/supersede/", {"by": new.pk})
    assert response.status_code == 302
    old.refresh_from_db()
    assert (old.state, old.superseded_by_id, old.active) == ("superseded", new.pk, False)
    after = ask(question, monkeypatch, settings)
    assert old.pk not in cited_guidelines(after) and new.pk in cited_guidelines(after)
    if old.pk in cited_guidelines(before):  # what the earlier answer cited is still there
        assert Citation.objects.filter(answer=before, passage__guideline=old).exists()

    # Nonsense is refused with a message, and changes nothing.
    response = admin_client.post(f"/guidelines/{new.pk}/supersede/", {"by": new.pk}, follow=True)
    assert "cannot supersede itself" in response.content.decode()
    response = admin_client.post(f"/guidelines/{old.pk}/activate/", follow=True)
    assert "superseded" in response.content.decode()


def test_deleting_keeps_what_answers_cited_and_removes_the_rest(
    admin_client: Client, library_index: Path, monkeypatch: pytest.MonkeyPatch, settings
) -> None:  # type: ignore[no-untyped-def]
    run_job(admin_client, [("axolotl.md", UNIQUE_DOC.encode())])
    cited = Guideline.objects.get(title=UNIQUE)
    answer = ask("Axolotl regeneration tonic dose per litre?", monkeypatch, settings)
    assert cited.pk in cited_guidelines(answer)
    admin_client.post(f"/guidelines/{cited.pk}/delete/")
    cited.refresh_from_db()
    assert cited.state == "deleted" and cited.passages.exists()  # kept for the answer
    assert admin_client.get(f"/guidelines/{cited.pk}/").status_code == 404
    assert cited.title not in admin_client.get("/guidelines/").content.decode()

    run_job(admin_client, [("other.md", b"# Newt care\n\nKeep newts cool and damp.\n")])
    uncited = Guideline.objects.get(title="Newt care")
    admin_client.post(f"/guidelines/{uncited.pk}/delete/")
    assert not Guideline.objects.filter(pk=uncited.pk).exists()
    assert not Passage.objects.filter(guideline_id=uncited.pk).exists()


def test_rollback_makes_the_previous_index_version_live_again(
    admin_client: Client, library_index: Path
) -> None:
    first = index_versions.index_publish(actor="tests")
    run_job(admin_client, [("axolotl.md", UNIQUE_DOC.encode())])
    second = current_version(library_index)
    assert second is not None and second > first
    assert top_guideline(UNIQUE).title == UNIQUE

    response = admin_client.post("/guidelines/index/rollback/", follow=True)
    assert f"Index v{first} is live again" in response.content.decode()
    assert current_version(library_index) == first
    assert IndexVersion.objects.get(live=True).version == first
    assert top_guideline(UNIQUE).title != UNIQUE  # the retriever serves the older version


WORKER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from retrieval.embedder import Embedder
    from retrieval.search import Retriever
    retriever = Retriever(Embedder("bundled"), Path(sys.argv[1]))
    print("ready", flush=True)
    for line in sys.stdin:
        result = retriever.search(line.strip(), k=3)
        print(json.dumps({"version": result.index_version,
                          "ids": [h.passage_id for h in result.hits]}), flush=True)
    """
)


def test_two_worker_processes_both_serve_a_newly_published_version(
    admin_client: Client, library_index: Path
) -> None:
    """Long-lived processes sharing the index folder switch on their next search, no restart."""
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(library_index)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"

        def search(worker: subprocess.Popen[str]) -> dict[str, Any]:
            assert worker.stdin is not None and worker.stdout is not None
            worker.stdin.write("axolotl blastema photograph regeneration\n")
            worker.stdin.flush()
            return dict(json.loads(worker.stdout.readline()))

        old = current_version(library_index)
        assert all(search(w)["version"] == old for w in workers)
        run_job(admin_client, [("axolotl.md", UNIQUE_DOC.encode())])
        new_ids = set(Guideline.objects.get(title=UNIQUE).passages.values_list("pk", flat=True))
        for worker in workers:
            served = search(worker)
            assert served["version"] == current_version(library_index) != old
            assert set(served["ids"]) & new_ids
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()


# ----------------------------------------------------------------------- upload hardening


def test_content_decides_the_type_not_the_extension(
    admin_client: Client, library_index: Path
) -> None:
    status = run_job(
        admin_client,
        [
            ("report.pdf", b"MZ\x90\x00\x03\x00\x00\x00 this is a Windows program"),
            ("photo.md", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200)),
            ("blank.txt", b" \n\n \t\n"),
        ],
    )
    reasons = {i["file"]: i["reason"] for i in status["items"] if i["outcome"] == "failed"}
    assert "not a PDF" in reasons["report.pdf"]
    assert "binary" in reasons["photo.md"]
    assert "empty" in reasons["blank.txt"]
    assert status["added"] == 0 and status["status"] == "complete"
    # A zero-byte file is refused by the form itself, with its message.
    response = upload(admin_client, [("empty.txt", b"")])
    assert response.status_code == 400 and "file is empty" in response.content.decode()


def test_an_uploaders_file_name_is_never_used_as_a_path(
    admin_client: Client, library_index: Path, settings
) -> None:  # type: ignore[no-untyped-def]
    status = run_job(admin_client, [("../../../../tmp/evil.md", b"# Evil\n\nText.\n")])
    assert status["files"][0]["name"] == "evil.md"
    var = Path(settings.VAR_DIR)
    assert not list(var.rglob("evil.md")) and not Path("/tmp/evil.md").exists()
    assert Guideline.objects.get(title="Evil").source_name == "evil.md"


def test_html_scripts_and_hidden_text_are_never_indexed(
    admin_client: Client, library_index: Path
) -> None:
    page = b"""<!doctype html><html><head><title>Heron handling</title>
    <script>var secret = "SCRIPTSECRET";</script><style>.x{color:red}</style></head>
    <body><nav>NAVSECRET menu</nav><main><h1>Heron handling</h1>
    <p>Hold herons gently by the body.</p><p hidden>HIDDENSECRET</p>
    <div style="display: none">CSSSECRET</div><p aria-hidden="true">ARIASECRET</p></main>
    <footer>FOOTERSECRET</footer></body></html>"""
    run_job(admin_client, [("herons.html", page)])
    guideline = Guideline.objects.get(title="Heron handling")
    text = " ".join(guideline.passages.values_list("text", flat=True)) + guideline.extracted_text
    assert "Hold herons gently" in text
    for secret in ("SCRIPT", "NAV", "HIDDEN", "CSS", "FOOTER", "color:red"):
        assert secret not in text, secret


def test_a_pdf_decompression_bomb_fails_its_own_job_not_the_worker(
    admin_client: Client, library_index: Path, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.PARSE_MEMORY_MB = 400
    squeeze = zlib.compressobj(9)
    zeros = b"0" * 10_000_000
    bomb = b"".join(squeeze.compress(zeros) for _ in range(60)) + squeeze.flush()
    # ~600 KB on disk, 600 MB inflated
    head = (
        b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
        b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
        b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 612 792]/Contents 4 0 R>>endobj\n"
    )
    stream = b"4 0 obj<</Length " + str(len(bomb)).encode() + b"/Filter/FlateDecode>>stream\n"
    body = head + stream + bomb + b"\nendstream endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
    status = run_job(
        admin_client, [("bomb.pdf", body), ("fine.md", b"# Fine\n\nA fine document.\n")]
    )
    failed = [i for i in status["items"] if i["outcome"] == "failed"]
    assert [i["file"] for i in failed] == ["bomb.pdf"]
    assert failed[0]["reason"]  # memory limit, pypdf's own limit, or no text: stated
    assert status["added"] == 1 and status["status"] == "complete"


def test_parsing_that_runs_too_long_is_stopped(tmp_path: Path) -> None:
    big = tmp_path / "big.md"
    big.write_text("".join(f"## Heading {i}\n\nParagraph {i} text.\n\n" for i in range(400_000)))
    with pytest.raises(DocumentError, match=r"longer than 0\.5 s"):
        list(parse_isolated(big, source_name="big.md", timeout_s=0.5))


def test_an_oversized_upload_is_refused_with_a_message_and_stores_nothing(
    admin_client: Client, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.UPLOAD_MAX_BYTES = 10_000
    jobs = IngestJob.objects.count()
    response = upload(admin_client, [("big.md", b"# Big\n\n" + b"x" * 2_000_000)])
    assert response.status_code == 413
    assert "larger than the limit" in response.content.decode()
    # Within the request limit but above the per-upload limit while staging.
    settings.UPLOAD_MAX_BYTES = 1_500
    response = upload(admin_client, [("medium.md", b"# Medium\n\n" + b"y" * 2_000)])
    assert response.status_code in (400, 413)
    assert IngestJob.objects.count() == jobs


def test_clinicians_cannot_upload(library_index: Path) -> None:
    client = Client()
    client.force_login(User.objects.get(username="clinician"))
    response = client.post("/guidelines/upload/", {"documents": SimpleUploadedFile("a.md", b"#")})
    assert response.status_code == 403
    assert not IngestJob.objects.exists()


class _App:
    """An ASGI app that reads the whole body, as Django does, and answers 200."""

    def __init__(self) -> None:
        self.read = 0
        self.called = False

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:  # type: ignore[type-arg]
        self.called = True
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # Django gives up on a disconnected request without answering
            self.read += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def _call(
    app: BodySizeLimit, headers: list[tuple[bytes, bytes]], chunks: list[bytes]
) -> list[dict]:  # type: ignore[type-arg]
    sent: list[dict] = []  # type: ignore[type-arg]
    pending = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]

    async def receive() -> dict:  # type: ignore[type-arg]
        return pending.pop(0)

    async def send(message: dict) -> None:  # type: ignore[type-arg]
        sent.append(message)

    scope = {"type": "http", "path": "/guidelines/upload/", "headers": headers}
    asyncio.run(app(scope, receive, send))
    return sent


def _fixed(limit: int) -> Any:
    """A ``limit_for`` that allows ``limit`` bytes to every request."""

    async def limit_for(scope: Any) -> int:
        return limit

    return limit_for


def test_the_asgi_edge_refuses_a_declared_oversized_body_without_reading_it() -> None:
    inner = _App()
    sent = _call(BodySizeLimit(inner, _fixed(1000)), [(b"content-length", b"5000000")], [b"x"])
    assert not inner.called and sent[0]["status"] == 413
    assert b"larger than the limit" in sent[1]["body"]


def test_the_asgi_edge_cuts_off_a_body_that_grows_past_the_limit() -> None:
    inner = _App()
    chunks = [b"x" * 400] * 10  # chunked: no length declared
    sent = _call(BodySizeLimit(inner, _fixed(1000)), [], chunks)
    assert inner.read < 1000 and sent[0]["status"] == 413

    inner = _App()
    sent = _call(BodySizeLimit(inner, _fixed(10_000)), [], chunks)
    assert inner.read == 4000 and sent[0]["status"] == 200
