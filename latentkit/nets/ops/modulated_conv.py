"""Modulated convolution of StyleGAN2 (per-sample styles, demodulation, optional noise)."""

from __future__ import annotations

import math

import torch

from latentkit.errors import ShapeError
from latentkit.nets.ops.conv2d_resample import conv2d_resample
from latentkit.nets.ops.upfirdn2d import Padding

__all__ = ["modulated_conv2d"]


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: Padding = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    flip_weight: bool = True,
    fused_modconv: bool = True,
) -> torch.Tensor:
    """StyleGAN2's modulated (and optionally demodulated) convolution.

    Each sample's kernel is ``weight * styles[n]`` over the input channels; demodulation divides each
    output filter by ``sqrt(sum(kernel ** 2) + 1e-8)``. ``noise`` is added after the convolution (and
    after the demodulation).

    Args:
        x: ``[N, in_channels, H, W]``.
        weight: ``[out_channels, in_channels, kh, kw]``.
        styles: ``[N, in_channels]``.
        noise: optional, broadcastable to the output ``[N, out_channels, H', W']`` (e.g. ``[N, 1, H', W']``).
        up: upsampling factor (1 or 2 in StyleGAN2).
        down: downsampling factor.
        padding: convolution padding (``kernel_size // 2`` in StyleGAN2).
        resample_filter: FIR filter used when ``up`` or ``down`` > 1.
        demodulate: apply weight demodulation.
        flip_weight: see :func:`conv2d_resample` (StyleGAN2 passes ``up == 1``).
        fused_modconv: one grouped convolution over the batch (True) or scale the activations before and
            after a shared convolution (False); both agree to float rounding.

    Returns:
        ``[N, out_channels, H', W']``.

    Raises:
        ShapeError: if the shapes of ``x``, ``weight`` and ``styles`` do not agree.

    Example:
        >>> x, weight, styles = torch.randn(2, 4, 8, 8), torch.randn(5, 4, 3, 3), torch.randn(2, 4)
        >>> modulated_conv2d(x, weight, styles, up=2, padding=1, resample_filter=setup_filter([1, 3, 3, 1]),
        ...                  flip_weight=False).shape
        torch.Size([2, 5, 16, 16])
    """
    if weight.ndim != 4 or x.ndim != 4:
        raise ShapeError(
            f"modulated_conv2d: x must be [N, I, H, W] and weight [O, I, kh, kw], "
            f"got x {list(x.shape)} and weight {list(weight.shape)}"
        )
    n = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    if x.shape[1] != in_channels or tuple(styles.shape) != (n, in_channels):
        raise ShapeError(
            f"modulated_conv2d: expected x [{n}, {in_channels}, H, W] and styles [{n}, {in_channels}] "
            f"for weight {list(weight.shape)}, got x {list(x.shape)} and styles {list(styles.shape)}"
        )

    # Keep float16 activations in range: pre-scale weight and styles (cancels in the demodulation).
    if x.dtype == torch.float16 and demodulate:
        weight = weight * (
            1 / math.sqrt(in_channels * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True)
        )
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    w = None
    dcoefs = None
    if demodulate or fused_modconv:
        w = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)  # [N, O, I, kh, kw]
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # [N, O]
    if demodulate and fused_modconv:
        w = w * dcoefs.reshape(n, -1, 1, 1, 1)

    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(n, -1, 1, 1)
        x = conv2d_resample(
            x, weight.to(x.dtype), f=resample_filter, up=up, down=down, padding=padding, flip_weight=flip_weight
        )
        if demodulate and noise is not None:
            return torch.addcmul(noise.to(x.dtype), x, dcoefs.to(x.dtype).reshape(n, -1, 1, 1))
        if demodulate:
            return x * dcoefs.to(x.dtype).reshape(n, -1, 1, 1)
        if noise is not None:
            return x + noise.to(x.dtype)
        return x

    x = x.reshape(1, -1, *x.shape[2:])  # [1, N * I, H, W]
    w = w.reshape(-1, in_channels, kh, kw)  # [N * O, I, kh, kw]
    x = conv2d_resample(
        x, w.to(x.dtype), f=resample_filter, up=up, down=down, padding=padding, groups=n, flip_weight=flip_weight
    )
    x = x.reshape(n, -1, *x.shape[2:])  # [N, O, H', W']
    if noise is not None:
        x = x + noise
    return x

