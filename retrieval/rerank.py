"""Optional second stage: re-order retrieved passages with a cross-encoder.

A cross-encoder reads the question and one passage together and scores their relevance, which
ranks better than comparing two independent embeddings but costs one model pass per passage, so
it only re-orders a few dozen candidates from the fused ranking (see
:class:`retrieval.search.Retriever`). Its score goes into :attr:`Hit.rerank`; each hit's
``score`` stays the dense cosine similarity, the scale the app's no-evidence threshold is
calibrated on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Protocol

import numpy as np

from retrieval.types import Hit

log = logging.getLogger(__name__)

# The production default (Apache-2.0, ~23M parameters): trained on MS MARCO passage ranking.
DEFAULT_RERANKER = "cross-encoder/ms-marco-MiniLM-L-6-v2"


class Reranker(Protocol):
    """Re-orders hits for a question by a relevance model."""

    def rerank(self, question: str, hits: list[Hit], texts: Mapping[int, str], k: int) -> list[Hit]:
        """The ``k`` most relevant of ``hits``, best first, each with :attr:`Hit.rerank` set.

        ``texts`` maps passage ids to the passage texts the model reads.
        """
        ...


def order_by_scores(hits: list[Hit], scores: list[float], k: int) -> list[Hit]:
    """The ``k`` best ``hits`` by ``scores`` (one per hit), each copied with ``rerank`` set.

    Ties keep the input order (the fused ranking's), so results are deterministic.
    """
    if len(hits) != len(scores):
        raise ValueError(f"{len(hits)} hits but {len(scores)} scores")
    order = sorted(range(len(hits)), key=lambda i: (-scores[i], i))
    return [replace(hits[i], rerank=scores[i]) for i in order[: max(k, 0)]]


class CrossEncoderReranker:
    """Scores ``(question, passage)`` pairs with a ``sentence_transformers.CrossEncoder``.

    ``model`` is a local directory (a Hugging Face sequence-classification model with one label
    and its tokenizer) or, in production, a hub id such as :data:`DEFAULT_RERANKER`, resolved by
    sentence-transformers with the hub's usual cache. ``dtype`` is ``float32`` or ``bfloat16``.
    The score is the model's raw logit (no sigmoid: it would saturate and tie confident pairs);
    it orders passages for one question and is not comparable across models or with cosine.
    Passages longer than ``max_length`` tokens (default: the model's limit) are truncated.
    The model loads lazily on first use and is shared by threads.
    """

    def __init__(
        self,
        model: str = DEFAULT_RERANKER,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        batch_size: int = 32,
        max_length: int | None = None,
    ) -> None:
        if dtype not in ("float32", "bfloat16"):
            raise ValueError(f"unsupported reranker dtype {dtype!r}")
        self.model_name = model
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.max_length = max_length
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                import torch
                from sentence_transformers import CrossEncoder

                model = CrossEncoder(
                    self.model_name, device=self.device, max_length=self.max_length
                )
                if self.dtype == "bfloat16":
                    model = model.to(torch.bfloat16)
                model.eval()
                self._model = model
                log.info("reranker loaded: %s on %s (%s)", self.model_name, self.device, self.dtype)
        return self._model

    def scores(self, question: str, passages: list[str]) -> list[float]:
        """Relevance of each of ``passages`` to ``question`` (raw logits), in input order."""
        if not passages:
            return []
        import torch

        model = self._load()
        raw = model.predict(
            [(question, text) for text in passages],
            batch_size=self.batch_size,
            activation_fn=torch.nn.Identity(),
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return [float(s) for s in np.asarray(raw, dtype=np.float32).reshape(len(passages))]

    def rerank(self, question: str, hits: list[Hit], texts: Mapping[int, str], k: int) -> list[Hit]:
        """The ``k`` best of ``hits`` by cross-encoder score, best first (see :class:`Reranker`).

        Hits whose passage has no text in ``texts`` cannot be scored: they follow the scored
        ones in their input order, with ``rerank`` left ``None``.
        """
        if k <= 0 or not hits:
            return []
        scorable = [h for h in hits if h.passage_id in texts]
        unscored = [h for h in hits if h.passage_id not in texts]
        if unscored:
            log.warning("reranker: no text for passages %s", [h.passage_id for h in unscored])
        scores = self.scores(question, [texts[h.passage_id] for h in scorable])
        return (order_by_scores(scorable, scores, len(scorable)) + unscored)[:k]
