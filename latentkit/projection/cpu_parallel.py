"""Independent CPU jobs side by side on groups of cores, each with its own intra-op threads.

On a CPU, one small job (one image's forward and backward pass) spread over every core scales poorly:
elementwise passes and small matrix products synchronise the cores at every op. Running ``k`` jobs at
once, each on ``threads // k`` cores, keeps every core busy. On a 2-core AVX2 EPYC two matrix-product and
convolution jobs at one thread each did 1.31x the work of the same two run in turn on two threads, and a
projection batch of 4 ran 1.25x the images per second of batch 1 (``benchmarks/bench_speed.py project``).
PyTorch releases the GIL inside its ops, so Python threads suffice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

__all__ = ["core_groups", "run_per_core"]

T = TypeVar("T")
R = TypeVar("R")

_pools: dict[int, ThreadPoolExecutor] = {}  # kept: their OpenMP teams and malloc arenas are reused
_pools_lock = threading.Lock()


def core_groups(n_jobs: int, threads: int | None = None) -> tuple[int, int]:
    """How ``n_jobs`` jobs share ``threads`` intra-op threads (default: ``torch.get_num_threads()``).

    Returns:
        ``(workers, threads_per_job)``: ``min(n_jobs, threads)`` jobs at a time, each with
        ``threads // workers`` threads (at least 1).
    """
    threads = torch.get_num_threads() if threads is None else threads
    workers = max(1, min(n_jobs, threads))
    return workers, max(1, threads // workers)


def _pool(workers: int) -> ThreadPoolExecutor:
    with _pools_lock:
        if workers not in _pools:
            _pools[workers] = ThreadPoolExecutor(workers, thread_name_prefix="latentkit-core")
        return _pools[workers]


def run_per_core(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``[fn(item) for item in items]``, run on groups of cores (:func:`core_groups`), results in order.

    With one group (one item, or one thread) it is that plain loop on the calling thread. Otherwise each
    call runs on a worker thread with ``threads_per_job`` intra-op threads; the caller's thread count is
    unchanged afterwards. The first exception raised by ``fn`` is re-raised here.
    """
    main_threads = torch.get_num_threads()
    workers, per_job = core_groups(len(items), main_threads)
    if workers == 1:
        return [fn(item) for item in items]

    def job(item: T) -> R:
        if torch.get_num_threads() != per_job:
            torch.set_num_threads(per_job)  # this worker thread's OpenMP / MKL setting
        return fn(item)

    try:
        return list(_pool(workers).map(job, items))
    finally:
        torch.set_num_threads(main_threads)  # set_num_threads also updates the default new threads inherit
