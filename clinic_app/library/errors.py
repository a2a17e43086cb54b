"""The library's one error: a request that cannot be carried out, with the reason for the admin."""

from __future__ import annotations


class LibraryError(ValueError):
    """The request cannot be carried out; the message says why, for the admin."""
