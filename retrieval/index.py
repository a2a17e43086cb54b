"""A FAISS vector index with stable passage ids, saved atomically under a version number.

On disk an index is a directory ``<root>/v<version>/`` holding ``vectors.faiss``,
``manifest.json`` and, when passages were added with their texts, ``lexical/`` (BM25 over the same
passage ids, see :mod:`retrieval.lexical`); ``<root>/CURRENT`` names the live version. Saving
writes every file into a new version directory, then replaces ``CURRENT`` with an atomic rename,
so a reader sees either the old or the new index (vectors and BM25 together), never a mix.

Two kinds of vector index: ``flat`` (exact inner product) and ``hnsw`` (approximate, for large
corpora; its recall against exact search is checked in the tests and the benchmark). ``auto``
builds flat and saves HNSW from :data:`AUTO_HNSW_MIN` passages up.
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
from retrieval.lexical import LexicalIndex
from retrieval.types import Hit

if TYPE_CHECKING:
    from numpy.typing import NDArray

_faiss_threads_lock = threading.Lock()

KINDS = ("flat", "hnsw", "auto")
# Below this many passages exact search takes a few ms per query on one core: no need to trade
# recall for speed (see bench/retrieval.py for the measured crossover).
AUTO_HNSW_MIN = 200_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80  # 40 (FAISS default) lost recall at 300K even with efSearch 512
HNSW_EF_SEARCH = 128


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
    lexical: bool = False
    hnsw_ef_search: int | None = None


class VectorIndex:
    """Inner-product search over unit vectors, keyed by 64-bit passage ids, plus optional BM25.

    ``kind`` is ``flat`` (exact), ``hnsw`` (approximate; ``M`` = :data:`HNSW_M`) or ``auto``.
    Passages added with their ``texts`` are also indexed by BM25 (:attr:`lexical`); an index
    either has texts for every passage or for none, so both rankings cover the same ids.
    FAISS's ``(D, I)`` arrays and its ``-1`` padding stop here: callers get :class:`Hit` lists.
    """

    def __init__(
        self,
        dim: int,
        *,
        embedder: str,
        version: int = 0,
        faiss_index: Any = None,
        kind: str = "flat",
        lexical: LexicalIndex | None = None,
        hnsw_ef_search: int = HNSW_EF_SEARCH,
    ):
        if kind not in KINDS:
            raise ValueError(f"unknown index kind {kind!r}; choose one of {', '.join(KINDS)}")
        self.dim = dim
        self.embedder = embedder
        self.version = version
        self.kind = kind
        self.hnsw_ef_search = hnsw_ef_search
        self._index = faiss_index if faiss_index is not None else self._empty(kind)
        # Where searches run: the CPU index itself, or a GPU copy (see :meth:`use_gpu`).
        self._search_index: Any = None
        self.device = "cpu"
        self.lexical = lexical

    def _empty(self, kind: str) -> Any:
        import faiss

        if kind == "hnsw":
            inner = faiss.IndexHNSWFlat(self.dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            inner.hnsw.efSearch = self.hnsw_ef_search
            return faiss.IndexIDMap2(inner)
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def has_lexical(self) -> bool:
        """Whether BM25 covers this index's passages (they were added with texts)."""
        return self.lexical is not None

    def _ids(self) -> NDArray[np.int64]:
        import faiss

        return faiss.vector_to_array(self._index.id_map).astype(np.int64)

    def add(
        self, ids: list[int], vectors: NDArray[np.float32], texts: list[str] | None = None
    ) -> None:
        """Add ``vectors`` (shape ``(len(ids), dim)``) under ``ids``; existing ids are replaced.

        ``texts`` (one per id) also indexes the passages with BM25; give them for every batch
        or for none.
        """
        if vectors.shape != (len(ids), self.dim):
            raise ValueError(
                f"expected vectors of shape ({len(ids)}, {self.dim}), got {vectors.shape}"
            )
        if texts is not None and len(texts) != len(ids):
            raise ValueError(f"{len(ids)} ids but {len(texts)} texts")
        if not ids:
            return
        if len(self) and (texts is not None) != self.has_lexical:
            raise ValueError(
                "add texts for every passage or for none: BM25 must cover the same passages"
            )
        id_array = np.asarray(ids, dtype=np.int64)
        self.remove(ids)
        self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), id_array)
        if texts is not None:
            if self.lexical is None:
                self.lexical = LexicalIndex()
            self.lexical.add(ids, texts)

    def remove(self, ids: list[int]) -> int:
        """Remove ``ids`` from the vectors and BM25; returns how many were present."""
        if not ids or not len(self):
            return 0
        if self.lexical is not None:
            self.lexical.remove(ids)
        if self.kind != "hnsw":
            return int(self._index.remove_ids(np.asarray(ids, dtype=np.int64)))
        # HNSW graphs cannot drop nodes: rebuild from the stored vectors without them.
        present = self._ids()
        keep = ~np.isin(present, np.asarray(ids, dtype=np.int64))
        removed = int((~keep).sum())
        if removed:
            vectors = self._index.index.reconstruct_n(0, len(present))
            self._index = self._empty("hnsw")
            if keep.any():
                self._index.add_with_ids(vectors[keep], present[keep])
        return removed

    def set_ef_search(self, ef_search: int) -> None:
        """HNSW only: candidates explored per query (higher: better recall, slower); saved."""
        import faiss

        if self.kind != "hnsw":
            raise ValueError("efSearch applies to HNSW indexes only")
        self.hnsw_ef_search = ef_search
        inner: Any = faiss.downcast_index(self._index.index)
        inner.hnsw.efSearch = ef_search

    def search(self, queries: NDArray[np.float32], k: int) -> list[list[Hit]]:
        """Top ``k`` hits for each query row (shape ``(n, dim)``), best first."""
        if len(self) == 0 or k <= 0:
            return [[] for _ in range(queries.shape[0])]
        searcher = self._search_index if self._search_index is not None else self._index
        scores, ids = searcher.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return [
            [Hit(int(i), float(s)) for s, i in zip(row_s, row_i, strict=True) if i != -1]
            for row_s, row_i in zip(scores, ids, strict=True)
        ]

    def similarities(self, query: NDArray[np.float32], ids: list[int]) -> dict[int, float]:
        """Exact cosine of ``query`` (shape ``(dim,)`` or ``(1, dim)``) to each stored ``ids``.

        Used to score passages that only BM25 found; unknown ids are left out.
        """
        out: dict[int, float] = {}
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        for pid in ids:
            try:
                vector = self._index.reconstruct(int(pid))
            except RuntimeError:  # not in the index
                continue
            out[int(pid)] = float(np.dot(vector, q))
        return out

    def vectors(self, ids: list[int]) -> dict[int, NDArray[np.float32]]:
        """The stored vector (shape ``(dim,)``) of each of ``ids`` present in the index.

        Lets a new version reuse the embeddings of passages it keeps instead of re-embedding.
        """
        out: dict[int, NDArray[np.float32]] = {}
        for pid in ids:
            try:
                out[int(pid)] = self._index.reconstruct(int(pid))
            except RuntimeError:  # not in the index
                continue
        return out

    def use_gpu(self, device: str = "auto") -> str:
        """Search on a GPU when ``faiss-gpu`` and a GPU are present; returns the device used.

        ``device`` is ``auto`` (a GPU if there is one), ``cpu`` or ``cuda``/``cuda:N``
        (required: raises if absent). Only exact (flat) indexes move: FAISS has no GPU HNSW.
        The CPU index stays the reference for adding, removing, saving and reconstructing;
        the GPU copy answers :meth:`search` for this loaded version, which is never modified.
        """
        import faiss

        if device == "cpu":
            return self.device
        gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
        if gpus < 1 or not hasattr(faiss, "StandardGpuResources"):
            if device.startswith("cuda"):
                raise IndexUnavailable("FAISS_DEVICE asks for a GPU, but faiss sees none")
            return self.device
        if self.kind == "hnsw":
            return self.device
        ordinal = int(device.split(":", 1)[1]) if device.startswith("cuda:") else 0
        self._gpu_resources = faiss.StandardGpuResources()
        self._search_index = faiss.index_cpu_to_gpu(self._gpu_resources, ordinal, self._index)
        self.device = f"cuda:{ordinal}"
        return self.device

    def manifest(self) -> IndexManifest:
        return IndexManifest(
            version=self.version,
            dim=self.dim,
            count=len(self),
            embedder=self.embedder,
            kind="hnsw-ip" if self.kind == "hnsw" else "flat-ip",
            lexical=self.has_lexical,
            hnsw_ef_search=self.hnsw_ef_search if self.kind == "hnsw" else None,
        )

    def _as_saved(self) -> VectorIndex:
        """``auto`` indexes are saved as HNSW once they are large (see :data:`AUTO_HNSW_MIN`)."""
        if self.kind != "auto" or len(self) < AUTO_HNSW_MIN:
            return self
        hnsw = VectorIndex(
            self.dim,
            embedder=self.embedder,
            version=self.version,
            kind="hnsw",
            hnsw_ef_search=self.hnsw_ef_search,
        )
        ids = self._ids()
        hnsw._index.add_with_ids(self._index.index.reconstruct_n(0, len(ids)), ids)
        hnsw.lexical = self.lexical
        return hnsw

    def save(self, root: Path, *, version: int) -> Path:
        """Write this index as ``version`` under ``root`` and make it current, atomically."""
        import faiss

        root.mkdir(parents=True, exist_ok=True)
        final = root / f"v{version}"
        if final.exists():
            raise IndexUnavailable(f"index version {version} already exists at {final}")
        saved = self._as_saved()
        staging = Path(tempfile.mkdtemp(prefix=f".v{version}-", dir=root))
        faiss.write_index(saved._index, str(staging / "vectors.faiss"))
        if saved.lexical is not None:
            saved.lexical.save(staging / "lexical")
        self.version = saved.version = version
        (staging / "manifest.json").write_text(json.dumps(saved.manifest().__dict__))
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
            index: Any = faiss.read_index(str(path / "vectors.faiss"))
            lexical = LexicalIndex.load(path / "lexical") if manifest.get("lexical") else None
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise IndexUnavailable(
                f"index version {version} at {path} is unreadable: {exc}"
            ) from exc
        kind = "hnsw" if manifest.get("kind") == "hnsw-ip" else "flat"
        ef_search = manifest.get("hnsw_ef_search") or HNSW_EF_SEARCH
        if lexical is not None and len(lexical.ids) != int(index.ntotal):
            raise IndexUnavailable(f"index version {version} at {path}: BM25 and vectors differ")
        loaded = cls(
            manifest["dim"],
            embedder=manifest["embedder"],
            version=version,
            faiss_index=index,
            kind=kind,
            lexical=lexical,
            hnsw_ef_search=ef_search,
        )
        if kind == "hnsw":
            loaded.set_ef_search(ef_search)
        return loaded


def current_version(root: Path) -> int | None:
    """The live version number under ``root``, or ``None`` if no index was published."""
    try:
        return int((root / "CURRENT").read_text().strip())
    except FileNotFoundError:
        return None


def set_current(root: Path, version: int) -> None:
    """Make the saved ``version`` live, atomically (e.g. to roll back to an earlier one).

    Every process holding a :class:`~retrieval.search.Retriever` on ``root`` serves it from
    its next search: readers see either the old pointer or the new one, never a torn file.
    """
    if not (root / f"v{version}" / "manifest.json").exists():
        raise IndexUnavailable(f"index version {version} does not exist under {root}")
    pointer = root / f".CURRENT-{version}"
    pointer.write_text(str(version))
    os.replace(pointer, root / "CURRENT")
