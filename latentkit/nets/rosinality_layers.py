"""The building blocks of rosinality's StyleGAN2 (stylegan2-pytorch ``model.py``), named as its checkpoints
name them: equalised linear layers, stored FIR kernels, the modulated convolution, styled convolutions, ToRGB."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from latentkit.nets.ops import upfirdn2d

__all__ = ["BiasAct", "ConstInput", "EqualLinear", "FIRFilter", "ModulatedConv", "NoiseScale", "PixelNorm",
           "StyledConv", "ToRGB", "fused_lrelu"]

_SLOPE = 0.2
_GAIN = math.sqrt(2)


def fused_lrelu(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``sqrt(2) * leaky_relu(x + bias, 0.2)`` with ``bias [C]`` broadcast over axis 1."""
    shape = [1, -1] + [1] * (x.ndim - 2)
    return F.leaky_relu(x + bias.view(shape), _SLOPE) * _GAIN


class PixelNorm(torch.nn.Module):
    """Divide each row by its root mean square (over axis 1); no parameters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + 1e-8)


class EqualLinear(torch.nn.Module):
    """Linear layer with run-time weight scaling ``lr_mul / sqrt(in_dim)`` and bias scaling ``lr_mul``.

    With ``activate=True`` the bias is added inside the leaky ReLU (slope 0.2, gain sqrt(2)).
    """

    def __init__(self, in_dim: int, out_dim: int, *, lr_mul: float = 1.0, activate: bool = False) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(out_dim, in_dim))
        self.bias = torch.nn.Parameter(torch.zeros(out_dim))
        self.weight_gain = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activate = activate

    def preact(self, x: torch.Tensor) -> torch.Tensor:
        """The input of the activation (bias included), ``[N, out_dim]``."""
        return F.linear(x, self.weight * self.weight_gain) + self.bias * self.lr_mul

    def extra_repr(self) -> str:
        return f"in_dim={self.weight.shape[1]}, out_dim={self.weight.shape[0]}, lr_mul={self.lr_mul:g}, activate={self.activate}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activate:
            return fused_lrelu(F.linear(x, self.weight * self.weight_gain), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.weight_gain, self.bias * self.lr_mul)


class FIRFilter(torch.nn.Module):
    """A stored 2-D FIR kernel (buffer ``kernel [taps, taps]``, gain already folded in) and its padding."""

    def __init__(self, taps: int, pad: tuple[int, int], up: int = 1) -> None:
        super().__init__()
        self.register_buffer("kernel", torch.zeros(taps, taps))
        self.pad = pad
        self.up = up

    def extra_repr(self) -> str:
        return f"taps={self.kernel.shape[0]}, pad={self.pad}, up={self.up}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p0, p1 = self.pad
        return upfirdn2d(x, self.kernel, up=self.up, padding=[p0, p1, p0, p1])


class ModulatedConv(torch.nn.Module):
    """Per-sample modulated convolution (grouped over the batch), optionally demodulated or upsampling."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        *,
        demodulate: bool,
        upsample: bool = False,
        blur_taps: int = 4,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.weight = torch.nn.Parameter(torch.zeros(1, out_channels, in_channels, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channels)
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.demodulate = demodulate
        self.upsample = upsample
        if upsample:
            # The transposed conv grows H to 2H + k - 2; the blur's padding brings it back to 2H.
            excess = (blur_taps - 2) - (kernel_size - 1)
            self.blur = FIRFilter(blur_taps, ((excess + 1) // 2 + 1, excess // 2 + 1))

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}, kernel_size={self.kernel_size}, demodulate={self.demodulate}, upsample={self.upsample}"

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        n, _, h, wid = x.shape
        k = self.kernel_size
        styles = self.modulation(w).view(n, 1, self.in_channels, 1, 1)
        weight = self.weight * self.weight_gain * styles  # [N, out, in, k, k]
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.square().sum(dim=[2, 3, 4]) + 1e-8).view(n, -1, 1, 1, 1)
        x = x.reshape(1, n * self.in_channels, h, wid)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(n * self.in_channels, self.out_channels, k, k)
            out = F.conv_transpose2d(x, weight, stride=2, padding=0, groups=n)
            return self.blur(out.view(n, self.out_channels, *out.shape[2:]))
        weight = weight.reshape(n * self.out_channels, self.in_channels, k, k)
        out = F.conv2d(x, weight, padding=k // 2, groups=n)
        return out.view(n, self.out_channels, *out.shape[2:])


class NoiseScale(torch.nn.Module):
    """Holds the learned noise strength ``weight [1]``."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))


class BiasAct(torch.nn.Module):
    """Holds the bias ``[C]`` added before the leaky ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(channels))


class StyledConv(torch.nn.Module):
    """Modulated conv -> ``+ noise.weight * noise`` -> ``sqrt(2) * lrelu(x + bias, 0.2)``."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int, *, upsample: bool, blur_taps: int
    ) -> None:
        super().__init__()
        self.conv = ModulatedConv(
            in_channels, out_channels, kernel_size, style_dim, demodulate=True, upsample=upsample, blur_taps=blur_taps
        )
        self.noise = NoiseScale()
        self.activate = BiasAct(out_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        x = self.conv(x, w)
        if noise is not None:
            x = x + self.noise.weight * noise
        return fused_lrelu(x, self.activate.bias)


class ToRGB(torch.nn.Module):
    """Modulated 1x1 conv (no demodulation) plus bias; adds the upsampled running image when given."""

    def __init__(self, in_channels: int, img_channels: int, style_dim: int, *, upsample: bool, blur_taps: int) -> None:
        super().__init__()
        self.conv = ModulatedConv(in_channels, img_channels, 1, style_dim, demodulate=False)
        self.bias = torch.nn.Parameter(torch.zeros(1, img_channels, 1, 1))
        if upsample:
            excess = blur_taps - 2
            self.upsample = FIRFilter(blur_taps, ((excess + 1) // 2 + 1, excess // 2), up=2)

    def forward(self, x: torch.Tensor, w: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        out = self.conv(x, w) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class ConstInput(torch.nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.input = torch.nn.Parameter(torch.zeros(1, channels, 4, 4))
