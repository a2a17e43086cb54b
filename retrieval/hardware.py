"""Which torch precision runs fastest on the machine at hand, decided by capability.

bfloat16 is about 3x faster than float32 on CPUs with native bf16 arithmetic (AVX512-BF16 or
AMX) and 5-6x slower where it is emulated (AVX2-only CPUs, most servers and laptops), so the
choice is read from the processor, never from one measurement. The embedder (here) and the
embedded generator (``inference.backends.transformers_backend``) both resolve ``auto`` with
:func:`dtype_resolve`; an explicit precision always wins.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

AUTO = "auto"
DTYPES = ("bfloat16", "float32", "float16")


@dataclass(frozen=True)
class DtypeChoice:
    """The precision to load a model in, and why it was chosen (for the log and reports)."""

    dtype: str
    reason: str


@functools.cache
def cpu_native_bf16() -> tuple[bool, str]:
    """Whether this CPU computes bf16 natively, and the feature that says so (or its absence)."""
    try:
        import torch

        checks = (
            ("AMX", getattr(torch.cpu, "_is_amx_tile_supported", None)),
            ("AVX512-BF16", getattr(torch.cpu, "_is_avx512_bf16_supported", None)),
        )
        known = [(name, check) for name, check in checks if check is not None]
        if known:
            for name, check in known:
                if check():
                    return True, f"torch reports {name}"
            return False, "torch reports neither AVX512-BF16 nor AMX"
    except ImportError:  # pragma: no cover - torch is a dependency of every model here
        pass
    # An older torch without the probes: the kernel's view of the processor.
    flags = _proc_cpu_flags()
    for flag, name in (("amx_bf16", "AMX"), ("avx512_bf16", "AVX512-BF16")):
        if flag in flags:
            return True, f"/proc/cpuinfo lists {name}"
    return False, "/proc/cpuinfo lists neither AVX512-BF16 nor AMX"


def _proc_cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def dtype_resolve(requested: str, *, device: str = "cpu") -> DtypeChoice:
    """The precision to use for ``requested`` (``auto`` or one of :data:`DTYPES`) on ``device``.

    ``auto``: bfloat16 on CUDA (every current data-centre GPU has bf16 units) and on CPUs with
    native bf16; float32 everywhere else. Raises ``ValueError`` for an unknown name.
    """
    if requested != AUTO:
        if requested not in DTYPES:
            raise ValueError(f"unsupported dtype {requested!r}; use auto or one of {DTYPES}")
        return DtypeChoice(requested, "set explicitly")
    if device.startswith("cuda"):
        return DtypeChoice("bfloat16", "CUDA device: bf16 tensor cores")
    native, why = cpu_native_bf16()
    if native:
        return DtypeChoice("bfloat16", f"CPU computes bf16 natively ({why})")
    return DtypeChoice("float32", f"bf16 would be emulated on this CPU ({why})")


_logged: set[tuple[str, str, str]] = set()


def dtype_log_once(component: str, requested: str, choice: DtypeChoice) -> None:
    """Log the choice for ``component`` once per process, with its reason."""
    key = (component, requested, choice.dtype)
    if key in _logged:
        return
    _logged.add(key)
    log.info(
        "%s precision: %s (%s=%s; %s)",
        component,
        choice.dtype,
        "requested",
        requested,
        choice.reason,
    )
