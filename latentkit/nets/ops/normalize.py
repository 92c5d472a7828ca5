"""RMS normalisation of latents and embeddings, as StyleGAN's mapping networks use it."""

from __future__ import annotations

import torch

__all__ = ["normalize_2nd_moment"]


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Divide by the root mean square along ``dim``: ``x * rsqrt(mean(x**2) + eps)``.

    Args:
        x: e.g. latents ``[N, z_dim]``.
        dim: the feature axis.
        eps: added to the mean square.

    Returns:
        Tensor of the shape of ``x``.
    """
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()

