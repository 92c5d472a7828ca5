"""A separable inverse wavelet step (MobileStyleGAN's inverse Haar transform) as one transposed convolution.

OpenVINO's export spells one 2-D inverse wavelet step as six depthwise transposed convolutions with
disjoint windows (stride == kernel) and three additions::

    lo = up_col(ll, k0) + up_col(lh, k1)        hi = up_col(hl, k2) + up_col(hh, k3)
    out = up_row(lo, r0) + up_row(hi, r1)

Disjoint windows compose: an up-sampling by kernel ``k [kh1, kw1]`` followed by one by ``r [kh2, kw2]``
puts ``x[i, j] * k[a, b] * r[c, d]`` at ``((i * kh1 + a) * kh2 + c, (j * kw1 + b) * kw2 + d)``, a single
up-sampling by the ``[kh1 * kh2, kw1 * kw2]`` kernel ``k (x) r``. The whole step is therefore one grouped
transposed convolution of the four sub-bands stacked per channel (``[N, 4C, H, W]``, channel ``4c + q``),
``groups = C``: one pass on oneDNN's channels-last path instead of nine, with gradients in the same layout.
The same function as the op-by-op form up to float rounding (each output is a sum of four products).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["compose_kernels", "subband_upsample"]


def compose_kernels(inner: torch.Tensor, outer: torch.Tensor) -> torch.Tensor:
    """The kernel of two disjoint depthwise up-samplings applied in turn.

    Args:
        inner: ``[C, kh1, kw1]``, applied first.
        outer: ``[C, kh2, kw2]``, applied to its result.

    Returns:
        ``[C, kh1 * kh2, kw1 * kw2]``.
    """
    c, kh1, kw1 = inner.shape
    _, kh2, kw2 = outer.shape
    k = inner[:, :, None, :, None] * outer[:, None, :, None, :]  # [C, kh1, kh2, kw1, kw2]
    return k.reshape(c, kh1 * kh2, kw1 * kw2)


def subband_upsample(
    parts: list[torch.Tensor] | None,
    kernels: list[torch.Tensor],
    *,
    source: torch.Tensor | None = None,
    channels: tuple[int, ...] | None = None,
) -> torch.Tensor:
    """``sum_q conv_transpose2d(parts[q], kernels[q], stride=kernel size, groups=C)`` as one convolution.

    Args:
        parts: ``Q`` tensors ``[N, C, H, W]`` (any strides, e.g. views of one split tensor), or None with
            ``source``.
        kernels: ``Q`` depthwise kernels ``[C, KH, KW]`` of the same size (see :func:`compose_kernels`).
        source: instead of ``parts``, one tensor ``[N, C_in, H, W]`` holding all sub-bands as channels ...
        channels: ... ``channels[c * Q + q]`` being the channel of ``source`` with sub-band ``q`` of channel
            ``c``. One gather builds the stacked input, and its gradient is one channels-last tensor.

    Returns:
        ``[N, C, H * KH, W * KW]`` (channels-last memory on the CPU).
    """
    q = len(kernels)
    if source is not None:
        n, _, h, w = source.shape
        c = len(channels) // q
        low, high = channels[0], channels[1]
        pixels = source.permute(0, 2, 3, 1)  # [N, H, W, C_in]
        if q == 4 and channels == tuple(i for k in range(c) for i in (low + k, *range(high + 3 * k, high + 3 * k + 3))):
            # MobileStyleGAN's layout (ll block, then lh/hl/hh interleaved per channel): one concatenation, whose
            # gradient is two slices (2-3x faster forward and backward than a general gather)
            stacked = torch.cat([pixels[..., low:low + c, None], pixels[..., high:high + 3 * c].reshape(n, h, w, c, 3)], -1)
            stacked = stacked.view(n, h, w, c * q)
        else:
            stacked = pixels[..., torch.tensor(channels, device=source.device)]  # [N, H, W, C * Q]
    else:
        n, c, h, w = parts[0].shape
        stacked = torch.stack([p.permute(0, 2, 3, 1) for p in parts], dim=-1).view(n, h, w, c * q)
    stacked = stacked.permute(0, 3, 1, 2)  # [N, C * Q, H, W], channels-last memory
    kernel = torch.stack(kernels, dim=1).to(stacked.dtype)  # [C, Q, KH, KW]
    kh, kw = kernel.shape[-2:]
    return F.conv_transpose2d(stacked, kernel.reshape(c * q, 1, kh, kw), stride=(kh, kw), groups=c)
