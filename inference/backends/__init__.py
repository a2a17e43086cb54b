"""Generation backends: one class per engine, selected by name with :func:`load_backend`.

Heavy imports (torch, transformers, httpx) stay inside each backend module so that importing
this package is cheap.
"""

from __future__ import annotations

from typing import Any

from inference.backends.base import Backend


def load_backend(name: str, **options: Any) -> Backend:
    """Build the backend called ``name`` (``llamacpp``, ``transformers`` or ``vllm``)."""
    if name == "llamacpp":
        from inference.backends.llamacpp_backend import LlamaCppBackend

        return LlamaCppBackend(**options)
    if name == "transformers":
        from inference.backends.transformers_backend import TransformersBackend

        return TransformersBackend(**options)
    if name == "vllm":
        from inference.backends.vllm_backend import VLLMBackend

        return VLLMBackend(**options)
    raise ValueError(
        f"unknown inference backend {name!r}; expected 'llamacpp', 'transformers' or 'vllm'"
    )


__all__ = ["Backend", "load_backend"]
