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

Side by side, each job holds its own activations, so memory grows with the number of jobs.
:func:`memory_workers` bounds them by the memory the kernel reports available (``MemAvailable``), from a
per-job estimate the caller measures (projection: :func:`saved_bytes` of one probe forward pass), and
:func:`run_per_core` takes that bound as ``max_workers`` without changing any job's threads or bits.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

__all__ = ["MEMORY_SHARE", "available_memory", "core_budget", "core_groups", "job_threads", "memory_workers",
           "one_thread_per_image", "run_per_core", "saved_bytes"]

MEMORY_SHARE = 0.8
"""Of the memory the kernel reports available, the share that further side-by-side jobs may take."""

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


def available_memory() -> int | None:
    """Bytes that new allocations can take without swapping (Linux ``MemAvailable``); None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def memory_workers(job_bytes: int, available: int | None = None) -> int | None:
    """How many jobs of ``job_bytes`` each may run side by side when one is already resident: 1 + as many
    more as fit in :data:`MEMORY_SHARE` of the available memory (``available``, default
    :func:`available_memory`). None when the available memory is unknown (no limit)."""
    free = available_memory() if available is None else available
    if free is None or job_bytes <= 0:
        return None
    return 1 + int(MEMORY_SHARE * free // job_bytes)


def saved_bytes(fn: Callable[[], object]) -> int:
    """Bytes of the tensors autograd saves for the backward pass while ``fn()`` runs (each storage once);
    ``fn``'s result is dropped."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values())


def job_threads(n_jobs: int) -> int:
    """Intra-op threads each of ``n_jobs`` side-by-side jobs computes with (:func:`run_per_core`'s rule: one
    inside :func:`one_thread_per_image`, else an equal share of the cores)."""
    if getattr(_state, "budget", None) is not None:
        return 1
    return core_groups(n_jobs, core_budget())[1]


def _pool(workers: int) -> ThreadPoolExecutor:
    with _pools_lock:
        if workers not in _pools:
            _pools[workers] = ThreadPoolExecutor(workers, thread_name_prefix="latentkit-core")
        return _pools[workers]


def run_per_core(fn: Callable[[T], R], items: Sequence[T], *, max_workers: int | None = None) -> list[R]:
    """``[fn(item) for item in items]``, run on groups of cores (:func:`core_groups`), results in order.

    With one group (one item, or one thread) it is that plain loop on the calling thread. Otherwise each
    call runs on a worker thread with :func:`job_threads` intra-op threads, at most ``max_workers`` at a
    time (e.g. :func:`memory_workers`: fewer jobs side by side, each with the same threads, so a job's
    result does not depend on the limit); the caller's thread count is unchanged afterwards. The first
    exception raised by ``fn`` is re-raised here.
    """
    main_threads = torch.get_num_threads()
    workers = core_groups(len(items), core_budget())[0]
    if workers == 1:
        return [fn(item) for item in items]
    per_job = job_threads(len(items))
    if max_workers is not None:
        workers = max(1, min(workers, max_workers))

    def job(item: T) -> R:
        if torch.get_num_threads() != per_job:
            torch.set_num_threads(per_job)  # this worker thread's OpenMP / MKL setting
        return fn(item)

    try:
        return list(_pool(workers).map(job, items))
    finally:
        torch.set_num_threads(main_threads)  # set_num_threads also updates the default new threads inherit
