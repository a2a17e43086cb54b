"""Typed errors raised while reading documents or using an index."""

from __future__ import annotations


class RetrievalError(RuntimeError):
    """Base class for retrieval failures; the message is fit to show an admin."""


class DocumentError(RetrievalError):
    """A document could not be parsed (empty, undecodable, malformed or too large)."""


class IndexUnavailable(RetrievalError):
    """An index is missing, corrupt, or was built with a different embedder."""
