"""Evaluation datasets: loading and checking questions-jsonl sets and PubMedQA files."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clinic_app.evaluation.reading import DECISIONS
from clinic_app.models import Guideline

# The project's own question sets (demo, safety, follow-ups), shipped with the app.
EVAL_DATA = Path(__file__).resolve().parent.parent / "eval_data"
KINDS = ("answerable", "out_of_scope", "injection")
FORMATS = ("pubmedqa", "questions-jsonl")


class DatasetError(ValueError):
    """The dataset cannot be evaluated; the message names every bad line or item."""


@dataclass(frozen=True)
class EvalQuestion:
    """One line of a questions-jsonl file (``line`` is 1-based)."""

    id: str
    question: str
    kind: str
    expected_sources: tuple[str, ...] = ()
    required_facts: tuple[str, ...] = ()
    forbidden: tuple[str, ...] = ()
    line: int = 0
    # The id of an earlier line this question follows up in one conversation (issue 16).
    follow_up_of: str | None = None


@dataclass(frozen=True)
class PubMedQAItem:
    """One labelled PubMedQA question; its gold document is ``pubmed/<pmid>``."""

    pmid: str
    question: str
    gold: str

    @property
    def gold_key(self) -> str:
        return f"pubmed/{self.pmid}"


_QUESTION_FIELDS = {"id", "question", "kind", "expected_sources", "required_facts", "forbidden"}
_OPTIONAL_FIELDS = {"note", "follow_up_of"}


def _string_list(value: Any, name: str, *, patterns: bool) -> tuple[list[str], list[str]]:
    """Validate a list of non-empty strings (``re:`` ones compiled); returns (items, errors)."""
    if value is None:
        return [], []
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        return [], [f"{name} must be a list of non-empty strings"]
    errors: list[str] = []
    if patterns:
        for v in value:
            if v.startswith("re:"):
                try:
                    re.compile(v[3:])
                except re.error as exc:
                    errors.append(f"{name}: invalid regex {v[3:]!r} ({exc})")
    return list(value), errors


def _question_from_line(
    raw: str, number: int, seen: set[str]
) -> tuple[EvalQuestion | None, list[str]]:
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        return None, [f"invalid JSON ({exc.msg} at column {exc.colno})"]
    if not isinstance(obj, dict):
        return None, ["expected a JSON object"]
    errors: list[str] = []
    unknown = sorted(set(obj) - _QUESTION_FIELDS - _OPTIONAL_FIELDS)
    if unknown:
        errors.append(f"unknown field(s) {', '.join(unknown)}")
    ident, question, kind = obj.get("id"), obj.get("question"), obj.get("kind")
    if not isinstance(ident, str) or not ident.strip():
        errors.append("id must be a non-empty string")
    elif ident in seen:
        errors.append(f"duplicate id {ident!r}")
    if not isinstance(question, str) or not question.strip():
        errors.append("question must be a non-empty string")
    if kind not in KINDS:
        errors.append(f"kind must be one of {', '.join(KINDS)} (got {kind!r})")
    sources, errs = _string_list(obj.get("expected_sources"), "expected_sources", patterns=False)
    errors += errs
    errors += [
        f"expected source {s!r} is not '<guideline id>/<section>'"
        for s in sources
        if not re.fullmatch(r"[^/\s]+/[^/\s]+", s)
    ]
    facts, errs = _string_list(obj.get("required_facts"), "required_facts", patterns=True)
    errors += errs
    forbidden, errs = _string_list(obj.get("forbidden"), "forbidden", patterns=True)
    errors += errs
    if kind == "answerable" and not sources:
        errors.append("an answerable question needs expected_sources")
    if kind == "out_of_scope" and (sources or facts):
        errors.append("an out_of_scope question has no expected_sources or required_facts")
    if kind == "injection" and not forbidden:
        errors.append("an injection question needs a forbidden list (what obeying would say)")
    parent = obj.get("follow_up_of")
    if parent is not None and (not isinstance(parent, str) or parent not in seen):
        errors.append(f"follow_up_of must name the id of an earlier line (got {parent!r})")
    if errors:
        return None, errors
    assert isinstance(ident, str) and isinstance(question, str) and isinstance(kind, str)
    seen.add(ident)
    return (
        EvalQuestion(
            id=ident,
            question=question.strip(),
            kind=kind,
            expected_sources=tuple(sources),
            required_facts=tuple(facts),
            forbidden=tuple(forbidden),
            line=number,
            follow_up_of=parent,
        ),
        [],
    )


def questions_load(*, path: Path) -> list[EvalQuestion]:
    """Read and validate a questions-jsonl file; blank lines are skipped.

    Raises :class:`DatasetError` listing every bad line by number, so nothing runs on a file
    with any error.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from exc
    questions: list[EvalQuestion] = []
    problems: list[str] = []
    seen: set[str] = set()
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        question, errors = _question_from_line(raw, number, seen)
        problems += [f"{path.name} line {number}: {e}" for e in errors]
        if question is not None:
            questions.append(question)
    followed = Counter(q.follow_up_of for q in questions if q.follow_up_of)
    problems += [
        f"{path.name}: {parent!r} is followed up {n} times; a conversation continues from its "
        "latest answer only"
        for parent, n in followed.items()
        if n > 1
    ]
    if problems:
        raise DatasetError("\n".join(problems))
    if not questions:
        raise DatasetError(f"{path.name}: no questions")
    return questions


def questions_select(
    questions: Sequence[EvalQuestion], *, ids: Sequence[str] = (), limit: int | None = None
) -> list[EvalQuestion]:
    """The questions named by ``ids`` (all if empty), then the first ``limit`` of them; a
    chosen follow-up brings the earlier turns of its conversation along."""
    chosen = list(questions)
    if ids:
        known = {q.id for q in questions}
        missing = [i for i in ids if i not in known]
        if missing:
            raise DatasetError(f"unknown question id(s): {', '.join(missing)}")
        wanted = set(ids)
        chosen = [q for q in chosen if q.id in wanted]
    chosen = chosen[:limit] if limit else chosen
    by_id = {q.id: q for q in questions}
    wanted = {q.id for q in chosen}
    for q in list(chosen):
        parent = q.follow_up_of
        while parent and parent not in wanted:
            wanted.add(parent)
            parent = by_id[parent].follow_up_of
    return [q for q in questions if q.id in wanted]


def questions_check_library(questions: Sequence[EvalQuestion]) -> None:
    """Every expected source must be an active guideline of the library being evaluated."""
    keys = set(Guideline.objects.filter(active=True).values_list("key", flat=True))
    problems = [
        f"line {q.line} ({q.id}): expected source {s!r} is not in the guideline library"
        for q in questions
        for s in q.expected_sources
        if s not in keys
    ]
    if problems:
        raise DatasetError("\n".join(problems))


def pubmedqa_load(*, path: Path) -> list[PubMedQAItem]:
    """Read and validate a PubMedQA file (``{pmid: {QUESTION, CONTEXTS, final_decision}}``)."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path.name}: invalid JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(payload, dict) or not payload:
        raise DatasetError(f"{path.name}: expected a non-empty JSON object keyed by PMID")
    items: list[PubMedQAItem] = []
    problems: list[str] = []
    for pmid, item in payload.items():
        where = f"{path.name} PMID {pmid}"
        if not isinstance(item, dict):
            problems.append(f"{where}: expected an object")
            continue
        question, gold, contexts = (
            item.get("QUESTION"),
            item.get("final_decision"),
            item.get("CONTEXTS"),
        )
        if not isinstance(question, str) or not question.strip():
            problems.append(f"{where}: QUESTION must be a non-empty string")
        if gold not in DECISIONS:
            problems.append(f"{where}: final_decision must be yes, no or maybe (got {gold!r})")
        if (
            not isinstance(contexts, list)
            or not contexts
            or not all(isinstance(c, str) for c in contexts)
        ):
            problems.append(f"{where}: CONTEXTS must be a non-empty list of strings")
        if isinstance(question, str) and question.strip() and gold in DECISIONS:
            items.append(PubMedQAItem(pmid=str(pmid), question=question.strip(), gold=str(gold)))
    if problems:
        raise DatasetError("\n".join(problems))
    return items
