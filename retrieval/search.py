"""Question-to-evidence search over the live index version."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from retrieval.embedder import Embedder
from retrieval.index import VectorIndex, current_version
from retrieval.types import Hit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchResult:
    """Ranked hits for one question, the index version they came from, and the best score.

    ``top_score`` is the cosine similarity of the best passage (0.0 when nothing was found);
    callers compare it with a calibrated threshold to decide whether there is enough evidence.
    """

    hits: list[Hit]
    index_version: int
    top_score: float


class Retriever:
    """Embeds a question and searches the index version that is live under ``root``.

    Each search checks which version is current (one small file read) and loads a newly
    published version before answering, so every process serves a new index from its next
    question without a restart.
    """

    def __init__(self, embedder: Embedder, root: Path) -> None:
        self.embedder = embedder
        self.root = root
        self._index: VectorIndex | None = None
        self._lock = threading.Lock()

    def index(self) -> VectorIndex:
        """The live index, reloaded if a new version was published since the last call."""
        live = current_version(self.root)
        with self._lock:
            if self._index is None or (live is not None and live != self._index.version):
                self._index = VectorIndex.load(self.root, version=live)
                log.info("index version %s loaded (%s passages)", live, len(self._index))
            return self._index

    def search(self, question: str, *, k: int = 5) -> SearchResult:
        """The ``k`` passages most similar to ``question``, best first."""
        index = self.index()
        query = self.embedder.encode([question])
        hits = index.search(query, k)[0]
        return SearchResult(
            hits=hits, index_version=index.version, top_score=hits[0].score if hits else 0.0
        )
