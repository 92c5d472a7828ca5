"""Keep freed CPU memory in the process for reuse, the way PyTorch's CUDA caching allocator keeps GPU memory.

A 1024 px generator allocates and frees feature maps of 32-64 MiB in every call. glibc's ``malloc``
serves blocks that large with a fresh ``mmap`` and returns them to the kernel on ``free``, so every call
faults in (and zeroes) every page again: on a 2-core EPYC that was a third of MobileStyleGAN's forward
time (a ``[1, 64, 512, 512]`` depthwise convolution: 63 ms with fresh pages, 16-21 ms with reused ones).
OpenVINO and oneDNN avoid it with their own memory pools; PyTorch on the CPU uses ``malloc``.

:func:`retain_freed_memory` raises glibc's mmap and trim thresholds so freed blocks stay in the heap and
the next call reuses their pages. The process's resident memory then stays near its peak instead of
shrinking between calls (the usual trade of a caching allocator). It changes a process-wide setting, so
latentkit applies it where it runs networks (:func:`latentkit.load_generator`, the CLI) and says so;
set ``LATENTKIT_RETAIN_CPU_MEMORY=0`` to leave ``malloc`` as it is. Elsewhere than glibc it does nothing.

Each retained heap belongs to one malloc arena, and glibc gives every thread that allocates an arena of its
own (up to 8 per core). Projection runs images side by side on worker threads
(:mod:`latentkit.projection.cpu_parallel`), so each worker kept a retained heap of its own. The policy
therefore also caps the arenas at :data:`MALLOC_ARENAS` (as ``MALLOC_ARENA_MAX=2`` would): a default 4-image
projection of the 1024 px default model on 2 cores peaked at 5.0 GB instead of 6.0 GB, at the same speed
(two images' activations side by side remain: one image alone peaks at 2.5 GB). A ``MALLOC_ARENA_MAX`` the
user set is left alone.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

__all__ = ["MALLOC_ARENAS", "RETAIN_ENV", "retain_freed_memory"]

RETAIN_ENV = "LATENTKIT_RETAIN_CPU_MEMORY"
"""Environment variable: ``0`` (or ``false``/``no``/``off``) keeps glibc's default malloc policy."""

MALLOC_ARENAS = 2
"""glibc malloc arenas the policy allows: the worker threads share them (and their retained heaps)."""

# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -2, -3, -8
# Blocks up to this size come from the heap (glibc accepts any value since 2.26; older ones cap at 32 MiB).
_MMAP_THRESHOLD = 1 << 30
_MMAP_THRESHOLD_OLD_GLIBC = 32 << 20
_TRIM_THRESHOLD = (1 << 31) - 1  # the largest int: never give the top of the heap back
_TOP_PAD = 64 << 20  # grow the heap in 64 MiB steps

_applied: bool | None = None


def retain_freed_memory() -> bool:
    """Make glibc keep freed blocks (up to 1 GiB each) for reuse instead of returning them to the kernel.

    Idempotent: the first call decides, later calls return the same answer.

    Returns:
        True if the policy is in effect; False when ``LATENTKIT_RETAIN_CPU_MEMORY=0``, on a platform without
        glibc, or if glibc refused the setting.
    """
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def _apply() -> bool:
    if os.environ.get(RETAIN_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if not mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) and not mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_OLD_GLIBC):
        return False
    if "MALLOC_ARENA_MAX" not in os.environ and not mallopt(_M_ARENA_MAX, MALLOC_ARENAS):
        return False
    return bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)) and bool(mallopt(_M_TOP_PAD, _TOP_PAD))
