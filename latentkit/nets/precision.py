"""Opt-in reduced precision: autocast contexts for synthesis and projection (``fp32`` | ``bf16`` | ``fp16``).

``'fp32'`` (the default) changes nothing. ``'bf16'`` runs convolutions and matrix products in bfloat16
under :func:`torch.autocast` on the CPU (fast where the CPU has AMX or AVX512-BF16, see
:func:`cpu_has_fast_bf16`) and on CUDA; ``'fp16'`` is for CUDA only. Reductions, losses, the optimiser
and everything returned stay float32.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from typing import Any

import torch

from latentkit.errors import InputError

__all__ = ["PRECISIONS", "autocast", "check_precision", "cpu_has_fast_bf16"]

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16")


def check_precision(precision: str) -> str:
    """Return ``precision`` if it is one of :data:`PRECISIONS`.

    Raises:
        InputError: for any other value.
    """
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """Whether oneDNN reports native bfloat16 support on this CPU (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - builds without oneDNN
        return False


def autocast(device: torch.device | str, precision: str) -> Any:
    """A context manager running the enclosed forward passes in ``precision`` on ``device``.

    Args:
        device: where the computation runs.
        precision: ``'fp32'`` (a no-op context), ``'bf16'`` or ``'fp16'`` (CUDA only).

    Returns:
        ``contextlib.nullcontext()`` for fp32, else a :func:`torch.autocast` context.

    Raises:
        InputError: an unknown precision, or ``'fp16'`` on a device other than CUDA.
    """
    check_precision(precision)
    kind = torch.device(device).type
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and kind != "cuda":
        raise InputError(f"precision='fp16' needs a CUDA device (got {kind}); use 'bf16' on the CPU")
    if kind == "cpu" and not cpu_has_fast_bf16():
        logger.warning("precision='bf16' on a CPU without AVX512-BF16/AMX: emulated, likely slower than fp32")
    return torch.autocast(kind, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
