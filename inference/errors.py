"""Typed errors raised by generation backends.

Every error carries a message fit to show a clinician; callers map the class to an outcome.
"""

from __future__ import annotations


class BackendError(RuntimeError):
    """Base class: generation failed for a reason the caller should report."""

    user_message = "The language model failed to produce an answer."


class BackendUnavailable(BackendError):
    """The model server cannot be reached, or the local model cannot be loaded."""

    user_message = "The language model is unavailable right now. Please try again later."


class BackendTimeout(BackendError):
    """The model did not answer (or stopped streaming) within the configured time."""

    user_message = "The language model did not respond in time. Please try again."


class ContextOverflow(BackendError):
    """The prompt plus ``max_tokens`` does not fit the model's context window."""

    user_message = "The question and its evidence do not fit the model's context window."


class BadResponse(BackendError):
    """The server answered with something that is not a valid completion stream."""

    user_message = "The language model returned an invalid response."


class Cancelled(BackendError):
    """Generation was cancelled by the caller."""

    user_message = "The answer was cancelled."
