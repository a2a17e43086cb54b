"""What a follow-up is searched with, and merging two searches (retrieval.followup)."""

from __future__ import annotations

import pytest

from retrieval.followup import FOLLOW_UP_MODES, follow_up_queries, hits_merge
from retrieval.types import Hit

EARLIER = ["Apixaban dose in AF?", "And if she weighs 55 kg?"]


def test_a_first_question_is_searched_as_it_is_in_every_mode() -> None:
    for mode in FOLLOW_UP_MODES:
        assert follow_up_queries("What is qSOFA?", [], mode) == ["What is qSOFA?"]


def test_each_mode_builds_its_queries() -> None:
    q = "And in pregnancy?"
    assert follow_up_queries(q, EARLIER, "alone") == [q]
    assert follow_up_queries(q, EARLIER, "previous") == [f"{EARLIER[-1]}\n{q}"]
    assert follow_up_queries(q, EARLIER, "thread") == ["\n".join([*EARLIER, q])]
    assert follow_up_queries(q, EARLIER, "fused") == [q, f"{EARLIER[-1]}\n{q}"]
    assert follow_up_queries(q, EARLIER, "fallback") == [q, f"{EARLIER[-1]}\n{q}"]
    with pytest.raises(ValueError, match="unknown follow-up query mode"):
        follow_up_queries(q, EARLIER, "answers")  # type: ignore[arg-type]


def test_merged_rankings_keep_each_passage_once_with_its_best_score() -> None:
    a = [Hit(1, 0.7), Hit(2, 0.6), Hit(3, 0.2)]
    b = [Hit(2, 0.9), Hit(4, 0.65), Hit(1, 0.1)]
    merged = hits_merge([a, b], k=3)
    assert [(h.passage_id, h.score) for h in merged] == [(2, 0.9), (1, 0.7), (4, 0.65)]
    assert hits_merge([a, b], k=10)[-1].passage_id == 3
    assert hits_merge([], k=5) == []
