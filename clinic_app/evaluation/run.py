"""The pipeline both datasets share: asking and retrieving as a clinician's question would, the
evaluation user, the configuration and the recorded run, shared figures, scratch space."""

from __future__ import annotations

import contextlib
import hashlib
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.db import transaction

from clinic_app.answers import services
from clinic_app.answers.streaming import CollectingSink
from clinic_app.audit.record import audit_record
from clinic_app.core import runtime
from clinic_app.evaluation.datasets import DatasetError
from clinic_app.models import EvaluationRun, Guideline, IndexVersion, Passage, Role

EVALUATION_USERNAME = "evaluation"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class CitationRow:
    """A source the model was given, as the page lists it."""

    number: int
    key: str
    section: str
    cited: bool
    score: float


@dataclass
class Asked:
    """What the services produced for one question."""

    status: str
    text: str = ""
    message: str = ""
    seconds: float = 0.0
    top_score: float | None = None
    citations: list[CitationRow] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    # "What the guidelines say": the quoted sentences shown before the summary, joined.
    evidence: str = ""
    answer_id: int | None = None

    @property
    def cited_keys(self) -> list[str]:
        return [c.key for c in self.citations if c.cited]


@dataclass(frozen=True)
class Retrieved:
    """The live retriever's ranking: guideline key of each passage, best first."""

    keys: list[str]
    scores: list[float]
    index_version: int
    seconds: float

    def rank(self, wanted: set[str] | frozenset[str]) -> int | None:
        """1-based rank of the first passage from one of ``wanted``, or ``None``."""
        return next((i for i, key in enumerate(self.keys, start=1) if key in wanted), None)


def retrieval_ks() -> list[int]:
    """Cut-offs reported for retrieval: 1, 3, 5 and the configured top-k."""
    return sorted({1, 3, 5, settings.RETRIEVAL_TOP_K})


def question_retrieve(*, question: str, k: int, earlier: Sequence[str] = ()) -> Retrieved:
    """Search the live index as the answer service does (inactive guidelines dropped); a
    follow-up with the ``earlier`` questions of its conversation (``FOLLOW_UP_QUERY``)."""
    started = time.perf_counter()
    result = services.thread_search(question, list(earlier), k=k)
    keys = dict(
        Passage.objects.filter(
            pk__in=[h.passage_id for h in result.hits], guideline__active=True
        ).values_list("pk", "guideline__key")
    )
    hits = [h for h in result.hits if h.passage_id in keys]
    return Retrieved(
        keys=[keys[h.passage_id] for h in hits],
        scores=[round(h.score, 4) for h in hits],
        index_version=result.index_version,
        seconds=time.perf_counter() - started,
    )


def question_answer(*, user: User, text: str, follow_up_of: int | None = None) -> Asked:
    """Ask ``text`` as ``user`` through the page's services and read the finished answer;
    ``follow_up_of``: the answer (of ``user``) whose conversation it continues."""
    started = time.perf_counter()
    try:
        # One question at a time from a server-side batch: the per-user rate and concurrency
        # limits protect the live service from browsers, not from this loop.
        answer = services.question_ask(
            user=user, text=text, enforce_limits=False, follow_up_of=follow_up_of, via="evaluate"
        )
    except services.QuestionRejected as exc:
        return Asked(status="rejected", message=str(exc))
    sink = CollectingSink()
    answer = services.answer_generate(answer_id=answer.pk, sink=sink)
    seconds = time.perf_counter() - started
    payload: Mapping[str, Any] = sink.final or {}
    return Asked(
        status=str(answer.status),
        text=answer.text,
        message=answer.message,
        seconds=seconds,
        top_score=answer.top_score,
        citations=[
            CitationRow(
                number=c["number"],
                key=c["passage"]["guideline"]["key"],
                section=c["passage"]["section"],
                cited=c["cited"],
                score=c["score"],
            )
            for c in payload.get("citations", [])
        ],
        flags=[f["kind"] for f in answer.flags],
        evidence="\n".join(item["text"] for item in answer.evidence),
        answer_id=answer.pk,
    )


def evaluation_user(*, username: str = EVALUATION_USERNAME) -> User:
    """The account evaluation questions are asked as: a clinician without a usable password."""
    group, _ = Group.objects.get_or_create(name=Role.CLINICIAN.value)
    user, created = User.objects.get_or_create(username=username)
    if created:
        user.set_unusable_password()
        user.save()
    user.groups.add(group)
    return user


@contextlib.contextmanager
def backend_override(*, name: str | None) -> Iterator[None]:
    """Use generation backend ``name`` for the duration (``None``: the configured one)."""
    if not name or name == settings.INFERENCE_BACKEND:
        yield
        return
    previous = settings.INFERENCE_BACKEND
    settings.INFERENCE_BACKEND = name
    runtime.get_backend.cache_clear()
    try:
        yield
    finally:
        settings.INFERENCE_BACKEND = previous
        runtime.get_backend.cache_clear()


def run_config(*, generate: bool) -> dict[str, Any]:
    """The settings and engines a run's numbers depend on (loads the generator if used)."""
    live = IndexVersion.objects.filter(live=True).first()
    config: dict[str, Any] = {
        "index_version": live.version if live else None,
        "index_passages": live.passage_count if live else 0,
        "guidelines": Guideline.objects.filter(active=True).count(),
        "embedder": runtime.get_embedder().model_name,
        "embedder_dtype": runtime.get_embedder().dtype,
        "retrieval_top_k": settings.RETRIEVAL_TOP_K,
        "retrieval_min_score": settings.RETRIEVAL_MIN_SCORE,
        "retrieval_fusion": settings.RETRIEVAL_FUSION,
        "reranker": settings.RERANKER_MODEL or None,
        "chunk_max_tokens": settings.CHUNK_MAX_TOKENS,
        "answer_max_tokens": settings.ANSWER_MAX_TOKENS,
        "support_check": settings.SUPPORT_CHECK,
        "coverage_check": settings.COVERAGE_CHECK,
        "summary_coverage_check": settings.SUMMARY_COVERAGE_CHECK,
        "inference_backend": settings.INFERENCE_BACKEND,
        "generation": generate,
    }
    if generate:
        # Loaded up front, so the first question's time does not include loading the model.
        info = runtime.get_backend().info
        config |= {
            "backend": info.backend,
            "model": info.model,
            "model_version": info.version,
            "context_tokens": info.context_tokens,
            "prompt_profile": runtime.get_profile().name,
        }
    return config


def evaluation_record(*, report: dict[str, Any], actor: str) -> EvaluationRun:
    """Keep a finished report (``Report`` as a dict, e.g. read back from JSON) and audit it."""
    config, dataset = report["config"], report["dataset"]
    with transaction.atomic():
        run = EvaluationRun.objects.create(
            ran_at=report["when"],
            format=report["format"],
            dataset_name=Path(dataset["path"]).name,
            dataset_sha256=dataset["sha256"],
            evaluated=dataset["evaluated"],
            index_version=config.get("index_version"),
            backend=config.get("backend", ""),
            model_name=config.get("model", ""),
            model_version=config.get("model_version", ""),
            config=config,
            summary=report["summary"],
            items=report["items"],
            recorded_by=actor,
        )
        audit_record(
            action="evaluation.recorded",
            actor=actor,
            object_type="evaluation_run",
            object_id=run.pk,
            details={
                "dataset": run.dataset_name,
                "dataset_sha256": run.dataset_sha256,
                "format": run.format,
                "evaluated": run.evaluated,
                "index_version": run.index_version,
                "model": run.model_name,
                "model_version": run.model_version,
            },
        )
    return run


def dataset_info(*, path: Path, items: int, evaluated: int) -> dict[str, Any]:
    return {
        "path": str(path),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "items": items,
        "evaluated": evaluated,
    }


def ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def timing(seconds: Sequence[float]) -> dict[str, float | None]:
    """Median and 95th percentile (nearest rank) of per-question wall times, in seconds."""
    if not seconds:
        return {"median_s": None, "p95_s": None, "total_s": 0.0}
    ordered = sorted(seconds)
    p95 = ordered[max(0, -(-95 * len(ordered) // 100) - 1)]
    return {
        "median_s": round(statistics.median(ordered), 2),
        "p95_s": round(p95, 2),
        "total_s": round(sum(ordered), 1),
    }


def recall_at(ranks: Sequence[int | None], ks: Sequence[int]) -> dict[str, float | None]:
    out: dict[str, float | None] = {
        f"@{k}": ratio(sum(1 for r in ranks if r is not None and r <= k), len(ranks)) for k in ks
    }
    out["mrr"] = ratio(sum(1 / r for r in ranks if r), len(ranks))
    return out


# ----------------------------------------------------------------------- scratch space


def scratch_environment(*, root: Path, base: dict[str, str]) -> dict[str, str]:
    """Environment for a run whose database and index live only under ``root``.

    The Redis variables are removed: the scratch run keeps its cache and tasks in-process and
    cannot reach the live deployment's queue.
    """
    env = {k: v for k, v in base.items() if k not in ("REDIS_URL", "CELERY_BROKER_URL")}
    env["DATABASE_URL"] = f"sqlite:///{(root / 'eval.sqlite3').resolve()}"
    env["INDEX_DIR"] = str((root / "index").resolve())
    return env


def scratch_check(*, root: Path) -> None:
    """Refuse to run unless the database and index are both under ``root`` (never live data)."""
    root = root.resolve()
    database = Path(str(settings.DATABASES["default"].get("NAME", ""))).resolve()
    index = Path(settings.INDEX_DIR).resolve()
    for what, path in (("database", database), ("index", index)):
        if not path.is_relative_to(root):
            raise DatasetError(f"scratch run refused: the {what} {path} is not under {root}")
    if settings.REDIS_URL or settings.CELERY_BROKER_URL:
        raise DatasetError("scratch run refused: REDIS_URL / CELERY_BROKER_URL are set")
