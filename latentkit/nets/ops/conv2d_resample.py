"""2-D convolution with optional up/down-sampling (NVIDIA's ``conv2d_resample``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from latentkit.errors import ShapeError
from latentkit.nets.ops.upfirdn2d import Padding, filter_size, parse_padding, upfirdn2d

__all__ = ["conv2d_resample"]


def _conv(
    x: torch.Tensor,
    w: torch.Tensor,
    *,
    stride: int = 1,
    padding: int | Sequence[int] = 0,
    groups: int = 1,
    transpose: bool = False,
    flip_weight: bool = True,
) -> torch.Tensor:
    """conv2d (or conv_transpose2d); ``flip_weight=False`` turns correlation into convolution."""
    if not flip_weight and (w.shape[2] > 1 or w.shape[3] > 1):
        w = w.flip([2, 3])
    if transpose:
        return F.conv_transpose2d(x, w, stride=stride, padding=padding, groups=groups)
    return F.conv2d(x, w, stride=stride, padding=padding, groups=groups)


def conv2d_resample(
    x: torch.Tensor,
    w: torch.Tensor,
    f: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: Padding = 0,
    groups: int = 1,
    flip_weight: bool = True,
    flip_filter: bool = False,
) -> torch.Tensor:
    """2-D convolution with optional FIR up/down-sampling, dispatched as NVIDIA's ``conv2d_resample``.

    Args:
        x: ``[N, groups * in_channels_per_group, H, W]``.
        w: ``[out_channels, in_channels_per_group, kh, kw]``.
        f: FIR filter for the resampling (see :func:`setup_filter`); None for no filtering.
        up: integer upsampling factor.
        down: integer downsampling factor.
        padding: padding of the convolution, in output-resolution pixels before downsampling.
        groups: grouped convolution.
        flip_weight: False flips the kernel (true convolution); True is plain ``conv2d`` correlation.
        flip_filter: passed to :func:`upfirdn2d`.

    Returns:
        ``[N, out_channels, H', W']``.

    Raises:
        ShapeError: if ``w`` is not 4-D or ``up`` / ``down`` is not a positive int.
    """
    if w.ndim != 4:
        raise ShapeError(f"conv2d_resample: w must be [O, I, kh, kw], got {list(w.shape)}")
    if not (isinstance(up, int) and isinstance(down, int) and up >= 1 and down >= 1):
        raise ShapeError(f"conv2d_resample: up and down must be ints >= 1, got up={up!r}, down={down!r}")
    out_channels, in_per_group, kh, kw = w.shape
    fw, fh = filter_size(f)
    px0, px1, py0, py1 = parse_padding(padding)
    if up > 1:
        px0 += (fw + up - 1) // 2
        px1 += (fw - up) // 2
        py0 += (fh + up - 1) // 2
        py1 += (fh - up) // 2
    if down > 1:
        px0 += (fw - down + 1) // 2
        px1 += (fw - down) // 2
        py0 += (fh - down + 1) // 2
        py1 += (fh - down) // 2
    pad = [px0, px1, py0, py1]

    if kw == 1 and kh == 1 and down > 1 and up == 1:  # 1x1 conv after downsampling
        x = upfirdn2d(x, f, down=down, padding=pad, flip_filter=flip_filter)
        return _conv(x, w, groups=groups, flip_weight=flip_weight)
    if kw == 1 and kh == 1 and up > 1 and down == 1:  # 1x1 conv before upsampling
        x = _conv(x, w, groups=groups, flip_weight=flip_weight)
        return upfirdn2d(x, f, up=up, padding=pad, gain=up**2, flip_filter=flip_filter)
    if down > 1 and up == 1:  # filter, then strided conv
        x = upfirdn2d(x, f, padding=pad, flip_filter=flip_filter)
        return _conv(x, w, stride=down, groups=groups, flip_weight=flip_weight)
    if up > 1:  # transposed strided conv, then filter
        if groups == 1:
            w = w.transpose(0, 1)
        else:
            w = w.reshape(groups, out_channels // groups, in_per_group, kh, kw).transpose(1, 2)
            w = w.reshape(groups * in_per_group, out_channels // groups, kh, kw)
        px0 -= kw - 1
        px1 -= kw - up
        py0 -= kh - 1
        py1 -= kh - up
        pxt = max(min(-px0, -px1), 0)
        pyt = max(min(-py0, -py1), 0)
        x = _conv(x, w, stride=up, padding=[pyt, pxt], groups=groups, transpose=True, flip_weight=not flip_weight)
        x = upfirdn2d(x, f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt], gain=up**2, flip_filter=flip_filter)
        if down > 1:
            x = upfirdn2d(x, f, down=down, flip_filter=flip_filter)
        return x
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:  # plain conv
        return _conv(x, w, padding=[py0, px0], groups=groups, flip_weight=flip_weight)
    x = upfirdn2d(x, None, padding=pad, flip_filter=flip_filter)  # generic: pad or crop, then conv
    return _conv(x, w, groups=groups, flip_weight=flip_weight)

