"""One sentence splitter for the whole app, with a named rule per kind of text.

Every piece of the app that cuts text into sentences calls :func:`sentences_split` with one of
the presets below. The rules differ on purpose, because the texts and what is done with the
pieces differ:

- :data:`ANSWER`: a generated answer, read sentence by sentence by the citation and support
  checks. A sentence ends at ``.``, ``!`` or ``?`` only when the next one opens with a capital,
  a digit or a bracket, so a citation marker written after the full stop (``... daily. [S1]``)
  starts a piece of its own that the support check hands back to the sentence before it, and
  markers are always kept. Blank lines and list items (``- x``, ``* x``, ``1. x``, ``2) x``)
  start a new piece whatever precedes them.
- :data:`PASSAGE`: a retrieved passage, compared clause by clause with an answer. Any ``.!?``
  followed by white space ends a sentence, and so does every line break: headings, list items
  and table rows are units of their own.
- :data:`EVIDENCE`: a paragraph of a passage quoted verbatim to the reader, where a sentence cut
  in the middle reads badly. Abbreviations (e.g., i.e., vs., etc., approx., Dr.) and single
  capital initials ("J. Smith") never end a sentence, and the next sentence must open with a
  capital, a digit, a bracket or a quote.
- :data:`CLAUSE`: an answer read for its yes / no / maybe decision, which sits in the first
  clause ("No; the trial showed ..."): ``;`` and ``:`` end a piece too, and so do line breaks.

Pieces come back stripped of surrounding white space, empty ones left out, in reading order;
nothing inside a piece is changed. What a caller does with them afterwards (joining short
fragments, dropping short pieces) stays with that caller.

Plain Python: no Django and nothing from ``inference/`` (which imports this package).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

# Never the end of a sentence under ``SentenceRule(abbreviations=True)``, nor a single capital
# initial ("J. Smith").
ABBREVIATIONS = ("e.g.", "i.e.", "vs.", "etc.", "approx.", "Dr.")

# Where an answer's paragraphs part: a blank line, or a line break before a list item.
_PARAGRAPH = re.compile(r"\n\s*\n|\n(?=\s*[-*\d]+[.)]?\s)")


@dataclass(frozen=True)
class SentenceRule:
    """Where one sentence ends and the next begins.

    ``ends``: the characters that end a sentence when white space follows them.
    ``starts``: a regular-expression character class body (``"A-Z0-9"``) the next sentence must
    open with, or ``None`` for any character.
    ``abbreviations``: when true, never end after one of :data:`ABBREVIATIONS` or a single capital
    initial.
    ``newlines``: when true, every run of line breaks ends a sentence too.
    ``paragraphs``: when true, first cut at blank lines and before list items, then into
    sentences within each paragraph.
    """

    ends: str = ".!?"
    starts: str | None = None
    abbreviations: bool = False
    newlines: bool = False
    paragraphs: bool = False


ANSWER = SentenceRule(starts=r"A-Z0-9\[(", paragraphs=True)
"""A generated answer: citation markers kept with their sentences, paragraphs and list items
apart."""

PASSAGE = SentenceRule(newlines=True)
"""A retrieved passage: any end punctuation before white space, and every line break."""

EVIDENCE = SentenceRule(starts=r"A-Z0-9(\[\"'\u201c", abbreviations=True)
"""A paragraph quoted to the reader: no cut after an abbreviation or an initial."""

CLAUSE = SentenceRule(ends=".!?;:", newlines=True)
"""A decision read from the first clause: ``;`` and ``:`` end a piece too, as do line breaks."""


@functools.cache
def _boundary(rule: SentenceRule) -> re.Pattern[str]:
    """The compiled boundary of ``rule`` (built once per rule)."""
    pattern = ""
    if rule.abbreviations:
        pattern += "".join(rf"(?<!\b{re.escape(word)})" for word in ABBREVIATIONS)
        pattern += r"(?<!\b[A-Z]\.)"
    ends = re.sub(r"([\\\]^-])", r"\\\1", rule.ends)  # literal inside [...]
    pattern += rf"(?<=[{ends}])\s+"
    if rule.starts is not None:
        pattern += rf"(?=[{rule.starts}])"
    if rule.newlines:
        pattern += r"|\n+"
    return re.compile(pattern)


def sentences_split(text: str, rule: SentenceRule) -> list[str]:
    """The sentences of ``text`` under ``rule`` (one of the presets, usually), stripped, in order.

    >>> sentences_split("Offer apixaban [S1]. [S2] Review yearly.", ANSWER)
    ['Offer apixaban [S1].', '[S2] Review yearly.']
    >>> sentences_split("Use a DOAC, e.g. Apixaban. Review it.", EVIDENCE)
    ['Use a DOAC, e.g. Apixaban.', 'Review it.']
    >>> sentences_split("no; the trial was small", CLAUSE)
    ['no;', 'the trial was small']
    """
    boundary = _boundary(rule)
    paragraphs = _PARAGRAPH.split(text) if rule.paragraphs else [text]
    return [
        piece
        for paragraph in paragraphs
        for part in boundary.split(paragraph)
        if (piece := part.strip())
    ]
