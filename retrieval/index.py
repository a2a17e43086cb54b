"""A FAISS vector index with stable passage ids, saved atomically under a version number.

On disk an index is a directory ``<root>/v<version>/`` holding ``vectors.faiss`` and
``manifest.json``; ``<root>/CURRENT`` names the live version. Saving writes a new version
directory, then replaces ``CURRENT`` with an atomic rename, so a reader sees either the old or
the new index, never a mix.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from retrieval.errors import IndexUnavailable
from retrieval.types import Hit

if TYPE_CHECKING:
    from numpy.typing import NDArray

_faiss_threads_lock = threading.Lock()


def set_faiss_threads(threads: int) -> None:
    """Set FAISS's OpenMP thread count (1 is fastest for single queries on 2 cores)."""
    import faiss

    with _faiss_threads_lock:
        faiss.omp_set_num_threads(max(1, threads))


@dataclass(frozen=True)
class IndexManifest:
    """What an index version holds and how it was built."""

    version: int
    dim: int
    count: int
    embedder: str
    kind: str = "flat-ip"


class VectorIndex:
    """Exact inner-product search over unit vectors, keyed by 64-bit passage ids.

    FAISS's ``(D, I)`` arrays and its ``-1`` padding stop here: callers get :class:`Hit` lists.
    """

    def __init__(self, dim: int, *, embedder: str, version: int = 0, faiss_index: Any = None):
        import faiss

        self.dim = dim
        self.embedder = embedder
        self.version = version
        self._index = faiss_index or faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, ids: list[int], vectors: NDArray[np.float32]) -> None:
        """Add ``vectors`` (shape ``(len(ids), dim)``) under ``ids``; existing ids are replaced."""
        if vectors.shape != (len(ids), self.dim):
            raise ValueError(
                f"expected vectors of shape ({len(ids)}, {self.dim}), got {vectors.shape}"
            )
        if not ids:
            return
        id_array = np.asarray(ids, dtype=np.int64)
        self.remove(ids)
        self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), id_array)

    def remove(self, ids: list[int]) -> int:
        """Remove ``ids``; returns how many were present."""
        if not ids:
            return 0
        return int(self._index.remove_ids(np.asarray(ids, dtype=np.int64)))  # type: ignore[arg-type]

    def search(self, queries: NDArray[np.float32], k: int) -> list[list[Hit]]:
        """Top ``k`` hits for each query row (shape ``(n, dim)``), best first."""
        if len(self) == 0 or k <= 0:
            return [[] for _ in range(queries.shape[0])]
        scores, ids = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return [
            [Hit(int(i), float(s)) for s, i in zip(row_s, row_i, strict=True) if i != -1]
            for row_s, row_i in zip(scores, ids, strict=True)
        ]

    def manifest(self) -> IndexManifest:
        return IndexManifest(
            version=self.version, dim=self.dim, count=len(self), embedder=self.embedder
        )

    def save(self, root: Path, *, version: int) -> Path:
        """Write this index as ``version`` under ``root`` and make it current, atomically."""
        import faiss

        root.mkdir(parents=True, exist_ok=True)
        final = root / f"v{version}"
        if final.exists():
            raise IndexUnavailable(f"index version {version} already exists at {final}")
        staging = Path(tempfile.mkdtemp(prefix=f".v{version}-", dir=root))
        faiss.write_index(self._index, str(staging / "vectors.faiss"))
        self.version = version
        (staging / "manifest.json").write_text(json.dumps(self.manifest().__dict__))
        os.rename(staging, final)
        pointer = root / f".CURRENT-{version}"
        pointer.write_text(str(version))
        os.replace(pointer, root / "CURRENT")
        return final

    @classmethod
    def load(cls, root: Path, *, version: int | None = None) -> VectorIndex:
        """Load ``version`` (default: the one ``CURRENT`` names) from ``root``."""
        import faiss

        if version is None:
            version = current_version(root)
            if version is None:
                raise IndexUnavailable(f"no index has been built under {root}")
        path = root / f"v{version}"
        try:
            manifest = json.loads((path / "manifest.json").read_text())
            index = faiss.read_index(str(path / "vectors.faiss"))
        except (OSError, ValueError, RuntimeError) as exc:
            raise IndexUnavailable(
                f"index version {version} at {path} is unreadable: {exc}"
            ) from exc
        return cls(
            manifest["dim"], embedder=manifest["embedder"], version=version, faiss_index=index
        )


def current_version(root: Path) -> int | None:
    """The live version number under ``root``, or ``None`` if no index was published."""
    try:
        return int((root / "CURRENT").read_text().strip())
    except FileNotFoundError:
        return None
