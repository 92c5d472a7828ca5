"""Gaussianizing W: the exact inverse of the mapping network's last activation, ``w = gain * leaky_relu(v, slope)``.

StyleGAN's mapping network ends in a leaky ReLU (slope 0.2) times a gain of sqrt(2); undoing it gives
``v``, whose distribution is close to Gaussian (Wulff and Torralba's "Gaussianized latent space").
"""

from __future__ import annotations

import math

import torch

from latentkit.errors import InputError

__all__ = ["check_activation", "w_to_v", "v_to_w", "w_to_v64"]


def check_activation(slope: float, gain: float) -> None:
    if not (math.isfinite(slope) and slope > 0):
        raise InputError(f"slope must be a finite number > 0 for the leaky ReLU to be invertible, got {slope}")
    if not (math.isfinite(gain) and gain > 0):
        raise InputError(f"gain must be a finite number > 0, got {gain}")


def w_to_v(w: torch.Tensor, slope: float = 0.2, gain: float = math.sqrt(2)) -> torch.Tensor:
    """Invert ``w = gain * leaky_relu(v, slope)``: the exact pre-activation ``v``.

    Args:
        w: latents of any shape ``[..., w_dim]``.
        slope: the leaky ReLU's negative slope (> 0).
        gain: the multiplier after the activation (> 0).

    Returns:
        ``v`` with the shape, dtype and device of ``w`` (differentiable).

    Example:
        >>> w_to_v(torch.tensor([2.0, -2.0]), 0.5, 2.0)
        tensor([ 1., -2.])
    """
    check_activation(slope, gain)
    return torch.where(w >= 0, w / gain, w / (gain * slope))


def v_to_w(v: torch.Tensor, slope: float = 0.2, gain: float = math.sqrt(2)) -> torch.Tensor:
    """Apply ``w = gain * leaky_relu(v, slope)`` (the inverse of :func:`w_to_v`), any shape ``[..., w_dim]``."""
    check_activation(slope, gain)
    return torch.where(v >= 0, v * gain, v * (gain * slope))


def w_to_v64(w: torch.Tensor, slope: float, gain: float) -> torch.Tensor:
    """:func:`w_to_v` in a new float64 tensor, in place (no temporaries): for the fitting loops."""
    v = w.to(torch.float64, copy=True)
    v.div_(gain)
    return torch.nn.functional.leaky_relu_(v, 1.0 / slope)  # negative side: times 1/slope
