"""Independent CPU jobs side by side on groups of cores, each with its own intra-op threads.

On a CPU, one small job (one image's forward and backward pass) spread over every core scales poorly:
elementwise passes and small matrix products synchronise the cores at every op. Running ``k`` jobs at
once, each on ``threads // k`` cores, keeps every core busy. On a 2-core AVX2 EPYC two matrix-product and
convolution jobs at one thread each did 1.31x the work of the same two run in turn on two threads, and a
projection batch of 4 ran 1.25x the images per second of batch 1 (``benchmarks/bench_speed.py project``).
PyTorch releases the GIL inside its ops, so Python threads suffice.

Inside :func:`one_thread_per_image` (how projection runs on the CPU) every job and the calling thread
compute with exactly one intra-op thread, so a result never depends on the thread count, the batch an image
falls in, or the number of processes (a torchrun job gives each rank one thread): the reductions run in
the same order everywhere. The cores are used by running images side by side instead.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

__all__ = ["core_budget", "core_groups", "one_thread_per_image", "run_per_core"]

T = TypeVar("T")
R = TypeVar("R")

_pools: dict[int, ThreadPoolExecutor] = {}  # kept: their OpenMP teams and malloc arenas are reused
_pools_lock = threading.Lock()


_state = threading.local()  # .budget: the thread count before one_thread_per_image, while inside it


@contextlib.contextmanager
def one_thread_per_image(device: torch.device) -> Iterator[None]:
    """On the CPU: the calling thread and every :func:`run_per_core` job compute on one intra-op thread (the
    previous thread count is the budget of side-by-side jobs). Elsewhere: nothing changes."""
    if device.type != "cpu" or getattr(_state, "budget", None) is not None:
        yield
        return
    _state.budget = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(_state.budget)
        _state.budget = None


def core_budget() -> int:
    """Threads this caller may use: the count before :func:`one_thread_per_image`, else torch's."""
    budget = getattr(_state, "budget", None)
    return torch.get_num_threads() if budget is None else budget


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
    workers, per_job = core_groups(len(items), core_budget())
    if getattr(_state, "budget", None) is not None:
        per_job = 1
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
