"""Reading answers without Django: yes / no / maybe decisions, facts found, empty answers, prompt
leaks."""

from __future__ import annotations

import re
from dataclasses import dataclass

from inference.markers import markers_remove
from inference.prompts import ANSWER_CUE, INSTRUCTIONS, MEDITRON_EXAMPLE_ANSWER
from retrieval.sentences import CLAUSE, sentences_split

DECISIONS = ("yes", "no", "maybe")


_EXPLICIT = re.compile(
    r"\b(?:(?:short|final|overall|my)\s+)?(?:answer|decision|conclusion|verdict)"
    r"\s*(?:is|would be|:|-)\s*[\"']?(yes|maybe|no(?!\s+[a-z]))\b"
)
# "Yes, ...", "In short, no.", "Based on the sources, maybe ..." (a short lead-in clause).
_LEADING = re.compile(
    r"^(?:(?:based on|according to|from|in|given)\b[^,.;:]{0,80},\s*)?"
    r"(yes|no|maybe|perhaps|possibly)\b(.?)"
)
_BOTH = re.compile(r"^(?:both\s+)?yes\s+(?:and|or)\s+no\b")
_ABSTAIN = re.compile(
    r"\b(?:do|does|did)\s+not\s+(?:answer|address|provide|contain|mention|discuss|include|cover|"
    r"specify|say)\b|\b(?:no|not enough|insufficient)\s+information\b|\bcan ?not\s+answer\b|"
    r"\bunable to answer\b|\bnot\s+(?:mentioned|addressed|discussed|covered|specified)\b|"
    r"\bi\s+do\s+not\s+know\b"
)
_HEDGE = re.compile(
    r"\bunclear\b|\bnot\s+(?:entirely\s+|yet\s+|fully\s+)?(?:clear|certain|known|established|"
    r"definitive|conclusive)\b|\buncertain(?:ty)?\b|\binconclusive\b|\bcontroversial\b|"
    r"\bconflicting\b|\bmixed\s+(?:results|evidence|findings|data)\b|\bmay\s+or\s+may\s+not\b|"
    r"\bcan\s*not\s+be\s+(?:determined|concluded|ruled\s+out|excluded)\b|"
    r"\b(?:insufficient|limited)\s+(?:evidence|data)\b|\bremains\s+to\s+be\b|\bmaybe\b|"
    r"\bperhaps\b|\bpossibly\b|\bpartially\b|\bpartly\b|\bto\s+(?:some|a\s+certain)\s+extent\b"
)
_NOT_NEGATION = re.compile(r"\bnot\s+only\b|\bno\s+doubt\b|\bnot\s+uncommon\b")
_NEGATION = re.compile(
    r"\bnot\b|n't\b|\bno\b|\bnever\b|\bneither\b|\bnor\b|\bnone\b|\bcannot\b|\bfail(?:s|ed)?\s+to\b|"
    r"\black(?:s|ed)?\b|\bunlikely\b|\bnon-?significant(?:ly)?\b|\binsignificant\b"
)


@dataclass(frozen=True)
class DecisionReading:
    """The decision read from an answer and the rule that read it (for the report)."""

    decision: str | None
    rule: str


def _normalise(text: str) -> str:
    """Lower case, citation markers and markdown removed, one space between words."""
    text = markers_remove(text or "", loose=True)
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    text = re.sub(r"[*_`#>|]+", " ", text)
    return re.sub(r"[ \t]+", " ", text).strip().lower()


def decision_read(text: str) -> DecisionReading:
    """Read a yes / no / maybe decision from a free-text answer, and say how it was read.

    Rules, first match wins:

    1. ``explicit``: "the answer is no", "Decision: maybe".
    2. ``leading``: the answer opens with yes / no / maybe ("Yes, ...", "In short, no.");
       "yes and no" is maybe; a bare "No" opening a noun phrase ("No evidence shows ...") is
       left to the later rules.
    3. ``abstain``: the answer says the sources do not answer it: no decision (``None``).
    4. ``hedge``: the first sentence is uncertain ("It is unclear whether ..."): maybe.
    5. ``negation``: the first sentence is negated ("X did not reduce ..."): no.
    6. ``affirmative``: the first sentence states a finding without negation or hedge: yes.
    7. ``none``: nothing to read (empty text, or a question back): ``None``.
    """
    normal = _normalise(text)
    if not normal:
        return DecisionReading(None, "none")
    # 1. An explicitly labelled decision anywhere.
    explicit = _EXPLICIT.search(normal)
    if explicit:
        return DecisionReading(explicit.group(1), "explicit")
    # 2. A leading decision word.
    if _BOTH.match(normal):
        return DecisionReading("maybe", "leading")
    leading = _LEADING.match(normal)
    if leading:
        word, after = leading.group(1), leading.group(2)
        if word == "yes":
            return DecisionReading("yes", "leading")
        if word in ("maybe", "perhaps", "possibly"):
            return DecisionReading("maybe", "leading")
        if after in ("", ",", ".", ";", ":", "!", "-", "\u2014", "\u2013"):
            return DecisionReading("no", "leading")
    first = next(iter(sentences_split(normal, CLAUSE)), "")  # the first clause
    # 3. The answer says there is nothing to answer from.
    if _ABSTAIN.search(first):
        return DecisionReading(None, "abstain")
    # 4.-6. The polarity of the first sentence.
    if _HEDGE.search(first):
        return DecisionReading("maybe", "hedge")
    if _NEGATION.search(_NOT_NEGATION.sub(" ", first)):
        return DecisionReading("no", "negation")
    if first.rstrip().endswith("?") or len(re.findall(r"[a-z]+", first)) < 3:
        return DecisionReading(None, "none")
    return DecisionReading("yes", "affirmative")


def decision_parse(text: str) -> str | None:
    """``"yes"``, ``"no"``, ``"maybe"`` or ``None`` (no decision) for a free-text answer.

    See :func:`decision_read` for the rules.
    """
    return decision_read(text).decision


# ===================================================================== answer checks


def answer_words(text: str) -> int:
    """Words in an answer, citation markers and bare numbers aside."""
    return len(re.findall(r"[^\W\d_]{2,}", markers_remove(text, loose=True)))


def answer_is_empty(text: str) -> bool:
    """Whether a completed answer says nothing at all: citation markers alone, or nothing."""
    return answer_words(text) == 0


def fact_found(fact: str, text: str) -> bool:
    """Whether ``text`` states ``fact``: a case-insensitive substring, or ``re:<regex>``."""
    if fact.startswith("re:"):
        return re.search(fact[3:], text, re.IGNORECASE) is not None
    return fact.casefold() in text.casefold()


_LEAK_WINDOW = 6
# What the instructions tell the model to say when the sources do not answer: saying it is
# compliance, not a leak.
_SANCTIONED = (
    "If the sources do not answer the question, say plainly that the provided guidelines do not "
    "answer it."
)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", markers_remove(text, loose=True).lower())


def _leak_fragments() -> frozenset[str]:
    """Every run of :data:`_LEAK_WINDOW` words of the fixed prompt text, sanctioned ones aside."""
    sanctioned = " ".join(_words(_SANCTIONED))
    fragments: set[str] = set()
    for source in (INSTRUCTIONS, ANSWER_CUE, MEDITRON_EXAMPLE_ANSWER):
        words = _words(source)
        for i in range(len(words) - _LEAK_WINDOW + 1):
            window = " ".join(words[i : i + _LEAK_WINDOW])
            if window not in sanctioned:
                fragments.add(window)
    return frozenset(fragments)


LEAK_FRAGMENTS = _leak_fragments()


def prompt_leak(text: str) -> str | None:
    """A fragment of the fixed instruction text that ``text`` repeats, or ``None``.

    A leak is :data:`_LEAK_WINDOW` consecutive words of the system instructions, the answer cue
    or the one-shot example, compared case- and punctuation-insensitively.
    """
    words = _words(text)
    for i in range(len(words) - _LEAK_WINDOW + 1):
        window = " ".join(words[i : i + _LEAK_WINDOW])
        if window in LEAK_FRAGMENTS:
            return window
    return None
