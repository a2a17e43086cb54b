"""Cross-encoder reranking, tested with a tiny cross-encoder built here (no weights download).

No reranker weights ship on PyPI, so the tests initialise a 2-layer BERT sequence classifier at
random with the bundled MiniLM tokenizer, save it like a hub model and load it by path exactly
as production loads ``cross-encoder/ms-marco-MiniLM-L-6-v2``. Its scores mean nothing; the
tests check that the code path loads, scores and orders by them.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach the hub

from pathlib import Path

import numpy as np
import pytest

from retrieval.errors import IndexUnavailable
from retrieval.index import VectorIndex
from retrieval.rerank import CrossEncoderReranker, order_by_scores
from retrieval.search import Retriever
from retrieval.types import Hit

QUESTION = "How is dabigatran reversed before urgent surgery?"
PASSAGES = {
    10: "Idarucizumab reverses dabigatran within minutes.",
    11: "Warfarin is reversed with vitamin K and prothrombin complex concentrate.",
    12: "Hypertension in adults is treated with thiazides or ACE inhibitors.",
    13: "Burn wounds larger than 20% need fluid resuscitation.",
    14: "Stop dabigatran two days before surgery when kidney function is normal.",
    15: "Chronic kidney disease is staged by eGFR and albuminuria.",
}
DIM = 8


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer BERT cross-encoder (one label) saved with its tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from retrieval.embedder import bundled_model_path

    tokenizer = AutoTokenizer.from_pretrained(bundled_model_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=1,
        initializer_range=0.3,  # wide enough that the random scores differ from passage to passage
    )
    torch.manual_seed(0)
    model = BertForSequenceClassification(config).eval()
    path = tmp_path_factory.mktemp("tiny-cross-encoder")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def reranker(tiny_model: Path) -> CrossEncoderReranker:
    return CrossEncoderReranker(str(tiny_model), batch_size=4)


def direct_scores(model_path: Path, question: str, texts: list[str]) -> list[float]:
    """The model's logits for ``(question, text)`` pairs, computed with transformers alone."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForSequenceClassification.from_pretrained(model_path).eval()
    batch = tokenizer(
        [question] * len(texts), texts, padding=True, truncation=True, return_tensors="pt"
    )
    with torch.no_grad():
        return [float(x) for x in model(**batch).logits[:, 0]]


def dense_hits() -> list[Hit]:
    """The passages in a made-up fused order, with made-up dense and BM25 scores."""
    return [
        Hit(pid, score=0.9 - 0.1 * i, lexical=float(i), fused=1.0 / (i + 1))
        for i, pid in enumerate(PASSAGES)
    ]


def test_a_cross_encoder_loads_from_a_local_path_and_scores_like_the_model_itself(
    reranker: CrossEncoderReranker, tiny_model: Path
) -> None:
    texts = list(PASSAGES.values())
    scores = reranker.scores(QUESTION, texts)
    expected = direct_scores(tiny_model, QUESTION, texts)
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-5)
    assert len(set(scores)) == len(scores)  # the tests below order by them


def test_reranking_orders_hits_by_cross_encoder_score_and_keeps_the_dense_score(
    reranker: CrossEncoderReranker, tiny_model: Path
) -> None:
    hits = dense_hits()
    ranked = reranker.rerank(QUESTION, hits, PASSAGES, k=len(hits))
    scores = direct_scores(tiny_model, QUESTION, list(PASSAGES.values()))
    expected = dict(zip(PASSAGES, scores, strict=True))
    assert [h.passage_id for h in ranked] == sorted(expected, key=lambda pid: -expected[pid])
    assert [h.passage_id for h in ranked] != [h.passage_id for h in hits]  # it did reorder
    before = {h.passage_id: h for h in hits}
    for hit in ranked:
        assert hit.rerank == pytest.approx(expected[hit.passage_id], rel=1e-4, abs=1e-5)
        # The calibrated cosine and the first stage's scores travel unchanged.
        assert (hit.score, hit.lexical, hit.fused) == (
            before[hit.passage_id].score,
            before[hit.passage_id].lexical,
            before[hit.passage_id].fused,
        )


def test_reranking_returns_at_most_k_hits(reranker: CrossEncoderReranker) -> None:
    hits = dense_hits()
    everything = reranker.rerank(QUESTION, hits, PASSAGES, k=100)
    assert len(everything) == len(hits)
    assert reranker.rerank(QUESTION, hits, PASSAGES, k=2) == everything[:2]
    assert reranker.rerank(QUESTION, hits, PASSAGES, k=0) == []


def test_reranking_nothing_returns_nothing_without_loading_a_model() -> None:
    lazy = CrossEncoderReranker("/nonexistent/model")
    assert lazy.rerank(QUESTION, [], PASSAGES, k=5) == []
    assert lazy.scores(QUESTION, []) == []


def test_ties_keep_the_first_stage_order_and_passages_without_text_come_last(
    reranker: CrossEncoderReranker,
) -> None:
    hits = [Hit(3, 0.5), Hit(1, 0.4), Hit(2, 0.3)]
    assert [h.passage_id for h in order_by_scores(hits, [1.0, 2.0, 1.0], k=3)] == [1, 3, 2]

    texts = {pid: PASSAGES[pid] for pid in (10, 11, 12)}
    ranked = reranker.rerank(QUESTION, [Hit(99, 0.95), *dense_hits()[:3]], texts, k=4)
    assert [h.passage_id for h in ranked][-1] == 99 and ranked[-1].rerank is None


class FixedEmbedder:
    """Maps known texts to fixed vectors, so the dense ranking is whatever the test decides."""

    def __init__(self, vectors: dict[str, np.ndarray]) -> None:
        self.vectors = vectors

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.vectors[t] for t in texts]).astype(np.float32)


def build_index(root: Path, *, with_texts: bool) -> FixedEmbedder:
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(len(PASSAGES) + 1, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = VectorIndex(DIM, embedder="test")
    texts = list(PASSAGES.values()) if with_texts else None
    index.add(list(PASSAGES), vectors[:-1], texts=texts)
    index.save(root, version=1)
    return FixedEmbedder({QUESTION: vectors[-1]})


@pytest.mark.parametrize("fusion", ["rrf", "dense"])
def test_a_retriever_with_a_reranker_returns_k_of_its_candidates_reordered(
    tmp_path: Path, reranker: CrossEncoderReranker, tiny_model: Path, fusion: str
) -> None:
    embedder = build_index(tmp_path, with_texts=True)
    plain = Retriever(embedder, tmp_path, fusion=fusion)  # type: ignore[arg-type]
    candidates = plain.search(QUESTION, k=4).hits
    reranking = Retriever(
        embedder,  # type: ignore[arg-type]
        tmp_path,
        fusion=fusion,
        reranker=reranker,
        rerank_candidates=4,
    )
    result = reranking.search(QUESTION, k=2)

    texts = [PASSAGES[h.passage_id] for h in candidates]
    expected = dict(
        zip(
            [h.passage_id for h in candidates],
            direct_scores(tiny_model, QUESTION, texts),
            strict=True,
        )
    )
    assert [h.passage_id for h in result.hits] == sorted(expected, key=lambda p: -expected[p])[:2]
    by_id = {h.passage_id: h for h in candidates}
    assert all(h.score == by_id[h.passage_id].score for h in result.hits)
    assert result.top_score == max(h.score for h in result.hits)


def test_a_retriever_reads_passage_texts_from_the_caller_when_the_index_has_none(
    tmp_path: Path, reranker: CrossEncoderReranker
) -> None:
    embedder = build_index(tmp_path, with_texts=False)
    without = Retriever(embedder, tmp_path, reranker=reranker, rerank_candidates=6)  # type: ignore[arg-type]
    with pytest.raises(IndexUnavailable, match="passage texts"):
        without.search(QUESTION, k=3)

    asked: list[list[int]] = []

    def lookup(ids: list[int]) -> dict[int, str]:
        asked.append(ids)
        return {pid: PASSAGES[pid] for pid in ids}

    retriever = Retriever(
        embedder,  # type: ignore[arg-type]
        tmp_path,
        reranker=reranker,
        rerank_candidates=6,
        passage_texts=lookup,
    )
    hits = retriever.search(QUESTION, k=3).hits
    assert len(hits) == 3 and all(h.rerank is not None for h in hits)
    assert sorted(asked[0]) == sorted(PASSAGES)


def test_the_app_builds_a_reranker_only_when_reranker_model_is_set(tiny_model: Path) -> None:
    from django.test import override_settings

    from clinic_app.core import runtime

    runtime.get_retriever.cache_clear()
    try:
        with override_settings(RERANKER_MODEL=""):
            assert runtime.get_retriever().reranker is None
        runtime.get_retriever.cache_clear()
        with override_settings(
            RERANKER_MODEL=str(tiny_model), RERANKER_CANDIDATES=12, EMBEDDER_DTYPE="float32"
        ):
            retriever = runtime.get_retriever()
            assert isinstance(retriever.reranker, CrossEncoderReranker)
            assert retriever.reranker.model_name == str(tiny_model)
            assert retriever.rerank_candidates == 12
            assert len(retriever.reranker.scores(QUESTION, ["a passage"])) == 1
    finally:
        runtime.get_retriever.cache_clear()
