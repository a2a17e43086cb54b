from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from retrieval.errors import IndexUnavailable
from retrieval.index import VectorIndex, current_version


def unit(rows: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_search_returns_stable_ids_best_first() -> None:
    vectors = unit(20)
    index = VectorIndex(8, embedder="test")
    index.add(list(range(100, 120)), vectors)
    hits = index.search(vectors[[3]], k=3)[0]
    assert hits[0].passage_id == 103
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[0].score >= hits[1].score >= hits[2].score


def test_remove_and_readd_without_rebuild() -> None:
    vectors = unit(10)
    index = VectorIndex(8, embedder="test")
    index.add(list(range(10)), vectors)
    assert index.remove([3, 4, 99]) == 2
    assert len(index) == 8
    assert all(h.passage_id not in (3, 4) for h in index.search(vectors[[3]], k=8)[0])
    index.add([3], vectors[[3]])
    assert index.search(vectors[[3]], k=1)[0][0].passage_id == 3


def test_fewer_vectors_than_k_never_returns_padding_ids() -> None:
    index = VectorIndex(8, embedder="test")
    index.add([7], unit(1))
    assert [h.passage_id for h in index.search(unit(1, seed=2), k=5)[0]] == [7]


def test_save_and_load_roundtrip_with_versions(tmp_path: Path) -> None:
    vectors = unit(5)
    index = VectorIndex(8, embedder="test")
    index.add([1, 2, 3, 4, 5], vectors)
    index.save(tmp_path, version=1)
    index.remove([5])
    index.save(tmp_path, version=2)
    assert current_version(tmp_path) == 2
    assert len(VectorIndex.load(tmp_path)) == 4
    assert len(VectorIndex.load(tmp_path, version=1)) == 5
    with pytest.raises(IndexUnavailable, match="already exists"):
        index.save(tmp_path, version=2)


def test_loading_without_any_index_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(IndexUnavailable, match="no index has been built"):
        VectorIndex.load(tmp_path)


def test_readers_never_see_a_torn_index_while_versions_are_published(tmp_path: Path) -> None:
    # Version N holds exactly N*10 vectors; a reader must always see a consistent count.
    first = VectorIndex(8, embedder="test")
    first.add(list(range(10)), unit(10))
    first.save(tmp_path, version=1)
    errors: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            loaded = VectorIndex.load(tmp_path)
            if len(loaded) != loaded.version * 10:
                errors.append(f"v{loaded.version} had {len(loaded)}")

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for version in range(2, 12):
        index = VectorIndex(8, embedder="test")
        index.add(list(range(version * 10)), unit(version * 10, seed=version))
        index.save(tmp_path, version=version)
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    assert current_version(tmp_path) == 11
