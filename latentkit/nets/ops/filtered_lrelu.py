"""StyleGAN3's filtered leaky ReLU in pure PyTorch (runs on CPU and CUDA, any float dtype).

The operation is the alias-free nonlinearity of "Alias-Free Generative Adversarial Networks": the signal
is upsampled with a low-pass filter, passed through a leaky ReLU at the higher sampling rate and then
low-pass filtered and downsampled again. It is built from :func:`latentkit.nets.ops.upfirdn2d` and
:func:`latentkit.nets.ops.bias_act` and follows the semantics of NVIDIA's reference path:

1. add the per-channel bias ``b``;
2. upsample by ``up`` (zero insertion), pad by ``padding`` (negative values crop) and convolve with
   ``fu``, with gain ``up**2`` so that the signal keeps its magnitude;
3. multiply by ``gain``, apply the leaky ReLU with negative slope ``slope``, clamp to ``[-clamp, clamp]``;
4. convolve with ``fd`` and keep every ``down``-th sample.

Filters are ``[taps]`` (separable, applied along both axes), ``[taps, taps]`` (non-separable, e.g. the
radial filters of StyleGAN3 config R) or ``None`` (identity).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from latentkit.errors import InputError, ShapeError
from latentkit.nets.ops.bias_act import bias_act
from latentkit.nets.ops.upfirdn2d import parse_padding, upfirdn2d

__all__ = ["filtered_lrelu", "filtered_lrelu_output_size"]


def _filter_extent(f: torch.Tensor | None, name: str) -> tuple[int, int]:
    """Width and height of a filter (``None`` counts as a 1x1 identity)."""
    if f is None:
        return 1, 1
    if not isinstance(f, torch.Tensor) or f.ndim not in (1, 2):
        shape = list(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
        raise ShapeError(f"{name} must be a [taps] or [taps_y, taps_x] tensor or None, got {shape}")
    return int(f.shape[-1]), int(f.shape[0])


def filtered_lrelu_output_size(
    in_size: tuple[int, int],
    *,
    fu_size: tuple[int, int] = (1, 1),
    fd_size: tuple[int, int] = (1, 1),
    up: int = 1,
    down: int = 1,
    padding: int | Sequence[int] = 0,
) -> tuple[int, int]:
    """Output ``(height, width)`` of :func:`filtered_lrelu` for an input of ``in_size = (height, width)``.

    ``fu_size`` / ``fd_size`` are the filters' ``(width, height)`` (``(1, 1)`` for no filter).
    """
    px0, px1, py0, py1 = parse_padding(padding)
    in_h, in_w = in_size
    out_w = (in_w * up + px0 + px1 - (fu_size[0] - 1) - (fd_size[0] - 1) + (down - 1)) // down
    out_h = (in_h * up + py0 + py1 - (fu_size[1] - 1) - (fd_size[1] - 1) + (down - 1)) // down
    return out_h, out_w


def filtered_lrelu(
    x: torch.Tensor,
    fu: torch.Tensor | None = None,
    fd: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    *,
    up: int = 1,
    down: int = 1,
    padding: int | Sequence[int] = 0,
    gain: float = math.sqrt(2),
    slope: float = 0.2,
    clamp: float | None = None,
    flip_filter: bool = False,
) -> torch.Tensor:
    """Bias, upsample, leaky ReLU, clamp, downsample: StyleGAN3's alias-free nonlinearity.

    Args:
        x: input ``[N, C, H, W]`` (float16/32/64).
        fu: upsampling FIR filter ``[taps]`` (separable), ``[taps_y, taps_x]`` or None (identity).
        fd: downsampling FIR filter, same forms as ``fu``.
        b: per-channel bias ``[C]`` or None.
        up: integer upsampling factor (>= 1).
        down: integer downsampling factor (>= 1).
        padding: padding of the upsampled signal: int, ``[x, y]`` or ``[x0, x1, y0, y1]``; negative values
            crop.
        gain: factor applied before the activation (sqrt(2) for feature layers, 1 for ToRGB).
        slope: negative slope of the leaky ReLU (0.2 for feature layers, 1 = linear for ToRGB).
        clamp: clamp the activations to ``[-clamp, clamp]``; None disables clamping.
        flip_filter: False = convolution (NVIDIA's default), True = correlation.

    Returns:
        ``[N, C, H_out, W_out]`` in the dtype of ``x``, with sizes given by
        :func:`filtered_lrelu_output_size`.

    Raises:
        ShapeError: if ``x`` is not 4-D, ``b`` does not have ``C`` entries or a filter has the wrong rank.
        ValueError: if ``up``/``down`` are below 1, ``gain`` is not positive, ``slope`` or ``clamp`` negative.

    Example:
        >>> x = torch.randn(2, 4, 8, 8)
        >>> f = torch.full([6], 1 / 6)
        >>> filtered_lrelu(x, f, f, up=2, down=2, padding=5).shape
        torch.Size([2, 4, 8, 8])
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ShapeError(f"x must be a [N, C, H, W] tensor, got {shape}")
    fu_size = _filter_extent(fu, "fu")
    fd_size = _filter_extent(fd, "fd")
    if b is not None and (b.ndim != 1 or b.shape[0] != x.shape[1]):
        raise ShapeError(f"b must have shape [{x.shape[1]}] (one bias per channel of x), got {list(b.shape)}")
    if int(up) != up or up < 1 or int(down) != down or down < 1:
        raise InputError(f"up and down must be integers >= 1, got up={up}, down={down}")
    if not gain > 0:
        raise InputError(f"gain must be positive, got {gain}")
    if slope < 0:
        raise InputError(f"slope must be >= 0, got {slope}")
    if clamp is not None and clamp < 0:
        raise InputError(f"clamp must be >= 0 or None, got {clamp}")
    pad = parse_padding(padding)
    out_h, out_w = filtered_lrelu_output_size(
        (x.shape[2], x.shape[3]), fu_size=fu_size, fd_size=fd_size, up=up, down=down, padding=pad
    )
    if out_h < 1 or out_w < 1:
        raise ShapeError(
            f"filtered_lrelu of a {list(x.shape[2:])} input with up={up}, down={down}, padding={list(pad)} "
            f"and filters {fu_size}/{fd_size} would be empty ({out_h}x{out_w}); increase the padding"
        )

    up, down = int(up), int(down)
    y = bias_act(x, b)
    if fu is not None or up != 1 or any(pad):
        y = upfirdn2d(y, fu, up=up, padding=list(pad), gain=up**2, flip_filter=flip_filter)
    y = bias_act(y, act="lrelu", alpha=slope, gain=gain, clamp=clamp)
    if fd is not None or down != 1:
        y = upfirdn2d(y, fd, down=down, flip_filter=flip_filter)
    return y

