"""Vectors computed ahead of time for known texts, trusted only for the embedder that made them.

The demo corpus is fixed data; embedding its 1,930 passages takes minutes on a 2-core CPU
without AVX-512 (8-11 passages/s measured), most of a first ``make run``. Its vectors ship with
the app as a *seed*: a file of ``sha256(text) -> vector`` rows with the fingerprint of the
embedder that computed them (:attr:`retrieval.embedder.Embedder.fingerprint`). Indexing looks a
text up in the seed first and embeds only what the seed lacks; a seed made by another embedder,
or a text that changed by one character (new chunking, a new corpus release), is simply not
found, so the result is the index that embedding everything would give (vectors stored as
float16: cosine >= 0.9999 to the float32 they came from). Uploaded guidelines are embedded as
always.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

log = logging.getLogger(__name__)

FORMAT = 1


def text_key(text: str) -> str:
    """The key a text is looked up by: the sha256 of its UTF-8 bytes, hex."""
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class VectorSeed:
    """Rows of ``vectors`` (float16, unit norm) keyed by :func:`text_key`, made by the embedder
    named ``embedder`` whose files have the sha256 ``fingerprint``; ``source`` says what texts
    they are (for people)."""

    embedder: str
    fingerprint: str
    source: str
    keys: dict[str, int]
    vectors: NDArray[np.float16]

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def lookup(self, texts: list[str]) -> dict[int, NDArray[np.float32]]:
        """``{position in texts: float32 vector}`` for the texts the seed holds."""
        found: dict[int, NDArray[np.float32]] = {}
        for i, text in enumerate(texts):
            row = self.keys.get(text_key(text))
            if row is not None:
                found[i] = self.vectors[row].astype(np.float32)
        return found


def seed_write(
    path: Path,
    *,
    embedder: str,
    fingerprint: str,
    source: str,
    texts: list[str],
    vectors: NDArray[np.float32],
) -> Path:
    """Write a seed of ``texts`` and their ``vectors`` (one row each) to ``path`` (``.npz``)."""
    if len(texts) != len(vectors):
        raise ValueError(f"{len(texts)} texts but {len(vectors)} vectors")
    if not fingerprint:
        raise ValueError("a seed needs the embedder's fingerprint (a local model folder)")
    meta = {
        "format": FORMAT,
        "embedder": embedder,
        "fingerprint": fingerprint,
        "source": source,
        "count": len(texts),
    }
    keys = np.array([bytes.fromhex(text_key(t)) for t in texts], dtype="S32")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        np.savez_compressed(
            handle,
            meta=np.array(json.dumps(meta)),
            keys=keys,
            vectors=np.asarray(vectors, dtype=np.float16),
        )
    return path


def seed_read(path: Path) -> VectorSeed:
    """Read a seed written by :func:`seed_write`; ``ValueError`` if it is not one."""
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}: seed format {meta.get('format')!r}, expected {FORMAT}")
        keys = {bytes(k).hex(): i for i, k in enumerate(data["keys"])}
        vectors = np.asarray(data["vectors"], dtype=np.float16)
    if len(keys) != len(vectors):
        raise ValueError(f"{path}: {len(keys)} keys but {len(vectors)} vectors")
    return VectorSeed(
        embedder=str(meta["embedder"]),
        fingerprint=str(meta["fingerprint"]),
        source=str(meta.get("source", "")),
        keys=keys,
        vectors=vectors,
    )


def seed_for(path: Path | None, *, fingerprint: str, dim: int) -> VectorSeed | None:
    """The seed at ``path`` if it was made by the embedder with ``fingerprint`` (and ``dim``),
    else ``None``, with the reason logged once."""
    if path is None or not path.is_file():
        return None
    try:
        seed = seed_read(path)
    except (OSError, ValueError, KeyError) as exc:
        log.warning("vector seed %s not used: %s", path, exc)
        return None
    if not fingerprint or seed.fingerprint != fingerprint or seed.dim != dim:
        log.info("vector seed %s not used: made by another embedder (%s)", path, seed.embedder)
        return None
    return seed
