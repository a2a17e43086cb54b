"""Vector seeds (retrieval/vector_seed.py): written, read, trusted only for their embedder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retrieval.vector_seed import seed_for, seed_read, seed_write, text_key


def unit(rows: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_a_seed_returns_the_vectors_of_the_texts_it_holds_and_nothing_else(tmp_path: Path) -> None:
    vectors = unit(3)
    path = seed_write(
        tmp_path / "s.npz",
        embedder="e",
        fingerprint="f" * 64,
        source="three texts",
        texts=["alpha", "beta", "gamma"],
        vectors=vectors,
    )
    seed = seed_read(path)
    assert (seed.embedder, seed.source, seed.dim, len(seed.keys)) == ("e", "three texts", 8, 3)
    found = seed.lookup(["gamma", "delta", "alpha", "alpha "])
    assert set(found) == {0, 2}  # one character more is another text
    for position, row in ((0, 2), (2, 0)):
        assert found[position].dtype == np.float32
        assert float(found[position] @ vectors[row]) >= 0.9999  # stored as float16


def test_a_seed_of_another_embedder_or_dimension_is_not_used(tmp_path: Path) -> None:
    path = seed_write(
        tmp_path / "s.npz",
        embedder="e",
        fingerprint="a" * 64,
        source="",
        texts=["x"],
        vectors=unit(1),
    )
    assert seed_for(path, fingerprint="a" * 64, dim=8) is not None
    assert seed_for(path, fingerprint="b" * 64, dim=8) is None
    assert seed_for(path, fingerprint="a" * 64, dim=384) is None
    assert seed_for(path, fingerprint="", dim=8) is None  # a hub model: no fingerprint
    assert seed_for(tmp_path / "missing.npz", fingerprint="a" * 64, dim=8) is None


def test_a_damaged_seed_is_ignored_not_fatal(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    assert seed_for(bad, fingerprint="a" * 64, dim=8) is None


def test_a_seed_needs_one_vector_per_text_and_a_fingerprint(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="2 texts but 1 vectors"):
        seed_write(
            tmp_path / "s.npz",
            embedder="e",
            fingerprint="f",
            source="",
            texts=["a", "b"],
            vectors=unit(1),
        )
    with pytest.raises(ValueError, match="fingerprint"):
        seed_write(
            tmp_path / "s.npz",
            embedder="e",
            fingerprint="",
            source="",
            texts=["a"],
            vectors=unit(1),
        )


def test_text_keys_are_sha256_of_the_utf8_text() -> None:
    assert text_key("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert text_key("é") != text_key("e")
