"""Bias plus activation (NVIDIA's ``bias_act`` reference path): ``[N, C, ...]`` -> same shape."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from latentkit.errors import InputError, ShapeError

__all__ = ["ACTIVATIONS", "Activation", "bias_act"]


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
        InputError: if ``act`` is unknown.
        ShapeError: if ``b`` does not match ``x.shape[dim]``.

    Example:
        >>> bias_act(torch.tensor([[-1.0, 2.0]]), act="lrelu", clamp=2.0)  # sqrt(2) * lrelu, then clamp
        tensor([[-0.2828,  2.0000]])
    """
    spec = ACTIVATIONS.get(act)
    if spec is None:
        raise InputError(f"bias_act: unknown act={act!r}; expected one of {sorted(ACTIVATIONS)}")
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
    if act in ("lrelu", "relu") and alpha >= 0 and gain > 0 and (gain != 1 or clamp >= 0):
        return _ScaledLeakyReLU.apply(x, alpha if act == "lrelu" else 0.0, gain, clamp)
    x = spec.func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


class _ScaledLeakyReLU(torch.autograd.Function):
    """``clamp(leaky_relu(x, alpha) * gain, -clamp, clamp)`` (``gain > 0``; ``clamp < 0``: none) in place on
    one buffer, with a backward from the saved output alone.

    A positive gain and a symmetric clamp keep the sign of ``leaky_relu(x)``, so the output tells which slope
    applied and whether the clamp bit. Autograd's chain of three ops kept three tensors and spent six
    full passes on the backward (the clamp's two comparisons, their ``and``, the product, the gain, the leaky
    ReLU's); this keeps one and spends three. The clamp's gradient is zero where the output sits on the
    bound, also where the input reached it exactly, which the op chain counts as inside (a set of measure
    zero).
    """

    @staticmethod
    def forward(ctx, x, alpha, gain, clamp):  # noqa: D102 - see the class docstring
        y = F.leaky_relu(x, alpha)
        if gain != 1:
            y.mul_(gain)
        if clamp >= 0:
            y.clamp_(-clamp, clamp)
        ctx.alpha, ctx.gain, ctx.clamp = alpha, gain, clamp
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):  # noqa: D102 - see the class docstring
        (y,) = ctx.saved_tensors
        g = torch.ops.aten.leaky_relu_backward(grad, y, ctx.alpha, True)  # y has the sign of leaky_relu(x)
        if ctx.gain != 1:
            g.mul_(ctx.gain)
        if ctx.clamp >= 0:
            g = torch.ops.aten.hardtanh_backward(g, y, -ctx.clamp, ctx.clamp)  # 0 where |y| == clamp
        return g, None, None, None

