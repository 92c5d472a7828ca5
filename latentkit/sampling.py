"""Seeds to latents, exactly as NVIDIA's ``gen_images.py`` draws them, and seed-list parsing."""

from __future__ import annotations

import re

import numpy as np
import torch

from latentkit.errors import InputError

__all__ = ["z_from_seed", "parse_seeds", "one_hot"]


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


def parse_seeds(text: str) -> list[int]:
    """Parse ``'0-7'``, ``'1,5,9'`` or ``'0-3,10'`` into a list of ints (ranges inclusive, as NVIDIA's).

    Raises:
        InputError: on anything else.
    """
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if match is None:
            raise InputError(f"cannot parse seeds {text!r}: expected e.g. '0-7' or '1,5,9', got part {part!r}")
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) is not None else lo
        if hi < lo:
            raise InputError(f"cannot parse seeds {text!r}: range {part!r} is empty")
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
