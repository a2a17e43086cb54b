"""Searching for a follow-up question: what to look up when the question leans on earlier ones.

"And in pregnancy?" means nothing to an embedder on its own. A follow-up is searched with
text built from its conversation; which text is a setting (``FOLLOW_UP_QUERY``), measured on
the follow-up evaluation set (``docs/conversations.md``):

- ``alone``: the follow-up's own words (what every question got before conversations);
- ``previous``: the previous question, then the follow-up;
- ``thread``: every earlier question of the conversation, then the follow-up;
- ``fused``: the follow-up alone and ``previous`` searched separately, each passage keeping its
  best score (:func:`hits_merge`);
- ``fallback``: the follow-up alone first; only when that finds no passage relevant enough to
  answer from, ``previous`` (the caller decides "relevant enough": the queries are tried in
  order, see :func:`follow_up_queries`).

Only questions are used, never earlier answers: an answer is model output, and searching with
it would let one unsupported sentence pull in the next turn's sources.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from retrieval.types import Hit

FollowUpMode = Literal["alone", "previous", "thread", "fused", "fallback"]
FOLLOW_UP_MODES: tuple[FollowUpMode, ...] = ("alone", "previous", "thread", "fused", "fallback")


def follow_up_queries(question: str, earlier: Sequence[str], mode: FollowUpMode) -> list[str]:
    """The search queries for ``question`` asked after ``earlier`` questions (oldest first).

    A first question (no ``earlier``) is searched as it is, whatever the mode. ``fused``: both
    queries' hits are merged; ``fallback``: the second is tried only if the first finds too
    little.
    """
    if mode not in FOLLOW_UP_MODES:
        raise ValueError(f"unknown follow-up query mode {mode!r}")
    if not earlier or mode == "alone":
        return [question]
    with_previous = f"{earlier[-1]}\n{question}"
    if mode == "previous":
        return [with_previous]
    if mode == "thread":
        return ["\n".join([*earlier, question])]
    return [question, with_previous]  # fused and fallback


def hits_merge(rankings: Sequence[Sequence[Hit]], k: int) -> list[Hit]:
    """One ranking from several searches: each passage once, with its best hit (highest dense
    ``score``), best first, at most ``k``. Ties keep the earlier ranking's order."""
    best: dict[int, tuple[Hit, int]] = {}
    order = 0
    for ranking in rankings:
        for hit in ranking:
            seen = best.get(hit.passage_id)
            if seen is None or hit.score > seen[0].score:
                best[hit.passage_id] = (hit, seen[1] if seen else order)
            order += 1
    ranked = sorted(best.values(), key=lambda pair: (-pair[0].score, pair[1]))
    return [hit for hit, _ in ranked[:k]]
