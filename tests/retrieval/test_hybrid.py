from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from retrieval.index import VectorIndex
from retrieval.lexical import LexicalIndex
from retrieval.search import Retriever, fuse_rrf, fuse_scores

DIM = 16


def unit(rows: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


class FixedEmbedder:
    """Maps known texts to fixed vectors: dense similarity is whatever the test decides."""

    def __init__(self, vectors: dict[str, np.ndarray]) -> None:
        self.vectors = vectors

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.vectors[t] for t in texts]).astype(np.float32)


QUESTION = "How is dabigatran reversed before urgent surgery?"
EXACT_ID = 999


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, FixedEmbedder, np.ndarray]:
    """20 passages near the question without its drug name; one far away that names it."""
    rng = np.random.default_rng(1)
    question_vec = unit(1, seed=7)[0]
    near = question_vec + 0.3 * rng.normal(size=(20, DIM))
    near = (near / np.linalg.norm(near, axis=1, keepdims=True)).astype(np.float32)
    far = -question_vec  # cosine -1: dense ranks it last
    texts = [f"Warfarin and heparin note {i} on anticoagulant dosing." for i in range(20)]
    texts.append("Idarucizumab reverses dabigatran within minutes.")
    ids = [*range(100, 120), EXACT_ID]
    index = VectorIndex(DIM, embedder="test")
    index.add(ids, np.vstack([near, far[None, :]]), texts=texts)
    index.save(tmp_path, version=1)
    return tmp_path, FixedEmbedder({QUESTION: question_vec}), np.vstack([near, far[None, :]])


def test_hybrid_search_finds_an_exact_term_passage_that_dense_search_misses(
    corpus: tuple[Path, FixedEmbedder, np.ndarray],
) -> None:
    root, embedder, _ = corpus
    dense = Retriever(embedder, root, fusion="dense").search(QUESTION, k=3)  # type: ignore[arg-type]
    assert EXACT_ID not in [h.passage_id for h in dense.hits]
    # RRF, and the score combination at equal weights, rescue it even from the last dense rank.
    for fusion in ("rrf", "score"):
        result = Retriever(embedder, root, fusion=fusion, alpha=0.5).search(QUESTION, k=3)  # type: ignore[arg-type]
        ids = [h.passage_id for h in result.hits]
        assert EXACT_ID in ids, fusion
        exact = next(h for h in result.hits if h.passage_id == EXACT_ID)
        # Every hit keeps its dense cosine as ``score``; top_score is the best of them.
        assert exact.score == pytest.approx(-1.0, abs=1e-5)
        assert exact.lexical is not None and exact.lexical > 0
        assert result.top_score == max(h.score for h in result.hits)
        assert result.top_score == pytest.approx(dense.top_score, abs=1e-6)


def test_the_default_fusion_lets_exact_terms_settle_near_ties_but_not_outvote_dense(
    tmp_path: Path,
) -> None:
    """Dense weighted 0.8: a passage naming the drug, a little below the best by cosine, is
    lifted into the top 3; one that dense ranks far below is not (docs/retrieval.md)."""
    q = unit(1, seed=7)[0]
    rng = np.random.default_rng(3)

    def at_cosine(cosine: float) -> np.ndarray:
        noise = rng.normal(size=DIM)
        noise -= (noise @ q) * q
        return cosine * q + np.sqrt(1 - cosine**2) * noise / np.linalg.norm(noise)

    others = [at_cosine(c) for c in (0.95, 0.94, 0.93, 0.92, 0.91, 0.90)]
    close = at_cosine(0.89)  # dense rank 7 of 8
    far = -q  # dense rank 8 of 8
    texts = [f"Warfarin and heparin note {i} on anticoagulant dosing." for i in range(6)]
    texts += ["Idarucizumab reverses dabigatran within minutes.", "Dabigatran is reversed."]
    vectors = np.vstack([*others, close, far]).astype(np.float32)
    index = VectorIndex(DIM, embedder="test")
    index.add([*range(100, 106), 200, 300], vectors, texts=texts)
    index.save(tmp_path, version=1)
    embedder = FixedEmbedder({QUESTION: q})
    default = Retriever(embedder, tmp_path)  # type: ignore[arg-type]
    assert default.fusion == "score" and default.alpha == 0.8
    dense = Retriever(embedder, tmp_path, fusion="dense")  # type: ignore[arg-type]
    dense_ids = [h.passage_id for h in dense.search(QUESTION, k=3).hits]
    assert 200 not in dense_ids and 300 not in dense_ids
    ids = [h.passage_id for h in default.search(QUESTION, k=3).hits]
    assert 200 in ids  # near tie, names the drug: promoted
    assert 300 not in ids  # dense says it is the opposite of the question: not promoted


def test_rrf_and_score_fusion_rank_as_documented() -> None:
    assert fuse_rrf([[1, 2, 3], [3, 1]], k=60) == [
        (1, pytest.approx(1 / 61 + 1 / 62)),
        (3, pytest.approx(1 / 63 + 1 / 61)),
        (2, pytest.approx(1 / 62)),
    ]
    fused = dict(fuse_scores({1: 0.9, 2: 0.5, 3: 0.7}, {1: 0.0, 2: 10.0, 3: 5.0}, alpha=0.5))
    assert fused == {1: 0.5, 2: 0.5, 3: pytest.approx(0.5 * 0.5 + 0.5 * 0.5)}


def test_save_and_reload_keep_bm25_aligned_with_passage_ids(tmp_path: Path) -> None:
    index = VectorIndex(DIM, embedder="test")
    index.add([30, 10, 20], unit(3), texts=["gamma ray", "alpha wave", "beta blocker"])
    index.add([40], unit(1, seed=3), texts=["delta hepatitis"])
    index.save(tmp_path, version=1)
    loaded = VectorIndex.load(tmp_path)
    assert loaded.lexical is not None
    assert sorted(loaded.lexical.ids.tolist()) == [10, 20, 30, 40]
    for word, pid in (("alpha", 10), ("beta", 20), ("gamma", 30), ("delta", 40)):
        assert [h.passage_id for h in loaded.lexical.search(word, k=5)] == [pid]
    # A loaded index can be changed and saved again: its texts come back from disk.
    loaded.remove([20])
    loaded.add([50], unit(1, seed=5), texts=["beta blocker again"])
    loaded.save(tmp_path, version=2)
    again = VectorIndex.load(tmp_path)
    assert again.lexical is not None
    assert [h.passage_id for h in again.lexical.search("beta", k=5)] == [50]
    assert [h.passage_id for h in again.lexical.search("alpha", k=5)] == [10]


def test_removing_ids_removes_them_from_dense_and_bm25(tmp_path: Path) -> None:
    vectors = unit(4)
    index = VectorIndex(DIM, embedder="test")
    index.add([1, 2, 3, 4], vectors, texts=["heart failure", "heart rate", "renal", "hepatic"])
    assert index.remove([2, 77]) == 1
    assert index.lexical is not None
    assert [h.passage_id for h in index.lexical.search("heart", k=5)] == [1]
    assert 2 not in [h.passage_id for h in index.search(vectors[[1]], k=4)[0]]
    assert len(index) == len(index.lexical.ids) == 3


def test_texts_must_cover_every_passage_or_none() -> None:
    index = VectorIndex(DIM, embedder="test")
    index.add([1], unit(1), texts=["one"])
    with pytest.raises(ValueError, match="every passage or for none"):
        index.add([2], unit(1, seed=2))
    with pytest.raises(ValueError, match="texts"):
        index.add([3, 4], unit(2), texts=["only one"])


def test_old_indexes_without_bm25_still_search_dense(tmp_path: Path) -> None:
    vectors = unit(5)
    index = VectorIndex(DIM, embedder="test")
    index.add(list(range(5)), vectors)
    index.save(tmp_path, version=1)
    embedder = FixedEmbedder({"q": vectors[2]})
    result = Retriever(embedder, tmp_path).search("q", k=2)  # type: ignore[arg-type]
    assert result.hits[0].passage_id == 2 and result.top_score == pytest.approx(1.0, abs=1e-5)


def test_a_question_with_no_known_words_scores_zero_everywhere() -> None:
    lexical = LexicalIndex()
    lexical.add([1, 2], ["aspirin dose", "statin dose"])
    assert lexical.search("zzz qqq", k=5) == []
    assert lexical.search("the and of", k=5) == []  # stop words only


def test_readers_never_see_bm25_and_vectors_out_of_step(tmp_path: Path) -> None:
    first = VectorIndex(DIM, embedder="test")
    first.add(list(range(5)), unit(5), texts=[f"word{i}" for i in range(5)])
    first.save(tmp_path, version=1)
    errors: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            loaded = VectorIndex.load(tmp_path)
            assert loaded.lexical is not None
            if not len(loaded) == len(loaded.lexical.ids) == loaded.version * 5:
                errors.append(f"v{loaded.version}: {len(loaded)} vs {len(loaded.lexical.ids)}")

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for version in range(2, 8):
        index = VectorIndex(DIM, embedder="test")
        n = version * 5
        index.add(list(range(n)), unit(n, seed=version), texts=[f"word{i}" for i in range(n)])
        index.save(tmp_path, version=version)
    stop.set()
    for t in threads:
        t.join()
    assert errors == []


# ---------------------------------------------------------------------------- HNSW


def clustered(rows: int, dim: int, seed: int) -> np.ndarray:
    """Unit vectors around 20 centres: closer to real embeddings than uniform noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, dim))
    v = centres[rng.integers(0, 20, rows)] + 0.6 * rng.normal(size=(rows, dim))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_hnsw_recall_at_10_against_exact_search(tmp_path: Path) -> None:
    data, queries = clustered(3000, 32, seed=1), clustered(50, 32, seed=2)
    ids = list(range(3000))
    exact, approx = VectorIndex(32, embedder="t"), VectorIndex(32, embedder="t", kind="hnsw")
    exact.add(ids, data)
    approx.add(ids, data)
    approx.save(tmp_path, version=1)
    approx = VectorIndex.load(tmp_path)
    assert approx.manifest().kind == "hnsw-ip"
    truth = [{h.passage_id for h in row} for row in exact.search(queries, 10)]
    found = [{h.passage_id for h in row} for row in approx.search(queries, 10)]
    recall = np.mean([len(t & f) / 10 for t, f in zip(truth, found, strict=True)])
    assert recall >= 0.98


def test_hnsw_remove_rebuilds_without_the_removed_ids() -> None:
    data = clustered(200, 16, seed=3)
    index = VectorIndex(16, embedder="t", kind="hnsw")
    index.add(list(range(200)), data, texts=[f"p{i}" for i in range(200)])
    assert index.remove([5, 6, 1000]) == 2
    assert len(index) == 198
    hits = index.search(data[[5]], k=10)[0]
    assert 5 not in [h.passage_id for h in hits]
    assert index.search(data[[7]], k=1)[0][0].passage_id == 7


def test_auto_kind_saves_hnsw_only_for_large_indexes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import retrieval.index

    monkeypatch.setattr(retrieval.index, "AUTO_HNSW_MIN", 100)
    small = VectorIndex(16, embedder="t", kind="auto")
    small.add(list(range(50)), clustered(50, 16, seed=4))
    small.save(tmp_path, version=1)
    large = VectorIndex(16, embedder="t", kind="auto")
    large.add(list(range(150)), clustered(150, 16, seed=5))
    large.save(tmp_path, version=2)
    assert VectorIndex.load(tmp_path, version=1).manifest().kind == "flat-ip"
    reloaded = VectorIndex.load(tmp_path, version=2)
    assert reloaded.manifest().kind == "hnsw-ip" and len(reloaded) == 150
