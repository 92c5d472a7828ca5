"""Streaming latents through a generator's mapping network, reproducibly and in bounded memory.

z is drawn on the CPU from ``torch.Generator().manual_seed(seed)`` in fixed blocks, so the stream of
samples is the same whatever the batch size or device; classes of conditional generators come from a
second generator (``seed + 1``), uniformly over the chosen classes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import torch

from latentkit.errors import InputError

if TYPE_CHECKING:
    from latentkit.nets.generator import Generator

__all__ = ["iter_mapping", "sample_w", "resolve_classes"]

_STREAM_BLOCK = 1024  # z and classes are drawn in blocks of this many samples, whatever the batch size


def resolve_classes(G: Generator, classes: Sequence[int] | None) -> list[int] | None:
    """Validate ``classes`` for ``G``: None for unconditional nets, else a non-empty list in ``[0, c_dim)``
    (None means all classes).

    Raises:
        InputError: classes for an unconditional net, an empty list or an index out of range.
    """
    if G.c_dim == 0:
        if classes is not None:
            raise InputError("classes= was given, but this generator is unconditional (c_dim=0): leave it out")
        return None
    chosen = list(range(G.c_dim)) if classes is None else [int(k) for k in classes]
    if not chosen:
        raise InputError("classes= is empty: pass at least one class index, or None for all classes")
    bad = [k for k in chosen if not 0 <= k < G.c_dim]
    if bad:
        raise InputError(f"classes= must lie in [0, {G.c_dim - 1}], got {bad}")
    return chosen


def iter_mapping(
    G: Generator,
    n_samples: int,
    *,
    batch_size: int = 10_000,
    seed: int = 0,
    classes: Sequence[int] | None = None,
    device: torch.device | str | None = None,
) -> Iterator[torch.Tensor]:
    """Stream raw mapping outputs ``w`` in batches, never holding all of them.

    z is drawn from ``torch.Generator().manual_seed(seed)`` on the CPU in fixed blocks of 1024 samples
    (classes from a second generator seeded ``seed + 1``, uniformly over ``classes``), so the
    concatenated stream is the same for every ``batch_size`` and device.

    Args:
        G: the generator; only :meth:`~latentkit.nets.generator.Generator.map_latent` runs.
        n_samples: how many samples in total (>= 1).
        batch_size: samples per mapping call (>= 1).
        seed: the only source of randomness.
        classes: conditional generators only: class indices to draw from uniformly (None: all ``c_dim``).
        device: where the mapping runs (None: where ``G`` is).

    Yields:
        float32 ``w [B, w_dim]`` on ``device``, ``B <= batch_size``, detached.

    Raises:
        InputError: on non-positive counts, or ``classes`` that do not fit the generator.
    """
    if int(n_samples) < 1 or int(batch_size) < 1:
        raise InputError(f"n_samples and batch_size must be >= 1, got {n_samples} and {batch_size}")
    chosen = resolve_classes(G, classes)
    device = torch.device(device) if device is not None else G.w_avg.device
    z_rng = torch.Generator().manual_seed(int(seed))
    c_rng = torch.Generator().manual_seed(int(seed) + 1)
    class_table = torch.tensor(chosen if chosen is not None else [0], dtype=torch.long)
    pending_z: list[torch.Tensor] = []
    pending_c: list[torch.Tensor] = []
    available = 0
    remaining = int(n_samples)
    while remaining > 0:
        b = min(int(batch_size), remaining)
        while available < b:
            pending_z.append(torch.randn(_STREAM_BLOCK, G.z_dim, generator=z_rng))
            pending_c.append(class_table[torch.randint(len(class_table), (_STREAM_BLOCK,), generator=c_rng)])
            available += _STREAM_BLOCK
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
        remaining -= b


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
