"""Pure-PyTorch building blocks of the StyleGAN family.

The functions reproduce the numerics of the reference (non-CUDA) code paths of NVIDIA's
``torch_utils.ops`` exactly: the same padding rules, the same filter flipping, the same order of
operations. They run on any device and dtype and are differentiable (float64 ``gradcheck`` in the tests).

Conventions:
    * Feature maps are ``[N, C, H, W]``.
    * FIR filters are float tensors, either 2-D ``[fh, fw]`` or 1-D ``[taps]`` (separable: applied
      along x then y). :func:`setup_filter` builds them from tap lists as NVIDIA's code does.
    * ``padding`` is an int, a pair ``(px, py)`` or four values ``(px0, px1, py0, py1)``; negative
      values crop. ``up`` / ``down`` are an int or a pair ``(sx, sy)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from latentkit.errors import ShapeError

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "bias_act",
    "conv2d_resample",
    "downsample2d",
    "filter2d",
    "modulated_conv2d",
    "normalize_2nd_moment",
    "setup_filter",
    "upfirdn2d",
    "upsample2d",
]

Scaling = int | Sequence[int]
Padding = int | Sequence[int]


# --------------------------------------------------------------------------------------------------
# Bias + activation.


@dataclass(frozen=True)
class Activation:
    """One entry of the activation table.

    Attributes:
        func: elementwise function ``func(x, alpha)``.
        alpha: default ``alpha`` (the negative slope for ``'lrelu'``).
        gain: default output gain (sqrt(2) for the ReLU family, as in NVIDIA's ``bias_act``).
    """

    func: Callable[[torch.Tensor, float], torch.Tensor]
    alpha: float
    gain: float


ACTIVATIONS: dict[str, Activation] = {
    "linear": Activation(lambda x, a: x, 0.0, 1.0),
    "relu": Activation(lambda x, a: F.relu(x), 0.0, math.sqrt(2)),
    "lrelu": Activation(lambda x, a: F.leaky_relu(x, a), 0.2, math.sqrt(2)),
    "tanh": Activation(lambda x, a: torch.tanh(x), 0.0, 1.0),
    "sigmoid": Activation(lambda x, a: torch.sigmoid(x), 0.0, 1.0),
    "elu": Activation(lambda x, a: F.elu(x), 0.0, 1.0),
    "selu": Activation(lambda x, a: F.selu(x), 0.0, 1.0),
    "softplus": Activation(lambda x, a: F.softplus(x), 0.0, 1.0),
    "swish": Activation(lambda x, a: torch.sigmoid(x) * x, 0.0, math.sqrt(2)),
}


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
) -> torch.Tensor:
    """Add a bias, apply an activation, scale by a gain, then clamp.

    Computes ``clamp(func(x + b, alpha) * gain, -clamp, clamp)``.

    Args:
        x: input of any shape, e.g. ``[N, C, H, W]`` or ``[N, C]``.
        b: optional bias ``[x.shape[dim]]``, broadcast along ``dim``.
        dim: the axis of ``x`` the bias runs along.
        act: a key of :data:`ACTIVATIONS` (``'linear'``, ``'relu'``, ``'lrelu'``, ``'tanh'``,
            ``'sigmoid'``, ``'elu'``, ``'selu'``, ``'softplus'``, ``'swish'``).
        alpha: activation parameter; None uses the table's default (0.2 for ``'lrelu'``).
        gain: output scale; None uses the table's default (sqrt(2) for relu/lrelu/swish, else 1).
        clamp: clamp the output to ``[-clamp, clamp]`` after the gain; None (or negative) disables it.

    Returns:
        Tensor of the shape of ``x``.

    Raises:
        ShapeError: if ``act`` is unknown or ``b`` does not match ``x.shape[dim]``.

    Example:
        >>> bias_act(torch.tensor([[-1.0, 2.0]]), act="lrelu", clamp=2.0)  # sqrt(2) * lrelu, then clamp
        tensor([[-0.2828,  2.0000]])
    """
    spec = ACTIVATIONS.get(act)
    if spec is None:
        raise ShapeError(f"bias_act: unknown act={act!r}; expected one of {sorted(ACTIVATIONS)}")
    alpha = float(spec.alpha if alpha is None else alpha)
    gain = float(spec.gain if gain is None else gain)
    clamp = -1.0 if clamp is None else float(clamp)
    if b is not None:
        if b.ndim != 1 or not 0 <= dim < x.ndim or b.shape[0] != x.shape[dim]:
            raise ShapeError(
                f"bias_act: b must have shape [{x.shape[dim] if 0 <= dim < x.ndim else '?'}] "
                f"(x.shape[{dim}] of x {list(x.shape)}), got {list(b.shape)}"
            )
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = spec.func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


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


# --------------------------------------------------------------------------------------------------
# FIR filtering with up/down-sampling.


def _pair(value: Scaling, name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    vals = [int(v) for v in value]
    if len(vals) != 2:
        raise ShapeError(f"{name} must be an int or a pair (x, y), got {value!r}")
    return vals[0], vals[1]


def _padding4(padding: Padding) -> tuple[int, int, int, int]:
    if isinstance(padding, int):
        return padding, padding, padding, padding
    vals = [int(p) for p in padding]
    if len(vals) == 2:
        return vals[0], vals[0], vals[1], vals[1]
    if len(vals) == 4:
        return vals[0], vals[1], vals[2], vals[3]
    raise ShapeError(f"padding must be an int, (px, py) or (px0, px1, py0, py1), got {padding!r}")


def _filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    """(fw, fh) of a 1-D or 2-D filter (1-D filters are square when separable)."""
    if f is None:
        return 1, 1
    return int(f.shape[-1]), int(f.shape[0])


def setup_filter(
    taps: Sequence[float] | torch.Tensor | None,
    *,
    normalize: bool = True,
    flip_filter: bool = False,
    gain: float = 1.0,
    separable: bool | None = None,
) -> torch.Tensor:
    """Build a FIR filter the way NVIDIA's ``upfirdn2d.setup_filter`` does.

    A 1-D tap list becomes the 2-D outer product unless it is separable (by default: 8 taps or more).

    Args:
        taps: 1-D or 2-D filter taps (e.g. ``[1, 3, 3, 1]``); None means ``[1]``.
        normalize: divide by the sum of the taps.
        flip_filter: flip the filter in every dimension.
        gain: overall gain, applied as ``gain ** (ndim / 2)``.
        separable: keep a 1-D filter 1-D; None decides by size.

    Returns:
        float32 filter ``[taps]`` or ``[taps, taps]`` on the CPU.
    """
    f = torch.as_tensor(1.0 if taps is None else taps, dtype=torch.float32)
    if f.ndim == 0:
        f = f[None]
    if f.ndim not in (1, 2) or f.numel() == 0:
        raise ShapeError(f"setup_filter: taps must be a non-empty 1-D or 2-D list, got shape {list(f.shape)}")
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    return f * (gain ** (f.ndim / 2))


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: Scaling = 1,
    down: Scaling = 1,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1,
) -> torch.Tensor:
    """Upsample by zero insertion, pad, convolve with a FIR filter, downsample by decimation.

    Same semantics as NVIDIA's ``upfirdn2d`` (reference path): the filter is flipped (true
    convolution) unless ``flip_filter``, and scaled by ``gain ** (f.ndim / 2)`` so that the total gain
    is ``gain`` for both 1-D (separable) and 2-D filters.

    Args:
        x: ``[N, C, H, W]``.
        f: FIR filter ``[fh, fw]`` or separable ``[taps]``; None is the identity ``[[1]]``.
        up: integer upsampling factor, int or ``(upx, upy)``.
        down: integer downsampling factor, int or ``(downx, downy)``.
        padding: int, ``(px, py)`` or ``(px0, px1, py0, py1)``, applied after upsampling; negative crops.
        flip_filter: False for convolution, True for correlation.
        gain: overall scaling of the signal magnitude.

    Returns:
        ``[N, C, (H * upy + py0 + py1 - fh) // downy + 1, (W * upx + px0 + px1 - fw) // downx + 1]``.

    Raises:
        ShapeError: if ``x`` is not 4-D, ``f`` is not 1-D/2-D, or the output would be empty.

    Example:
        >>> f = setup_filter([1, 3, 3, 1])  # [4, 4]
        >>> upfirdn2d(torch.ones(1, 1, 8, 8), f, up=2, padding=(2, 1, 2, 1), gain=4).shape
        torch.Size([1, 1, 16, 16])
    """
    if x.ndim != 4:
        raise ShapeError(f"upfirdn2d: x must have shape [N, C, H, W], got {list(x.shape)}")
    if f is None:
        f = torch.ones([1, 1], dtype=x.dtype, device=x.device)
    if f.ndim not in (1, 2):
        raise ShapeError(f"upfirdn2d: f must be 1-D or 2-D, got shape {list(f.shape)}")
    upx, upy = _pair(up, "up")
    downx, downy = _pair(down, "down")
    if min(upx, upy, downx, downy) < 1:
        raise ShapeError(f"upfirdn2d: up and down must be >= 1, got up={up!r}, down={down!r}")
    px0, px1, py0, py1 = _padding4(padding)
    n, c, h, w = x.shape
    fw, fh = _filter_size(f)
    out_h = (h * upy + py0 + py1 - fh) // downy + 1
    out_w = (w * upx + px0 + px1 - fw) // downx + 1
    if out_h < 1 or out_w < 1:
        raise ShapeError(
            f"upfirdn2d: output would be empty for x {list(x.shape)}, filter {list(f.shape)}, "
            f"up={up!r}, down={down!r}, padding={padding!r}"
        )

    # Zero insertion: each pixel followed by (up - 1) zeros along each axis.
    x = x.reshape(n, c, h, 1, w, 1)
    x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
    x = x.reshape(n, c, h * upy, w * upx)

    # Pad with zeros where positive, crop where negative.
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]

    # conv2d correlates, so flip the filter for a true convolution.
    f = (f * (gain ** (f.ndim / 2))).to(x.dtype)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    weight = f[None, None].repeat([c, 1] + [1] * f.ndim)
    if f.ndim == 2:
        x = F.conv2d(x, weight, groups=c)
    else:
        x = F.conv2d(x, weight.unsqueeze(2), groups=c)
        x = F.conv2d(x, weight.unsqueeze(3), groups=c)
    return x[:, :, ::downy, ::downx]


def filter2d(
    x: torch.Tensor, f: torch.Tensor | None, padding: Padding = 0, flip_filter: bool = False, gain: float = 1
) -> torch.Tensor:
    """FIR-filter ``x`` keeping its size (plus ``padding``). ``x`` ``[N, C, H, W]`` -> same layout."""
    px0, px1, py0, py1 = _padding4(padding)
    fw, fh = _filter_size(f)
    pad = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=pad, flip_filter=flip_filter, gain=gain)


def upsample2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: Scaling = 2,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1,
) -> torch.Tensor:
    """Upsample ``x`` ``[N, C, H, W]`` to ``[N, C, H * upy, W * upx]`` with FIR filter ``f``.

    The gain is multiplied by ``upx * upy`` so that the mean value is preserved.
    """
    upx, upy = _pair(up, "up")
    px0, px1, py0, py1 = _padding4(padding)
    fw, fh = _filter_size(f)
    pad = [
        px0 + (fw + upx - 1) // 2,
        px1 + (fw - upx) // 2,
        py0 + (fh + upy - 1) // 2,
        py1 + (fh - upy) // 2,
    ]
    return upfirdn2d(x, f, up=up, padding=pad, flip_filter=flip_filter, gain=gain * upx * upy)


def downsample2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    down: Scaling = 2,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1,
) -> torch.Tensor:
    """Downsample ``x`` ``[N, C, H, W]`` to ``[N, C, H // downy, W // downx]`` with FIR filter ``f``."""
    downx, downy = _pair(down, "down")
    px0, px1, py0, py1 = _padding4(padding)
    fw, fh = _filter_size(f)
    pad = [
        px0 + (fw - downx + 1) // 2,
        px1 + (fw - downx) // 2,
        py0 + (fh - downy + 1) // 2,
        py1 + (fh - downy) // 2,
    ]
    return upfirdn2d(x, f, down=down, padding=pad, flip_filter=flip_filter, gain=gain)


# --------------------------------------------------------------------------------------------------
# Convolution with resampling, modulated convolution.


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
    fw, fh = _filter_size(f)
    px0, px1, py0, py1 = _padding4(padding)
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
