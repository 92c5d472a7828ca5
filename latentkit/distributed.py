"""Running as one of several processes started by ``torchrun``: detect it, join the group, pick the device.

``torchrun --nproc-per-node K -m latentkit ...`` (and ``--nnodes N --rdzv-endpoint HOST:PORT`` for several
machines) starts K processes per machine and gives each the environment variables ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. :func:`init_distributed` reads them,
initialises ``torch.distributed`` (NCCL for CUDA, gloo for the CPU) and gives rank R the device
``cuda:LOCAL_RANK``. Outside torchrun it returns None and nothing changes.

A *shard* is ``(rank, world_size)``: the part of a job this process does. Library functions that accept
``shard=`` (:func:`~latentkit.projection.batch.project_files`,
:meth:`~latentkit.latent.prior.GaussianPrior.from_generator`) exchange their small results with
:func:`all_gather_objects` over the default process group, which must be initialised when
``world_size > 1``.
"""

from __future__ import annotations

import atexit
import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any

from latentkit.errors import InputError

__all__ = ["DistributedContext", "all_gather_objects", "check_shard", "init_distributed", "shard_range",
           "torchrun_environment"]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = datetime.timedelta(hours=6)  # ranks wait this long for each other at the end of a job
_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in a torchrun job.

    Attributes:
        rank: global rank in ``[0, world_size)``.
        world_size: number of processes in the job.
        local_rank: rank on this machine (which GPU it uses).
        device: the ``torch.device`` this rank computes on.
        backend: ``'nccl'`` or ``'gloo'``.
    """

    rank: int
    world_size: int
    local_rank: int
    device: Any
    backend: str

    @property
    def shard(self) -> tuple[int, int]:
        """``(rank, world_size)``, the ``shard=`` argument of the library functions."""
        return (self.rank, self.world_size)

    @property
    def is_main(self) -> bool:
        """True on rank 0, the rank that writes shared files (the merged manifest, the prior)."""
        return self.rank == 0


def torchrun_environment(environ: dict[str, str] | None = None) -> dict[str, int] | None:
    """``{'rank', 'world_size', 'local_rank'}`` from torchrun's variables, or None outside torchrun.

    Raises:
        InputError: some of ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` set and not others, or not integers
            with ``0 <= RANK < WORLD_SIZE``.
    """
    env = os.environ if environ is None else environ
    present = [name for name in _VARIABLES if name in env]
    if not present:
        return None
    if len(present) < len(_VARIABLES):
        missing = [name for name in _VARIABLES if name not in env]
        raise InputError(f"torchrun environment incomplete: {', '.join(present)} set but not {', '.join(missing)}; "
                         "start the job with torchrun (or set all three), or unset them for one process")
    try:
        rank, world, local = (int(env[name]) for name in _VARIABLES)
    except ValueError:
        raise InputError("RANK, WORLD_SIZE and LOCAL_RANK must be integers, got "
                         + ", ".join(f"{n}={env[n]!r}" for n in _VARIABLES)) from None
    if world < 1 or not 0 <= rank < world or local < 0:
        raise InputError(f"need WORLD_SIZE >= 1, 0 <= RANK < WORLD_SIZE and LOCAL_RANK >= 0, got RANK={rank}, "
                         f"WORLD_SIZE={world}, LOCAL_RANK={local}")
    return {"rank": rank, "world_size": world, "local_rank": local}


def init_distributed(device: Any = None, *, timeout: datetime.timedelta = DEFAULT_TIMEOUT) -> DistributedContext | None:
    """Join the torchrun job this process belongs to; None (and nothing done) outside torchrun.

    Args:
        device: what the user asked for: a ``torch.device``/string of type ``'cuda'`` or ``'cpu'``, or None
            (CUDA when available). CUDA becomes ``cuda:LOCAL_RANK``, one GPU per rank.
        timeout: how long a collective waits for the slowest rank.

    Returns:
        The :class:`DistributedContext`; the default process group is initialised (NCCL on CUDA, gloo on
        the CPU) and destroyed when the process exits.

    Raises:
        InputError: an inconsistent torchrun environment, or more ranks on this machine than GPUs.
    """
    import torch
    import torch.distributed as dist

    env = torchrun_environment()
    if env is None:
        return None
    wanted = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    local = env["local_rank"]
    if wanted.type == "cuda":
        count = torch.cuda.device_count()
        if local >= count:
            raise InputError(f"LOCAL_RANK {local} needs GPU {local}, but this machine has {count}: start at most "
                             f"{count} processes per node (--nproc-per-node {max(count, 1)}), or use --device cpu")
        wanted = torch.device("cuda", local)
        torch.cuda.set_device(wanted)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, init_method="env://", rank=env["rank"], world_size=env["world_size"],
                                timeout=timeout)
        atexit.register(_destroy)
    logger.info("rank %d of %d (local rank %d) on %s, backend %s", env["rank"], env["world_size"], local, wanted, backend)
    return DistributedContext(env["rank"], env["world_size"], local, wanted, backend)


def _destroy() -> None:
    """At exit: wait for every rank (at most a minute), then tear the group down. gloo aborts a process
    (``terminate called without an active exception``) that destroys its group while a peer still sends."""
    import datetime

    import torch.distributed as dist

    if not dist.is_initialized():
        return
    try:
        if dist.get_backend() == "gloo":
            dist.monitored_barrier(timeout=datetime.timedelta(seconds=60))
        else:
            dist.barrier()
    except RuntimeError:  # a peer is gone already: nothing to wait for
        pass
    dist.destroy_process_group()


def shard_range(shard: tuple[int, int] | None) -> tuple[int, int]:
    """``shard`` as ``(rank, world_size)`` (None: ``(0, 1)``, the whole job), range checks only (no process group).

    Raises:
        InputError: not two integers with ``0 <= rank < world_size``.
    """
    if shard is None:
        return (0, 1)
    try:
        rank, world = (int(x) for x in shard)
    except (TypeError, ValueError):
        raise InputError(f"shard must be (rank, world_size), got {shard!r}") from None
    if world < 1 or not 0 <= rank < world:
        raise InputError(f"shard must be (rank, world_size) with 0 <= rank < world_size, got {shard!r}")
    return (rank, world)


def check_shard(shard: tuple[int, int] | None) -> tuple[int, int]:
    """:func:`shard_range`, and for ``world_size > 1`` the matching initialised process group.

    Raises:
        InputError: not two integers with ``0 <= rank < world_size``, or ``world_size > 1`` without an
            initialised process group of that size.
    """
    rank, world = shard_range(shard)
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized() or (dist.get_rank(), dist.get_world_size()) != (rank, world):
            raise InputError(f"shard={shard!r} needs the matching torch.distributed process group: start the "
                             "processes with torchrun and call latentkit.distributed.init_distributed() first")
    return (rank, world)


def all_gather_objects(obj: Any, world_size: int) -> list[Any]:
    """Every rank's ``obj`` (picklable, small), in rank order; ``[obj]`` for one process. A barrier too."""
    if world_size == 1:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * world_size
    dist.all_gather_object(out, obj)
    return out
