"""Question-to-evidence search over the live index version: dense, BM25 and their fusion."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from retrieval.coverage import LibraryVocabulary
from retrieval.embedder import Embedder
from retrieval.errors import IndexUnavailable
from retrieval.index import VectorIndex, current_version
from retrieval.rerank import Reranker
from retrieval.types import Hit

if TYPE_CHECKING:
    from numpy.typing import NDArray

log = logging.getLogger(__name__)

# ``score``: normalised score combination weighted towards dense; ``rrf``: reciprocal-rank
# fusion; ``dense`` and ``bm25``: one ranking alone (for comparison).
#
# The default and its weight were chosen on the PubMedQA dev split only (bench/retrieval.py,
# docs/retrieval.md): dense retrieval is the stronger part there, so an equal-weight fusion
# (RRF, or the score combination at 0.5) lets BM25 overturn dense's correct first hit about as
# often as it fixes a wrong one, and on some halves of the data it ranks below dense alone at
# rank 1. Weighting the dense score 0.8 lets BM25 decide between near ties (exact drug names,
# scores, abbreviations) without outvoting a clear dense winner.
FUSIONS = ("score", "rrf", "dense", "bm25")
DEFAULT_FUSION = "score"
RRF_K = 60  # the constant of Cormack et al. (2009); large k flattens the top ranks
SCORE_ALPHA = 0.8  # weight of the dense score in the score combination (PubMedQA dev split)


@dataclass(frozen=True)
class SearchResult:
    """Ranked hits for one question, the index version they came from, and the best score.

    ``top_score`` is the highest dense cosine similarity among the hits (0.0 when nothing was
    found), whatever ranked them (a reranker included); callers compare it with a threshold
    calibrated on cosine to decide whether there is enough evidence.
    """

    hits: list[Hit]
    index_version: int
    top_score: float


def fuse_rrf(rankings: list[list[int]], *, k: int = RRF_K) -> list[tuple[int, float]]:
    """Reciprocal-rank fusion: ``sum(1 / (k + rank))`` over the rankings (rank from 1).

    Returns ``(passage_id, fused score)`` best first; ties broken by passage id.
    """
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, pid in enumerate(ranking, start=1):
            fused[pid] = fused.get(pid, 0.0) + 1.0 / (k + rank)
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))


def _min_max(scores: dict[int, float]) -> dict[int, float]:
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    if high - low <= 1e-12:
        return {pid: 1.0 if high > 0 else 0.0 for pid in scores}
    return {pid: (s - low) / (high - low) for pid, s in scores.items()}


def fuse_scores(
    dense: dict[int, float], lexical: dict[int, float], *, alpha: float = SCORE_ALPHA
) -> list[tuple[int, float]]:
    """Score combination: ``alpha * minmax(cosine) + (1 - alpha) * minmax(bm25)``.

    Both dicts should score the same candidate set (missing entries count as the minimum).
    Returns ``(passage_id, fused score)`` best first; ties broken by passage id.
    """
    d, b = _min_max(dense), _min_max(lexical)
    ids = set(dense) | set(lexical)
    fused = {pid: alpha * d.get(pid, 0.0) + (1 - alpha) * b.get(pid, 0.0) for pid in ids}
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))


class Retriever:
    """Embeds a question and searches the index version that is live under ``root``.

    With a BM25 part in the index (passages indexed with their texts), dense and BM25 rankings
    of ``candidates`` passages each are fused by ``fusion`` (see :data:`FUSIONS`); without
    one, search is dense only. Every hit's ``score`` is its dense cosine similarity.

    With a ``reranker`` (:mod:`retrieval.rerank`), the ``max(k, rerank_candidates)`` best
    passages of that ranking are re-ordered by the reranker and the best ``k`` returned. It
    reads the passage texts from ``passage_texts`` (passage ids to texts) when given, else from
    the index version's BM25 part, which keeps the texts the passages were indexed with, so the
    texts always match the hits' index version (read into memory once per loaded version).
    Without a reranker nothing of this runs.

    Each search checks which version is current (one small file read) and loads a newly
    published version before answering, so every process serves a new index from its next
    question without a restart.
    """

    def __init__(
        self,
        embedder: Embedder,
        root: Path,
        *,
        fusion: str = DEFAULT_FUSION,
        candidates: int = 50,
        rrf_k: int = RRF_K,
        alpha: float = SCORE_ALPHA,
        reranker: Reranker | None = None,
        rerank_candidates: int = 20,
        passage_texts: Callable[[list[int]], Mapping[int, str]] | None = None,
        device: str = "cpu",
    ) -> None:
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}; choose one of {', '.join(FUSIONS)}")
        self.embedder = embedder
        self.root = root
        self.fusion = fusion
        self.candidates = candidates
        self.rrf_k = rrf_k
        self.alpha = alpha
        self.reranker = reranker
        self.rerank_candidates = rerank_candidates
        self.passage_texts = passage_texts
        self.device = device
        self._index: VectorIndex | None = None
        self._vocabulary: tuple[int, LibraryVocabulary] | None = None
        self._lock = threading.Lock()

    def index(self) -> VectorIndex:
        """The live index, reloaded if a new version was published since the last call."""
        live = current_version(self.root)
        with self._lock:
            if self._index is None or (live is not None and live != self._index.version):
                self._index = VectorIndex.load(self.root, version=live)
                used = self._index.use_gpu(self.device)
                log.info(
                    "index version %s loaded (%s passages, bm25=%s, searching on %s)",
                    live,
                    len(self._index),
                    self._index.has_lexical,
                    used,
                )
            return self._index

    def vocabulary(self) -> LibraryVocabulary | None:
        """Every word of the live version's passages, built once per version.

        ``None`` for an index without a BM25 part (it keeps no texts). Used to tell that a
        question's term appears nowhere in the library (:mod:`retrieval.coverage`).
        """
        index = self.index()
        if index.lexical is None:
            return None
        with self._lock:
            if self._vocabulary is None or self._vocabulary[0] != index.version:
                lexical = index.lexical
                texts = lexical.texts([int(i) for i in lexical.ids]).values()
                self._vocabulary = (index.version, LibraryVocabulary(texts))
                log.info(
                    "library vocabulary of index version %s: %s words",
                    index.version,
                    len(self._vocabulary[1]),
                )
            return self._vocabulary[1]

    def search(self, question: str, *, k: int = 5) -> SearchResult:
        """The ``k`` best passages for ``question``, best first."""
        index = self.index()
        query = self.embedder.encode([question])
        n = k if self.reranker is None else max(k, self.rerank_candidates)
        if self.fusion == "dense" or index.lexical is None:
            hits = index.search(query, n)[0]
        else:
            hits = self._hybrid(index, question, query, n)
        if self.reranker is not None:
            texts = self._texts(index, [h.passage_id for h in hits])
            hits = self.reranker.rerank(question, hits, texts, k)
        return SearchResult(
            hits=hits,
            index_version=index.version,
            top_score=max((h.score for h in hits), default=0.0),
        )

    def _texts(self, index: VectorIndex, ids: list[int]) -> Mapping[int, str]:
        """Texts of passages ``ids`` for the reranker (see the class docstring)."""
        if self.passage_texts is not None:
            return self.passage_texts(ids)
        if index.lexical is None:
            raise IndexUnavailable(
                "the reranker needs passage texts: this index has none (it was built without"
                " BM25); pass passage_texts to the Retriever"
            )
        return index.lexical.texts(ids)

    def _hybrid(
        self, index: VectorIndex, question: str, vector: NDArray[np.float32], k: int
    ) -> list[Hit]:
        """Fused ranking; ``vector`` is the embedded question, shape ``(1, dim)``."""
        assert index.lexical is not None
        n = max(k, self.candidates)
        # 1. Both rankings over the same passage ids.
        dense = index.search(vector, n)[0]
        bm25_all = index.lexical.scores(question)
        lexical = index.lexical.top(bm25_all, n)
        # 2. Exact cosine and BM25 for every candidate, whichever ranking found it.
        cosine = {h.passage_id: h.score for h in dense}
        cosine.update(index.similarities(vector[0], [h.passage_id for h in lexical]))
        bm25 = index.lexical.pick(bm25_all, list(cosine))
        # 3. Fuse.
        if self.fusion == "rrf":
            ranking = [[h.passage_id for h in dense], [h.passage_id for h in lexical]]
            fused = fuse_rrf(ranking, k=self.rrf_k)
        elif self.fusion == "score":
            fused = fuse_scores(cosine, bm25, alpha=self.alpha)
        else:  # bm25 alone
            fused = [(h.passage_id, h.score) for h in lexical]
        return [
            Hit(pid, cosine[pid], lexical=bm25.get(pid, 0.0), fused=score)
            for pid, score in fused[:k]
            if pid in cosine
        ]
