"""The GPU search path: chosen only when faiss-gpu and a GPU are present.

This machine has no GPU, so the two FAISS calls that need one (a GPU count and the copy to the
device) are replaced by a stand-in for the test that the path is taken; the search itself is
then served by the stand-in "GPU" index, a CPU clone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from retrieval.errors import IndexUnavailable
from retrieval.index import VectorIndex


def small_index() -> VectorIndex:
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(20, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = VectorIndex(8, embedder="test", kind="flat")
    index.add(list(range(100, 120)), vectors)
    return index


def test_without_a_gpu_search_stays_on_the_cpu() -> None:
    index = small_index()
    assert index.use_gpu("auto") == "cpu"
    assert index.use_gpu("cpu") == "cpu"
    with pytest.raises(IndexUnavailable, match="sees none"):
        index.use_gpu("cuda")


def test_with_a_gpu_exact_search_moves_there_and_gives_the_same_hits(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import faiss

    copied: list[tuple[int, Any]] = []

    def to_gpu(resources: Any, ordinal: int, index: Any) -> Any:
        copied.append((ordinal, index))
        return faiss.clone_index(index)  # stands in for the device copy

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1, raising=False)
    monkeypatch.setattr(faiss, "StandardGpuResources", lambda: object(), raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", to_gpu, raising=False)

    index = small_index()
    query = np.ones((1, 8), dtype=np.float32) / np.sqrt(8)
    before = index.search(query, 5)
    assert index.use_gpu("cuda:1") == "cuda:1"
    assert copied and copied[0][0] == 1
    assert index.search(query, 5) == before
    # The CPU index stays the reference for saving and reconstructing.
    index.save(tmp_path, version=1)
    assert VectorIndex.load(tmp_path).search(query, 5) == before

    hnsw = VectorIndex(8, embedder="test", kind="hnsw")
    hnsw.add([1, 2], np.eye(2, 8, dtype=np.float32))
    assert hnsw.use_gpu("auto") == "cpu"  # FAISS has no GPU HNSW
