"""A separable inverse wavelet step (MobileStyleGAN's inverse Haar transform) as one product and one shuffle.

OpenVINO's export spells one 2-D inverse wavelet step as six depthwise transposed convolutions with
disjoint windows (stride == kernel) and three additions::

    lo = up_col(ll, k0) + up_col(lh, k1)        hi = up_col(hl, k2) + up_col(hh, k3)
    out = up_row(lo, r0) + up_row(hi, r1)

Disjoint windows compose: an up-sampling by kernel ``k [kh1, kw1]`` followed by one by ``r [kh2, kw2]``
puts ``x[i, j] * k[a, b] * r[c, d]`` at ``((i * kh1 + a) * kh2 + c, (j * kw1 + b) * kw2 + d)``, a single
up-sampling by the ``[kh1 * kh2, kw1 * kw2]`` kernel ``k (x) r``. The whole step is therefore one grouped
transposed convolution of the four sub-bands stacked per channel (``[N, 4C, H, W]``, channel ``4c + q``),
``groups = C``. A wavelet has the same kernels in every channel (MobileStyleGAN's Haar steps do), and then
the step is a ``[4, KH * KW]`` matrix applied to each channel's four coefficients followed by a
``pixel_shuffle``: 1.2x MobileStyleGAN's whole forward on an AVX2 CPU against the grouped transposed
convolution, which oneDNN runs slowly with 4 inputs per group. Other kernels keep the convolution. Either
is the same function as the op-by-op form up to float rounding (each output is a sum of four products; with
Haar's +-1/2 the products are exact and the image is bit-identical).
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
    shared: bool | None = None,
) -> torch.Tensor:
    """``sum_q conv_transpose2d(parts[q], kernels[q], stride=kernel size, groups=C)`` in few passes.

    Args:
        parts: ``Q`` tensors ``[N, C, H, W]`` (any strides, e.g. views of one split tensor), or None with
            ``source``.
        kernels: ``Q`` depthwise kernels ``[C, KH, KW]`` of the same size (see :func:`compose_kernels`).
        source: instead of ``parts``, one tensor ``[N, C_in, H, W]`` holding all sub-bands as channels ...
        channels: ... ``channels[c * Q + q]`` being the channel of ``source`` with sub-band ``q`` of channel
            ``c``. One gather builds the stacked input, and its gradient is one channels-last tensor.
        shared: whether every channel has the same kernels (then one matrix product); None checks the
            values, a read that waits for the device on a GPU.

    Returns:
        ``[N, C, H * KH, W * KW]`` (channels-last memory on the CPU).
    """
    q = len(kernels)
    if source is not None:
        n, _, h, w = source.shape
        c = len(channels) // q
        stacked = _stack_channels(source.permute(0, 2, 3, 1), channels, q)  # [N, H, W, C, Q]
    else:
        n, c, h, w = parts[0].shape
        stacked = torch.stack([p.permute(0, 2, 3, 1) for p in parts], dim=-1)  # [N, H, W, C, Q]
    kernel = torch.stack(kernels, dim=1).to(stacked.dtype)  # [C, Q, KH, KW]
    kh, kw = kernel.shape[-2:]
    if shared is None:
        shared = bool((kernel == kernel[:1]).all())
    if shared:  # one kernel for every channel (a wavelet): a matrix product
        return _shared_kernel_upsample(stacked, kernel[0])
    stacked = stacked.reshape(n, h, w, c * q).permute(0, 3, 1, 2)  # [N, C * Q, H, W], channels-last memory
    return F.conv_transpose2d(stacked, kernel.reshape(c * q, 1, kh, kw), stride=(kh, kw), groups=c)


def _stack_channels(pixels: torch.Tensor, channels: tuple[int, ...], q: int) -> torch.Tensor:
    """``pixels [N, H, W, C_in]`` -> ``[N, H, W, C, Q]`` with ``[..., c, k] = pixels[..., channels[c * Q + k]]``."""
    n, h, w, _ = pixels.shape
    c = len(channels) // q
    low, high = channels[0], channels[1]
    if q == 4 and channels == tuple(i for k in range(c) for i in (low + k, *range(high + 3 * k, high + 3 * k + 3))):
        # MobileStyleGAN's layout (ll block, then lh/hl/hh interleaved per channel): one concatenation
        # (2-3x faster forward and backward than a general gather)
        return _StackBlocks.apply(pixels, low, high, c)
    return pixels[..., torch.tensor(channels, device=pixels.device)].view(n, h, w, c, q)


class _StackBlocks(torch.autograd.Function):
    """``pixels [N, H, W, C_in]`` -> ``[N, H, W, C, 4]`` from the blocks ``[low, low + C)`` (sub-band 0) and
    ``[high, high + 3C)`` (sub-bands 1-3 interleaved per channel), with a one-pass backward.

    Autograd's own backward of the concatenation of two slices writes two zero-filled ``[N, H, W, C_in]``
    gradients, copies each part into one and adds them (five full passes); this one writes each gradient
    entry once.
    """

    @staticmethod
    def forward(ctx, pixels, low, high, c):  # noqa: D102 - see the class docstring
        n, h, w, _ = pixels.shape
        ctx.meta = (pixels.shape, low, high, c)
        return torch.cat([pixels[..., low:low + c, None], pixels[..., high:high + 3 * c].reshape(n, h, w, c, 3)], -1)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102 - see the class docstring
        shape, low, high, c = ctx.meta
        n, h, w, c_in = shape
        covered = {*range(low, low + c), *range(high, high + 3 * c)}
        make = torch.empty if len(covered) == c_in else torch.zeros  # channels no sub-band reads get 0
        out = make(shape, dtype=grad.dtype, device=grad.device)
        out[..., low:low + c].copy_(grad[..., 0])
        out[..., high:high + 3 * c].view(n, h, w, c, 3).copy_(grad[..., 1:])
        return out, None, None, None


def _shared_kernel_upsample(stacked: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """The step when every channel has the same kernel ``[Q, KH, KW]``: ``stacked [N, H, W, C, Q]`` times the
    ``[Q, KH * KW]`` matrix, then the sub-pixels moved into place (one copy).

    A transposed convolution with tiny groups is slow on the CPU (oneDNN has no fast kernel for 4 inputs per
    group: 3-5x slower than this at MobileStyleGAN's sizes, 1 thread); a matrix product with Q = 4 inner
    entries is memory-bound too, so ``g`` channels share one block-diagonal product ``[g * Q, g * KH * KW]``
    (g * Q about 16 was fastest).
    """
    n, h, w, c, q = stacked.shape
    _, kh, kw = kernel.shape
    g = max(d for d in range(1, max(1, 16 // q) + 1) if c % d == 0)
    blocks = torch.kron(torch.eye(g, dtype=kernel.dtype, device=kernel.device), kernel.reshape(q, kh * kw))
    mixed = stacked.reshape(-1, g * q) @ blocks  # [N * H * W * C / g, g * KH * KW]: [..., c, i, j]
    if kh == kw:  # pixel_shuffle's channels-last kernels: its backward is 2x faster than a permuted copy's
        return F.pixel_shuffle(mixed.view(n, h, w, c * kh * kw).permute(0, 3, 1, 2), kh)
    out = mixed.view(n, h, w, c, kh, kw).permute(0, 1, 4, 2, 5, 3).reshape(n, h * kh, w * kw, c)
    return out.permute(0, 3, 1, 2)  # [N, C, H * KH, W * KW], channels-last memory
