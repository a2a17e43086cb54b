"""Checks on a finished answer: citations, uncited sentences, and content no source contained."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from inference.markers import CITATION_GROUP, marker_numbers, markers_remove
from inference.types import FlagKind
from retrieval.sentences import ANSWER, sentences_split

_URL = re.compile(r"(?:https?://|www\.)[^\s)\]>]+", re.IGNORECASE)
_TAG = re.compile(r"</?[a-zA-Z][^>]*>")
_LEADING_CITATIONS = re.compile(
    r"^((?:\s*\[\s*S\s*\d+(?:\s*[,;]\s*S?\s*\d+)*\s*\])+)\s*(.*)$", re.I | re.S
)


@dataclass(frozen=True)
class Flag:
    """Something the checks found; ``kind`` is machine-readable, ``detail`` for people."""

    kind: FlagKind
    detail: str


@dataclass(frozen=True)
class CitedSentence:
    """One sentence of an answer as written (citation markers included) and what it cites.

    ``cited`` holds 1-based source numbers: ``[S1]`` is ``passages[0]``.
    """

    text: str
    cited: tuple[int, ...]


@dataclass(frozen=True)
class CheckedAnswer:
    """The cleaned answer text, which sources it cites (1-based numbers) and what was flagged."""

    text: str
    cited: list[int]
    flags: list[Flag] = field(default_factory=list)


def split_sentences(text: str) -> list[str]:
    """The sentences of an answer, citation markers kept (:data:`retrieval.sentences.ANSWER`).

    A sentence ends at end punctuation followed by a capital, digit or bracket; blank lines and
    list items part paragraphs.
    """
    return sentences_split(text, ANSWER)


def cited_sentences(text: str) -> list[CitedSentence]:
    """Split an answer into sentences and the source numbers each one cites.

    A citation written after the full stop ("... daily. [S1] Next ...") belongs to the sentence
    before it, unless the answer opens with a citation: then it cites first throughout
    ("[S1] Offer X. [S2] Give Y.").
    """
    parts = split_sentences(text)
    cites_first = bool(parts) and _LEADING_CITATIONS.match(parts[0]) is not None
    sentences: list[list[str]] = []
    for part in parts:
        leading = None if cites_first else _LEADING_CITATIONS.match(part)
        if leading and sentences:
            sentences[-1].append(leading.group(1).strip())
            part = leading.group(2).strip()
        if part:
            sentences.append([part])
    result = []
    for pieces in sentences:
        sentence = " ".join(pieces)
        cited: list[int] = []
        for group in CITATION_GROUP.findall(sentence):
            for number in marker_numbers(group):
                if number not in cited:
                    cited.append(number)
        result.append(CitedSentence(sentence, tuple(cited)))
    return result


def check_answer(
    text: str, *, source_count: int, source_texts: Sequence[str] = ()
) -> CheckedAnswer:
    """Validate the citations in ``text`` against ``source_count`` given sources.

    1. Citations to sources that were not given are removed and flagged.
    2. URLs and HTML-like markup that no source contained are stripped and flagged.
    3. Sentences without any citation are flagged (not removed: the UI marks them).
    """
    flags: list[Flag] = []
    cited: list[int] = []

    def fix_group(match: re.Match[str]) -> str:
        numbers = marker_numbers(match.group(1))
        valid = [n for n in numbers if 1 <= n <= source_count]
        for n in numbers:
            if n not in valid:
                flags.append(
                    Flag(FlagKind.INVALID_CITATION, f"[S{n}] does not match any given source")
                )
        for n in valid:
            if n not in cited:
                cited.append(n)
        return "".join(f"[S{n}]" for n in valid)

    cleaned = CITATION_GROUP.sub(fix_group, text)
    corpus = "\n".join(source_texts)
    for pattern, kind in ((_URL, FlagKind.URL_REMOVED), (_TAG, FlagKind.MARKUP_REMOVED)):
        for found in set(pattern.findall(cleaned)):
            if found not in corpus:
                flags.append(Flag(kind, f"removed {found!r}: no source contains it"))
                cleaned = cleaned.replace(found, "")
    cleaned = re.sub(r"[ \t]+\n", "\n", cleaned).strip()
    # A marker after the full stop ("... daily. [S1]") cites the sentence before it.
    for sentence in cited_sentences(cleaned):
        if len(sentence.text) > 20 and not sentence.cited:
            flags.append(Flag(FlagKind.UNCITED_SENTENCE, sentence.text[:200]))
    return CheckedAnswer(text=cleaned, cited=cited, flags=flags)


def summary_withheld_reason(text: str, *, flagged_sentences: int, max_share: float) -> str:
    """Why a finished summary should be folded away behind the quoted evidence, or ``""``.

    A summary with no words (citation markers alone), or one in which more than ``max_share``
    of the sentences long enough to make a claim were flagged (unsupported by the cited source,
    or uncited), helps no one and may mislead: the page then shows the sources' own words and
    keeps the summary one click away.
    """
    words = re.findall(r"[^\W\d_]{2,}", markers_remove(text))
    if not words:
        return "the model's summary held no words, only citation markers"
    claims = [s for s in split_sentences(text) if len(s) > 20]
    flagged = min(flagged_sentences, len(claims))
    if claims and flagged / len(claims) > max_share:
        return (
            f"{flagged} of {len(claims)} sentences of the summary were not supported by the sources"
        )
    return ""
