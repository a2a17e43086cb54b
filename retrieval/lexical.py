"""BM25 over passage texts (``bm25s``), keyed by the same stable passage ids as the vector index.

``bm25s`` has no incremental updates, so the index keeps the passage texts and rebuilds the BM25
matrix lazily after an add or remove (about a second per 100K short passages). On disk a lexical
index is a folder holding the bm25s files, ``ids.npy`` (row ``i`` of BM25 is passage
``ids[i]``) and ``texts.jsonl`` (read back only if the loaded index is modified).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from retrieval.types import Hit

if TYPE_CHECKING:
    from numpy.typing import NDArray

log = logging.getLogger(__name__)

# Single characters count ("5 mg", "type 1"): bm25s's default pattern drops them.
TOKEN_PATTERN = r"(?u)\b\w+\b"


def tokenize(texts: list[str]) -> list[list[str]]:
    """Lower-cased word tokens without English stop words, as BM25 indexes and queries them."""
    import bm25s

    tokens: list[list[str]] = bm25s.tokenize(
        texts, token_pattern=TOKEN_PATTERN, stopwords="en", return_ids=False, show_progress=False
    )
    return tokens


class LexicalIndex:
    """BM25 scores for a question over every passage, with passage ids kept aligned."""

    def __init__(self) -> None:
        self._texts: dict[int, str] | None = {}
        self._texts_path: Path | None = None  # where texts live if not yet read back
        self._model: Any = None
        self._ids: NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        self._rows: dict[int, int] | None = None
        self._dirty = False

    def __len__(self) -> int:
        return len(self._texts) if self._texts is not None else len(self._ids)

    @property
    def ids(self) -> NDArray[np.int64]:
        """Passage id of each BM25 row, shape ``(n,)``."""
        self._build()
        return self._ids

    def _all_texts(self) -> dict[int, str]:
        if self._texts is None:
            assert self._texts_path is not None
            texts: dict[int, str] = {}
            with self._texts_path.open(encoding="utf-8") as fh:
                for line in fh:
                    row = json.loads(line)
                    texts[int(row[0])] = row[1]
            self._texts = texts
        return self._texts

    def texts(self, ids: list[int]) -> dict[int, str]:
        """The indexed text of each of ``ids`` present (loaded once per index version)."""
        store = self._all_texts()
        return {pid: store[pid] for pid in ids if pid in store}

    def add(self, ids: list[int], texts: list[str]) -> None:
        """Add (or replace) passages ``ids`` with their ``texts``."""
        if len(ids) != len(texts):
            raise ValueError(f"{len(ids)} ids but {len(texts)} texts")
        store = self._all_texts()
        for pid, text in zip(ids, texts, strict=True):
            store[int(pid)] = text
        self._dirty = True

    def remove(self, ids: list[int]) -> int:
        store = self._all_texts()
        removed = sum(store.pop(int(pid), None) is not None for pid in ids)
        self._dirty = self._dirty or removed > 0
        return removed

    def _build(self) -> None:
        if not self._dirty:
            return
        import bm25s

        store = self._all_texts()
        self._ids = np.fromiter(store.keys(), dtype=np.int64, count=len(store))
        self._rows = None
        if len(store):
            model = bm25s.BM25()
            model.index(tokenize(list(store.values())), show_progress=False)
            self._model = model
        else:
            self._model = None
        self._dirty = False

    def scores(self, question: str) -> NDArray[np.float32]:
        """BM25 score of every passage for ``question``, shape ``(n,)`` aligned with :attr:`ids`."""
        self._build()
        if self._model is None:
            return np.zeros(0, dtype=np.float32)
        token_ids = self._model.get_tokens_ids(tokenize([question])[0])
        if not token_ids:
            return np.zeros(len(self._ids), dtype=np.float32)
        return np.asarray(self._model.get_scores_from_ids(token_ids), dtype=np.float32)

    def top(self, scores: NDArray[np.float32], k: int) -> list[Hit]:
        """The ``k`` best passages in ``scores`` (from :meth:`scores`), best first, zeros out."""
        if k <= 0 or not len(scores):
            return []
        k = min(k, len(scores))
        best = np.argpartition(-scores, k - 1)[:k]
        # Ties broken by passage id, so rankings are deterministic.
        order = sorted(best, key=lambda i: (-float(scores[i]), int(self._ids[i])))
        return [Hit(int(self._ids[i]), float(scores[i])) for i in order if scores[i] > 0]

    def pick(self, scores: NDArray[np.float32], ids: list[int]) -> dict[int, float]:
        """The scores (from :meth:`scores`) of passages ``ids``; unknown ids are left out."""
        if self._rows is None:
            self._rows = {int(pid): row for row, pid in enumerate(self._ids)}
        rows = self._rows
        return {pid: float(scores[rows[pid]]) for pid in ids if pid in rows}

    def search(self, question: str, k: int) -> list[Hit]:
        """The ``k`` passages with the highest BM25 score for ``question``, best first."""
        return self.top(self.scores(question), k)

    def save(self, folder: Path) -> None:
        """Write the BM25 matrix, the id of each row and the texts into ``folder`` (new)."""
        self._build()
        folder.mkdir(parents=True)
        np.save(folder / "ids.npy", self._ids)
        with (folder / "texts.jsonl").open("w", encoding="utf-8") as fh:
            for pid, text in self._all_texts().items():
                fh.write(json.dumps([pid, text], ensure_ascii=False) + "\n")
        if self._model is not None:
            self._model.save(str(folder / "bm25"), show_progress=False)

    @classmethod
    def load(cls, folder: Path) -> LexicalIndex:
        import bm25s

        index = cls()
        index._ids = np.load(folder / "ids.npy")
        index._texts = None
        index._texts_path = folder / "texts.jsonl"
        if (folder / "bm25").exists():
            index._model = bm25s.BM25.load(str(folder / "bm25"), show_progress=False)
            if int(index._model.scores["num_docs"]) != len(index._ids):
                raise ValueError("BM25 rows and passage ids are out of step")
        return index
