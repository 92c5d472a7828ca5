"""What machine a benchmark ran on: the CPU's model name and kind, read once from /proc/cpuinfo.

Benchmarks run as scripts (``python benchmarks/bench_x.py``), so ``benchmarks/`` is on ``sys.path`` and they
import this module as ``machine``.
"""

from __future__ import annotations

import platform
from pathlib import Path

__all__ = ["cpu_kind", "cpu_model", "cpuinfo"]


def cpuinfo() -> str:
    """The text of /proc/cpuinfo, or '' where there is none."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` says only ``x86_64``)."""
    for line in cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_kind() -> str:
    """``avx2``, ``avx512`` or ``avx512_amx``: the file suffix, since the ratios differ between CPU kinds."""
    import torch

    kind = torch.backends.cpu.get_cpu_capability().lower()
    return kind + "_amx" if " amx_bf16" in cpuinfo() else kind
