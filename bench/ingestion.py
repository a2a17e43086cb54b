"""Benchmark: bulk import of a synthetic 20K-record Meditron guidelines JSONL through an upload job.

1. A deterministic JSONL collection in the Meditron guidelines format (``id, source, title,
   clean_text, raw_text, url, overview``): guideline-like Markdown (``#`` title, ``##``
   sections, paragraphs and bullet lists of clinical-sounding sentences from word lists, seeded
   RNG), ``--words MIN,MAX`` words per record: 60 to 240 by default (abstract-sized, about one
   passage each, so the 20K-record run takes well under an hour on 2 cores); ``--words
   150,1500`` gives guideline-sized records, about four passages each.
2. Candidate, in a child process on a scratch SQLite database and VAR_DIR (the embedded
   default: no DATABASE_URL, no Redis): migrate, a guideline admin, then the upload path
   without HTTP. ``uploads.ingest_job_create`` stages the file and, on commit, queues the
   ingest task on the in-process library pool, which runs ``uploads.ingest_job_run`` (the
   function a Celery worker runs): parse in the isolated child, chunk, store, embed, publish.
   Timed from the upload to the job's completion, which is watched by polling the job row
   (what the progress page does); the embedder is loaded first, as in a running worker. Peak
   RSS of the worker process, and of the parser child (sampled from ``/proc`` as it runs).
3. Baseline, same run, in a fresh child process: the app's embedder (``runtime.get_embedder``,
   same device, dtype and threads) encoding exactly the texts the candidate indexed (read back
   from the scratch database and built with ``embedding_text`` as ``index_publish`` does), 256
   per call. Records/s over the same records; target ratio >= 0.5 (the pipeline costs at most
   twice the embedding alone). Then, outside the timed part, where the pipeline's time goes:
   the isolated parse alone and chunking alone over the same file.

The baseline cannot be interleaved with the candidate (it encodes what the candidate stored),
so CPU pressure is logged around each child. Writes ``bench/results/ingestion.json``.

    .venv/bin/python bench/ingestion.py [--quick] [--records N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import cpu_pressure, result, write_report  # noqa: E402
from clinic_app.core.progress import Progress, progress_reporter  # noqa: E402

SEED = 6
DEFAULT_WORDS = (60, 240)
TARGET_RATIO = 0.5
EMBED_BATCH = 256  # what index_publish hands the embedder per call
POLL_S = 0.25  # job row polling, as the progress page does
PROC_SAMPLES = 5  # parser memory samples per poll
# Paths and services a developer's environment may point at real data: the children get none.
SCRUBBED_ENV = (
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "INDEX_DIR",
    "AUDIT_CHECKPOINT_FILE",
)

# ------------------------------------------------------------------------- synthetic corpus


def _words(text: str) -> tuple[str, ...]:
    """A word list written as one ``; ``-separated string (compact under the formatter)."""
    return tuple(text.split("; "))


SOURCES = ("cco", "cdc", "cma", "icrc", "nice", "pubmed", "spor", "who", "wikidoc")
CONDITIONS = _words(
    "atrial fibrillation; community-acquired pneumonia; type 2 diabetes; hypertension; "
    "chronic kidney disease; heart failure with reduced ejection fraction; asthma; "
    "chronic obstructive pulmonary disease; sepsis; venous thromboembolism; malaria; "
    "major depressive disorder; osteoporosis; urinary tract infection; migraine; "
    "acute coronary syndrome; tuberculosis; iron deficiency anaemia; hepatitis C; "
    "gestational diabetes; pre-eclampsia; bronchiolitis; cellulitis; gout; "
    "rheumatoid arthritis; stroke; epilepsy; Parkinson disease; psoriasis; "
    "acute kidney injury; delirium; hypothyroidism; obesity; HIV infection"
)
POPULATIONS = _words(
    "adults; older adults; children under five; adolescents; pregnant women; "
    "people with renal impairment; patients in primary care; hospitalised patients; "
    "people living with frailty; neonates; patients after surgery; outpatients; "
    "people with hepatic impairment; critically ill adults; women of reproductive age"
)
DRUGS = _words(
    "apixaban; amoxicillin; metformin; ramipril; bisoprolol; atorvastatin; salbutamol; "
    "budesonide; doxycycline; enoxaparin; furosemide; empagliflozin; nitrofurantoin; "
    "levothyroxine; sertraline; alendronic acid; colchicine; methotrexate; "
    "ceftriaxone; artemether-lumefantrine; insulin glargine; dapagliflozin; "
    "spironolactone; warfarin; paracetamol; ibuprofen; prednisolone"
)
DOSES = _words(
    "5 mg twice daily; 500 mg three times daily; 1 g once daily; 2.5 mg once daily; "
    "40 mg at night; 100 micrograms as needed; 1 mg/kg every 12 hours; "
    "10 mg once daily; 250 mg four times daily; a weight-based dose; "
    "the lowest effective dose"
)
SYMPTOMS = _words(
    "breathlessness; chest pain; fever above 38 degrees; new confusion; palpitations; "
    "reduced urine output; persistent cough; unexplained weight loss; syncope; "
    "oedema of both legs; haemoptysis; severe headache; abdominal pain; fatigue"
)
TESTS = _words(
    "a 12-lead ECG; serum creatinine and eGFR; HbA1c; a full blood count; "
    "C-reactive protein; a chest radiograph; echocardiography; urine culture; "
    "liver function tests; serum potassium; D-dimer; blood cultures; spirometry; "
    "thyroid-stimulating hormone; ambulatory blood pressure monitoring; lactate"
)
OUTCOMES = _words(
    "all-cause mortality; hospital admission; major bleeding; "
    "stroke or systemic embolism; treatment failure; length of stay; quality of life; "
    "recurrence at 12 months; symptom control; progression to end-stage disease; "
    "adverse drug reactions"
)
INTERVALS = _words(
    "within 24 hours; after 48 to 72 hours; every 3 months; at 6 weeks; annually; "
    "within 1 hour of recognition; before discharge; at each review; after 2 weeks"
)
GRADES = ("high", "moderate", "low", "very low")
STRENGTHS = ("strong", "conditional", "weak")
CLINICIANS = _words(
    "the treating clinician; a specialist team; the general practitioner; "
    "a pharmacist; the multidisciplinary team; a senior physician; the midwife; "
    "a nurse specialist"
)
ACTIONS = ("offered", "considered", "started", "continued", "reviewed", "avoided", "stopped")
THRESHOLDS = _words(
    "eGFR below 30 ml/min/1.73 m2; a CHA2DS2-VASc score of 2 or more; "
    "oxygen saturation below 92%; systolic blood pressure above 160 mmHg; "
    "HbA1c above 58 mmol/mol; a CURB-65 score of 3 or more; "
    "a heart rate above 110 beats per minute; a QRISK3 score of 10% or more; "
    "a platelet count below 50 x 10^9/l"
)
SECTIONS = _words(
    "Scope; Key recommendations; Background; Epidemiology; Diagnosis; Assessment; "
    "Initial management; Pharmacological treatment; Non-pharmacological treatment; "
    "Monitoring; Special populations; Referral criteria; Follow-up; Evidence summary; "
    "Implementation; Patient information"
)
TITLE_FORMS = (
    "{condition}: diagnosis and management",
    "Management of {condition} in {population}",
    "{condition} in {population}",
    "Recommendations for the treatment of {condition}",
    "Clinical guideline: {condition}",
    "Prevention and early detection of {condition}",
)
SENTENCES = (
    "In {population} with {condition}, {drug} {dose} should be {action} when {threshold}.",
    "Measure {test} {interval} in {population} receiving {drug}.",
    "{drug} reduced {outcome} compared with placebo ({grade}-certainty evidence).",
    "Refer {population} with {condition} and {symptom} to {clinician} {interval}.",
    "A {strength} recommendation is made for {test} before starting {drug}.",
    "Do not routinely offer {drug} to {population} unless {threshold}.",
    "Consider {drug} {dose} for {population} who cannot take {drug2}.",
    "Assess for {symptom} and {symptom2} at presentation and {interval}.",
    "The evidence for {outcome} in {population} was of {grade} certainty.",
    "{clinician_cap} should discuss the benefits and risks of {drug} with {population}.",
    "If {symptom} develops, stop {drug} and arrange {test} {interval}.",
    "Trials in {population} with {condition} reported fewer cases of {outcome} with {drug}.",
    "Review the need for {drug} {interval}, taking {test} into account.",
    "Offer {population} written information about {condition} and when to seek help.",
)


def _fill(rng: random.Random, template: str, condition: str, population: str) -> str:
    drug, drug2 = rng.sample(DRUGS, 2)
    symptom, symptom2 = rng.sample(SYMPTOMS, 2)
    clinician = rng.choice(CLINICIANS)
    text = template.format(
        condition=condition if rng.random() < 0.7 else rng.choice(CONDITIONS),
        population=population if rng.random() < 0.6 else rng.choice(POPULATIONS),
        drug=drug,
        drug2=drug2,
        dose=rng.choice(DOSES),
        action=rng.choice(ACTIONS),
        threshold=rng.choice(THRESHOLDS),
        test=rng.choice(TESTS),
        interval=rng.choice(INTERVALS),
        outcome=rng.choice(OUTCOMES),
        grade=rng.choice(GRADES),
        strength=rng.choice(STRENGTHS),
        symptom=symptom,
        symptom2=symptom2,
        clinician_cap=clinician[0].upper() + clinician[1:],
        clinician=clinician,
    )
    return text[0].upper() + text[1:]


def guideline_record(
    rng: random.Random, number: int, words: tuple[int, int] = DEFAULT_WORDS
) -> dict[str, str]:
    """One Meditron-format record of guideline-like Markdown, ``words`` (min, max) long."""
    condition, population = rng.choice(CONDITIONS), rng.choice(POPULATIONS)
    title = rng.choice(TITLE_FORMS).format(condition=condition, population=population)
    title = title[0].upper() + title[1:]
    target = rng.randint(*words)
    lines, written = [f"# {title}", ""], 0
    headings = list(SECTIONS)
    overview = ""
    while written < target:
        heading = headings.pop(0) if headings else f"Additional considerations {written}"
        lines += [f"## {heading}", ""]
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.25:
                items = [
                    "- " + _fill(rng, rng.choice(SENTENCES), condition, population)
                    for _ in range(rng.randint(3, 6))
                ]
                block = "\n".join(items)
            else:
                block = " ".join(
                    _fill(rng, rng.choice(SENTENCES), condition, population)
                    for _ in range(rng.randint(3, 7))
                )
                overview = overview or block.split(". ", 1)[0] + "."
            lines += [block, ""]
            written += len(block.split())
            if written >= target:
                break
    clean = "\n".join(lines).strip() + "\n"
    raw = "\n".join(line.lstrip("#").strip() for line in lines).strip()
    source = rng.choice(SOURCES)
    rid = f"{rng.getrandbits(96):024x}"
    url = (
        f"https://doi.org/10.5555/bench.{number}"
        if rng.random() < 0.3
        else f"https://guidelines.example.org/{source}/{rid}"
    )
    return {
        "id": rid,
        "source": source,
        "title": title,
        "clean_text": clean,
        "raw_text": raw,
        "url": url,
        "overview": overview,
    }


def write_collection(
    path: Path,
    records: int,
    seed: int = SEED,
    words: tuple[int, int] = DEFAULT_WORDS,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write ``records`` lines of JSONL to ``path``; returns its size and word counts."""
    rng = random.Random(seed)
    total = 0
    with open(path, "w", encoding="utf-8") as out:
        for number in range(records):
            record = guideline_record(rng, number, words)
            total += len(record["clean_text"].split())
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            if progress is not None:
                progress(number + 1, records)
    return {
        "records": records,
        "bytes": path.stat().st_size,
        "words_mean": round(total / records),
        "words_range": list(words),
        "seed": seed,
    }


# ------------------------------------------------------------------------------- children


def configure(work: Path) -> None:
    """Django on the scratch VAR_DIR, with the embedded defaults (SQLite there, no Redis)."""
    for name in SCRUBBED_ENV:
        os.environ.pop(name, None)
    (work / "var").mkdir(exist_ok=True)
    os.environ["VAR_DIR"] = str(work / "var")
    # The scratch VAR_DIR holds no var/secret_key: a key for this run only.
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinic_app.settings")
    import django

    django.setup()


def peak_mb() -> float:
    """Peak RSS of this process, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def sample_parser_peaks(peaks: dict[int, int]) -> None:
    """Note the peak RSS (``VmHWM``, kB) of this process's running isolated-parser children.

    Read from ``/proc`` while they run: ``RUSAGE_CHILDREN`` cannot be used, because Linux
    carries the parent's high-water mark across fork and exec into the child's figure.
    """
    for listing in Path("/proc/self/task").glob("*/children"):
        for pid in listing.read_text().split():
            try:
                if b"retrieval.isolated" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                    continue
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:  # it has just exited
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    peaks[int(pid)] = max(peaks.get(int(pid), 0), int(line.split()[1]))


def warm_embedder() -> tuple[dict[str, int], float]:
    """Load the app's embedder before timing (a worker has it loaded); returns threads, s."""
    from clinic_app.core import runtime

    threads = runtime.configure_threads()
    started = time.perf_counter()
    embedder = runtime.get_embedder()
    embedder.encode(["warm-up passage on anticoagulation in atrial fibrillation"])
    embedder.count_tokens("warm-up")
    return threads, time.perf_counter() - started


def candidate(work: Path, records: int) -> dict[str, Any]:
    """The upload job end to end, as the embedded deployment runs it."""
    from django.conf import settings
    from django.contrib.auth.models import Group, User
    from django.core.files.uploadedfile import UploadedFile
    from django.core.management import call_command

    from clinic_app.library import uploads
    from clinic_app.models import Guideline, IndexVersion, IngestJob, IngestStatus, Passage, Role

    call_command("migrate", verbosity=0)
    admin = User.objects.create_user("bench-admin", password=None)
    admin.groups.add(Group.objects.get_or_create(name=Role.GUIDELINE_ADMIN.value)[0])
    threads, load_s = warm_embedder()
    pressure_start = cpu_pressure()

    # 1. Upload: staging and the on-commit queueing onto the in-process library pool.
    data = work / "guidelines.jsonl"
    started = time.perf_counter()
    with open(data, "rb") as handle:
        upload = UploadedFile(
            handle,
            name="guidelines.jsonl",
            content_type="application/jsonl",
            size=data.stat().st_size,
        )
        job = uploads.ingest_job_create(user=admin, files=[upload], metadata={})
    staged_s = time.perf_counter() - started

    # 2. Watch the job as the progress page does, noting when each phase is first seen, and
    # show its progress: records parsed and stored, then passages indexed (the job's counts).
    phases: dict[str, float] = {}
    parser_kb: dict[int, int] = {}
    store = progress_reporter("ingestion job: store", unit="record", stream=sys.stderr)
    index: Progress | None = None  # made when indexing starts: its rate and ETA count from there
    while True:
        row = IngestJob.objects.values("status", "phase", "done", "total").get(pk=job.pk)
        phases.setdefault(row["phase"], round(time.perf_counter() - started, 2))
        if row["phase"] == "parsing":
            store(row["done"], records)  # the job's own total is only what was found so far
        elif row["phase"] in ("indexing", "complete"):
            store(records, records)  # every record stored (shown once)
            if index is None and row["phase"] == "indexing":
                index = progress_reporter("ingestion job: index", unit="passage", stream=sys.stderr)
            # Early in indexing, done == total are still the parse's counts, not passages.
            if index is not None and (row["phase"] == "complete" or row["done"] < row["total"]):
                index(row["done"], row["total"])
        if row["status"] in (IngestStatus.COMPLETE, IngestStatus.FAILED):
            break
        for _ in range(PROC_SAMPLES):  # /proc is cheaper to read than the database
            sample_parser_peaks(parser_kb)
            time.sleep(POLL_S / PROC_SAMPLES)
    wall_s = time.perf_counter() - started
    job.refresh_from_db()
    # Parse, chunk and store overlap (the parser streams into the store loop); indexing is
    # index_publish: reading passages back, embedding them, FAISS, BM25, saving.
    indexing = phases.get("indexing", wall_s)
    phase_s = {
        "upload": round(staged_s, 2),
        "parse_chunk_store": round(indexing - phases.get("parsing", staged_s), 2),
        "index_publish": round(wall_s - indexing, 2),
    }
    live = IndexVersion.objects.filter(live=True).first()
    return {
        "records": records,
        "wall_s": round(wall_s, 2),
        "staged_s": round(staged_s, 2),
        "phase_first_seen_s": phases,
        "phases_s": phase_s,
        "store_ms_per_record": round(phase_s["parse_chunk_store"] * 1000 / records, 1),
        "job_run_s": round((job.finished_at - job.started_at).total_seconds(), 2)
        if job.finished_at and job.started_at
        else None,
        "status": job.status,
        "message": job.message,
        "added": job.added,
        "duplicates": job.duplicates,
        "failed": job.failed,
        "failures": [i for i in job.items if i.get("outcome") == "failed"][:5],
        "guidelines": Guideline.objects.count(),
        "passages": Passage.objects.count(),
        "index_passages": live.passage_count if live else 0,
        "index_version": job.index_version,
        "embedder_load_s": round(load_s, 2),
        "threads": threads,
        "settings": {
            "EMBEDDER_DTYPE": settings.EMBEDDER_DTYPE,
            "CHUNK_MAX_TOKENS": settings.CHUNK_MAX_TOKENS,
            "INDEX_KIND": settings.INDEX_KIND,
            "PARSE_TIMEOUT_S": settings.PARSE_TIMEOUT_S,
            "PARSE_MEMORY_MB": settings.PARSE_MEMORY_MB,
            "CELERY_TASK_TIME_LIMIT": settings.CELERY_TASK_TIME_LIMIT,
        },
        "peak_rss_mb": round(peak_mb()),
        "parser_peak_rss_mb": round(max(parser_kb.values(), default=0) / 1024),
        "parser_processes": len(parser_kb),
        "cpu_pressure_avg10_pct": {"start": pressure_start, "end": cpu_pressure()},
    }


def indexed_texts() -> list[str]:
    """The texts ``index_publish`` embedded, in its order, built as ``_index_add`` builds them."""
    from clinic_app.models import Passage
    from retrieval.chunking import embedding_text

    queryset = (
        Passage.objects.filter(guideline__active=True, guideline__deleted_at__isnull=True)
        .select_related("guideline")
        .order_by("pk")
    )
    return [
        embedding_text(
            p.guideline.title, tuple(p.section.split(" > ")) if p.section else (), p.text
        )
        for p in queryset.iterator(chunk_size=EMBED_BATCH)
    ]


def baseline(work: Path, records: int) -> dict[str, Any]:
    """The bare embedder on the candidate's texts; then the parse and chunk costs, untimed."""
    from django.conf import settings

    from clinic_app.core import runtime

    threads, load_s = warm_embedder()
    embedder = runtime.get_embedder()
    started = time.perf_counter()
    texts = indexed_texts()
    read_s = time.perf_counter() - started
    pressure_start = cpu_pressure()
    encoded = progress_reporter("ingestion baseline: embed", unit="passage", stream=sys.stderr)
    encode_s = 0.0
    for i in range(0, len(texts), EMBED_BATCH):
        started = time.perf_counter()  # each call timed alone: progress is shown between them
        embedder.encode(texts[i : i + EMBED_BATCH])
        encode_s += time.perf_counter() - started
        encoded(min(i + EMBED_BATCH, len(texts)), len(texts))
    pressure_end = cpu_pressure()
    peak = peak_mb()  # before the breakdown below adds anything

    # Where the pipeline's time goes, over the same file: the isolated parse streaming its
    # documents (consumed at once), and chunking them with the embedder's tokenizer.
    from retrieval.chunking import chunk_sections
    from retrieval.isolated import parse_isolated

    chunk_s, chunks, docs = 0.0, 0, 0
    parser_kb: dict[int, int] = {}
    parsed = progress_reporter(
        "ingestion breakdown: parse and chunk", unit="record", stream=sys.stderr
    )
    started = time.perf_counter()
    for doc in parse_isolated(
        work / "guidelines.jsonl",
        source_name="guidelines.jsonl",
        timeout_s=settings.PARSE_TIMEOUT_S * 10,
        memory_mb=settings.PARSE_MEMORY_MB,
    ):
        assert not isinstance(doc, Exception), doc
        docs += 1
        if docs % 100 == 1:
            sample_parser_peaks(parser_kb)
            parsed(docs, records)
        chunked = time.perf_counter()
        chunks += len(
            chunk_sections(
                doc.sections,
                count_tokens=embedder.count_tokens,
                max_tokens=settings.CHUNK_MAX_TOKENS,
            )
        )
        chunk_s += time.perf_counter() - chunked
    parse_and_chunk_s = time.perf_counter() - started
    parsed(docs, records)
    return {
        "records": records,
        "passages": len(texts),
        "encode_s": round(encode_s, 2),
        "read_texts_s": round(read_s, 2),
        "embedder_load_s": round(load_s, 2),
        "threads": threads,
        "peak_rss_mb": round(peak),
        "cpu_pressure_avg10_pct": {"start": pressure_start, "end": pressure_end},
        "breakdown": {
            "documents": docs,
            "chunks": chunks,
            "parse_s": round(parse_and_chunk_s - chunk_s, 2),
            "chunk_s": round(chunk_s, 2),
            "parser_peak_rss_mb": round(max(parser_kb.values(), default=0) / 1024),
        },
    }


def run_child(role: str, work: Path, records: int) -> dict[str, Any]:
    out = work / f"{role}.json"
    command = [sys.executable, __file__, "--records", str(records), "--child", role, str(work)]
    subprocess.run([*command, str(out)], check=True, cwd=ROOT)
    return dict(json.loads(out.read_text()))


# ----------------------------------------------------------------------------------- main


def _word_range(value: str) -> tuple[int, int]:
    low, _, high = value.partition(",")
    try:
        bounds = (int(low), int(high))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX words, not {value!r}") from None
    if not 20 <= bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError(f"expected 20 <= MIN <= MAX, not {value!r}")
    return bounds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="2,000 records instead of 20,000")
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument(
        "--words",
        type=_word_range,
        default=DEFAULT_WORDS,
        help="MIN,MAX words per record (default %(default)s)",
    )
    parser.add_argument("--child", nargs=3, metavar=("ROLE", "WORK", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    n = 2_000 if args.quick else args.records
    if args.child:
        role, work, out = args.child
        configure(Path(work))
        report = (candidate if role == "candidate" else baseline)(Path(work), n)
        Path(out).write_text(json.dumps(report, default=str))
        return 0

    started = time.perf_counter()
    pressure_start = cpu_pressure()
    with tempfile.TemporaryDirectory(prefix="bench-ingestion-") as tmp:
        work = Path(tmp)
        generating = time.perf_counter()
        collection = write_collection(
            work / "guidelines.jsonl",
            n,
            words=args.words,
            progress=progress_reporter("ingestion corpus", unit="record", stream=sys.stderr),
        )
        collection["generate_s"] = round(time.perf_counter() - generating, 1)
        print(f"bench ingestion: {collection}", flush=True)
        cand = run_child("candidate", work, n)
        print(f"bench ingestion: candidate {cand['wall_s']} s, {cand['status']}", flush=True)
        base = run_child("baseline", work, n)

    cand_rate = n / cand["wall_s"]
    base_rate = n / base["encode_s"]
    scale = f"{n / 1000:g}k"
    complete = cand["added"] == n and cand["failed"] == 0 and cand["status"] == "complete"
    results = [
        result(
            f"ingest_records_per_s@{scale}",
            cand_rate,
            "records/s",
            baseline=f"bare app embedder (runtime.get_embedder) encoding the same "
            f"{base['passages']:,} passage texts, {EMBED_BATCH} per call, separate process, "
            "same run",
            baseline_value=base_rate,
            target=">= 0.5 x baseline (the pipeline costs at most twice the embedding alone)",
            meets=cand_rate / base_rate >= TARGET_RATIO,
            passages=cand["passages"],
            candidate_s=cand["wall_s"],
            baseline_s=base["encode_s"],
        ),
        result(
            f"ingest_records_added@{scale}",
            cand["added"],
            "records",
            target=f"== {n} added, 0 failed, job complete",
            meets=complete,
            failed=cand["failed"],
            duplicates=cand["duplicates"],
            status=cand["status"],
        ),
        result(
            f"ingest_worker_peak_rss_mb@{scale}",
            cand["peak_rss_mb"],
            "MB",
            baseline="peak RSS of the bare-embedder process above",
            baseline_value=base["peak_rss_mb"],
        ),
        result(
            f"ingest_parser_peak_rss_mb@{scale}",
            cand["parser_peak_rss_mb"],
            "MB",
            limit_mb=cand["settings"]["PARSE_MEMORY_MB"],
            note="isolated parser child, VmHWM sampled while it runs; the limit is its RLIMIT_AS",
        ),
    ]
    report = {
        "benchmark": "ingestion",
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cpus": os.cpu_count(),
            "threads": cand["threads"],
            "cpu_pressure_avg10_pct": {"start": pressure_start, "end": cpu_pressure()},
        },
        "collection": collection,
        "candidate": cand,
        "baseline": base,
        "results": results,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    write_report("ingestion", report)
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
