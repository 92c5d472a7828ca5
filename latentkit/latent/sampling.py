"""Latents from seeds and from the mapping network, reproducibly and in bounded memory.

Seeds give z exactly as NVIDIA's ``gen_images.py`` draws them. Streams of mapped latents draw z on the
CPU from ``torch.Generator().manual_seed(seed)`` in fixed blocks, so the stream of samples is the same
whatever the batch size or device; classes of conditional generators come from a second generator
(``seed + 1``), uniformly over the chosen classes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from latentkit.distributed import shard_range
from latentkit.errors import InputError

if TYPE_CHECKING:
    from latentkit.nets.generator import Generator

__all__ = ["z_from_seed", "parse_seeds", "one_hot", "iter_mapping", "sample_w", "resolve_classes", "shard_size"]



def z_from_seed(seed: int, z_dim: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """Draw ``z [1, z_dim]`` for ``seed`` as NVIDIA's ``gen_images.py`` does.

    ``np.random.RandomState(seed).randn(1, z_dim)`` cast to float32; drawn on the CPU, so a seed gives
    the same z on every device.

    Example:
        >>> z_from_seed(3, 512).shape
        torch.Size([1, 512])
    """
    if not 0 <= int(seed) < 2**32:
        raise InputError(f"seed must be in [0, 2**32), got {seed}")
    z = np.random.RandomState(int(seed)).randn(1, z_dim)
    return torch.from_numpy(z).to(torch.float32).to(device or "cpu")


MAX_SEEDS = 100_000
"""Most seeds one ``parse_seeds`` accepts (pass ``limit=`` to change it)."""


def parse_seeds(text: str, *, limit: int = MAX_SEEDS) -> list[int]:
    """Parse ``'0-7'``, ``'1,5,9'`` or ``'0-3,10'`` into a list of ints (ranges inclusive, as NVIDIA's).

    Args:
        text: the seed list.
        limit: the most seeds accepted (checked before any list is built).

    Raises:
        InputError: on anything else, seeds above 2**32 - 1, or more than ``limit`` seeds.
    """
    seeds: list[int] = []
    if len(text) > 100_000:
        raise InputError(f"seed list of {len(text):,} characters is too long")
    count = 0
    for part in text.split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if match is None:
            raise InputError(f"cannot parse seeds {text!r}: expected e.g. '0-7' or '1,5,9', got part {part!r}")
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) is not None else lo
        if hi < lo:
            raise InputError(f"cannot parse seeds {text!r}: range {part!r} is empty")
        if hi > 2**32 - 1:
            raise InputError(f"seed {hi} is out of range: seeds are 0 ... {2**32 - 1} (NVIDIA's numpy RandomState)")
        count += hi - lo + 1
        if count > limit:
            raise InputError(
                f"seeds {text!r:.60} name {count:,}+ seeds, more than the limit of {limit:,}; "
                "generate in smaller ranges (e.g. 0-9999, then 10000-19999)"
            )
        seeds.extend(range(lo, hi + 1))
    return seeds


def one_hot(classes: list[int] | torch.Tensor, c_dim: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """Class indices -> float32 one-hot labels ``[N, c_dim]``.

    Raises:
        InputError: if a class is outside ``[0, c_dim)`` or the generator is unconditional.
    """
    idx = torch.as_tensor(classes, dtype=torch.long).reshape(-1)
    if c_dim == 0:
        raise InputError("this generator is unconditional (c_dim=0): do not pass a class")
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= c_dim):
        raise InputError(f"class must be in [0, {c_dim - 1}], got {idx.tolist()}")
    return torch.nn.functional.one_hot(idx, c_dim).to(torch.float32).to(device or "cpu")


_STREAM_BLOCK = 1024  # z and classes are drawn in blocks of this many samples, whatever the batch size


def resolve_classes(
    G: Generator, classes: Sequence[int] | None, *, name: str = "classes=", unique: bool = False
) -> list[int] | None:
    """Validate ``classes`` for ``G``: None for unconditional nets, else a non-empty list in ``[0, c_dim)``
    (None means all classes). The one place class lists are checked; ``name`` is how the caller spells the
    option in messages (``'--classes'`` on the command line).

    Raises:
        InputError: classes for an unconditional net, not integers, an empty list, an index out of range,
            or (with ``unique``) a repeated index.
    """
    if G.c_dim == 0:
        if classes is not None:
            raise InputError(f"{name} was given, but this generator is unconditional (c_dim=0): leave it out")
        return None
    try:
        chosen = list(range(G.c_dim)) if classes is None else [int(k) for k in classes]
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a list of class indices, got {classes!r}") from None
    if not chosen:
        raise InputError(f"{name} is empty: pass at least one class index")
    bad = [k for k in chosen if not 0 <= k < G.c_dim]
    if bad:
        raise InputError(f"{name} must lie in [0, {G.c_dim - 1}] (the generator's c_dim is {G.c_dim}), got {bad}")
    if unique and len(set(chosen)) != len(chosen):
        raise InputError(f"{name} has repeated entries: {chosen}; give each class once")
    return chosen


def shard_size(n_samples: int, shard: tuple[int, int] | None) -> int:
    """How many of :func:`iter_mapping`'s ``n_samples`` samples the shard ``(rank, world_size)`` yields."""
    rank, world = (0, 1) if shard is None else shard
    n = int(n_samples)
    return sum(min(_STREAM_BLOCK, n - b * _STREAM_BLOCK) for b in range(rank, -(-n // _STREAM_BLOCK), world))


def _owned_blocks(z_dim: int, n_samples: int, seed: int, class_table: torch.Tensor,
                  rank: int, world: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(z ``[b, z_dim]``, class index ``[b]``) of the stream's blocks ``k`` with ``k % world == rank``.

    Every block is drawn (so each rank's generators are where one process's would be); the others are
    dropped. The last block is cut to ``n_samples``.
    """
    z_rng = torch.Generator().manual_seed(int(seed))
    c_rng = torch.Generator().manual_seed(int(seed) + 1)
    for k in range(-(-n_samples // _STREAM_BLOCK)):
        z = torch.randn(_STREAM_BLOCK, z_dim, generator=z_rng)
        idx = class_table[torch.randint(len(class_table), (_STREAM_BLOCK,), generator=c_rng)]
        if k % world == rank:
            keep = min(_STREAM_BLOCK, n_samples - k * _STREAM_BLOCK)
            yield z[:keep], idx[:keep]


def iter_mapping(
    G: Generator,
    n_samples: int,
    *,
    batch_size: int = 10_000,
    seed: int = 0,
    classes: Sequence[int] | None = None,
    device: torch.device | str | None = None,
    shard: tuple[int, int] | None = None,
) -> Iterator[torch.Tensor]:
    """Stream raw mapping outputs ``w`` in batches, never holding all of them.

    z is drawn from ``torch.Generator().manual_seed(seed)`` on the CPU in fixed blocks of 1024 samples
    (classes from a second generator seeded ``seed + 1``, uniformly over ``classes``), so the
    concatenated stream is the same for every ``batch_size`` and device.

    Args:
        G: the generator; only :meth:`~latentkit.nets.generator.Generator.map_latent` runs.
        n_samples: how many samples in total (>= 1), over all shards.
        batch_size: samples per mapping call (>= 1).
        seed: the only source of randomness.
        classes: conditional generators only: class indices to draw from uniformly (None: all ``c_dim``).
        device: where the mapping runs (None: where ``G`` is).
        shard: ``(rank, world_size)``: yield only the blocks ``k`` with ``k % world_size == rank``, the
            same samples one process draws there; the shards of all ranks together are the whole stream
            (:func:`shard_size` samples each; a rank may have none).

    Yields:
        float32 ``w [B, w_dim]`` on ``device``, ``B <= batch_size``, detached.

    Raises:
        InputError: on non-positive counts, a bad shard, or ``classes`` that do not fit the generator.
    """
    if int(n_samples) < 1 or int(batch_size) < 1:
        raise InputError(f"n_samples and batch_size must be >= 1, got {n_samples} and {batch_size}")
    rank, world = shard_range(shard)
    chosen = resolve_classes(G, classes)
    device = torch.device(device) if device is not None else G.w_avg.device
    class_table = torch.tensor(chosen if chosen is not None else [0], dtype=torch.long)
    blocks = _owned_blocks(G.z_dim, int(n_samples), seed, class_table, rank, world)
    pending_z: list[torch.Tensor] = []
    pending_c: list[torch.Tensor] = []
    available = 0
    exhausted = False
    while True:
        while available < int(batch_size) and not exhausted:
            block = next(blocks, None)
            if block is None:
                exhausted = True
            else:
                pending_z.append(block[0])
                pending_c.append(block[1])
                available += block[0].shape[0]
        if available == 0:
            return
        b = min(int(batch_size), available)
        z_all, c_all = torch.cat(pending_z), torch.cat(pending_c)
        z, idx = z_all[:b], c_all[:b]
        pending_z, pending_c = [z_all[b:]], [c_all[b:]]
        available -= b
        if chosen is None:
            c = torch.zeros(b, 0, device=device)
        else:
            c = torch.nn.functional.one_hot(idx, G.c_dim).to(device=device, dtype=torch.float32)
        with torch.no_grad():
            w = G.map_latent(z.to(device), c)
        yield w.detach()


def sample_w(
    G: Generator,
    n_samples: int,
    *,
    batch_size: int = 10_000,
    seed: int = 0,
    classes: Sequence[int] | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """All of :func:`iter_mapping`'s samples at once: ``w [n_samples, w_dim]`` float32 (for held-out sets)."""
    return torch.cat(list(iter_mapping(G, n_samples, batch_size=batch_size, seed=seed, classes=classes, device=device)))
