"""The layers of StyleGAN2's synthesis network: modulated convolution with noise, bias, activation and clamp
(``SynthesisLayer``), modulated ToRGB, and the resnet shortcut, named as NVIDIA's checkpoints name them."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from latentkit.nets.mapping import FullyConnectedLayer, init_generator
from latentkit.nets.ops import ACTIVATIONS, bias_act, conv2d_resample, modulated_conv2d, setup_filter

__all__ = ["SkipConv", "SynthesisLayer", "ToRGBLayer", "filter_buffer"]


def filter_buffer(shape: Sequence[int]) -> torch.Tensor:
    """A placeholder FIR filter of the given shape: the binomial filter of that size, normalised."""
    taps = [math.comb(shape[0] - 1, k) for k in range(shape[0])]
    return setup_filter(taps, separable=len(shape) == 1)




class SynthesisLayer(torch.nn.Module):
    """Modulated 3x3 convolution (optionally 2x upsampling), noise, bias, activation, clamp."""

    def __init__(
        self, in_channels: int, out_channels: int, *, w_dim: int, resolution: int, up: int = 1,
        kernel_size: int = 3, use_noise: bool = True, activation: str = "lrelu", conv_clamp: float | None = None,
        resample_filter_shape: Sequence[int] = (4, 4), generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        generator = init_generator(generator)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.resolution, self.up, self.use_noise, self.activation = resolution, up, use_noise, activation
        self.conv_clamp = conv_clamp
        self.padding = kernel_size // 2
        self.act_gain = ACTIVATIONS[activation].gain
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1, generator=generator)
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        self.weight = torch.nn.Parameter(torch.randn(shape, generator=generator))
        if use_noise:
            self.noise_strength = torch.nn.Parameter(torch.zeros([]))
        self.bias = torch.nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("resample_filter", filter_buffer(resample_filter_shape))
        if use_noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution, generator=generator))

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}, resolution={self.resolution}, up={self.up}, activation={self.activation}, conv_clamp={self.conv_clamp}, use_noise={self.use_noise}"

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, *, noise_mode: str = "const", noise: torch.Tensor | None = None,
        fused_modconv: bool = True, gain: float = 1.0,
    ) -> torch.Tensor:
        """``x [N, in_channels, res // up, res // up]``, ``w [N, w_dim]`` -> ``[N, out_channels, res, res]``.

        ``noise`` (``[N or 1, 1, res, res]``) replaces the stored ``noise_const``; it is multiplied by the
        learned strength like the stored one.
        """
        styles = self.affine(w)  # [N, in_channels]
        noise_input = None
        if self.use_noise:
            if noise is not None:
                noise_input = noise.to(x.device, self.noise_strength.dtype) * self.noise_strength
            elif noise_mode == "random":
                noise_input = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device,
                                          dtype=self.noise_strength.dtype)
                noise_input = noise_input * self.noise_strength
            elif noise_mode == "const":
                noise_input = self.noise_const * self.noise_strength
        if noise_input is not None:
            noise_input = noise_input.to(x.dtype)
        x = modulated_conv2d(x, self.weight, styles, noise=noise_input, up=self.up, padding=self.padding,
                             resample_filter=self.resample_filter, flip_weight=self.up == 1,
                             fused_modconv=fused_modconv)
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return bias_act(x, self.bias.to(x.dtype), act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class ToRGBLayer(torch.nn.Module):
    """Modulated 1x1 convolution to image channels, without demodulation; bias, optional clamp."""

    def __init__(
        self, in_channels: int, out_channels: int, *, w_dim: int, kernel_size: int = 1,
        conv_clamp: float | None = None, generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        generator = init_generator(generator)
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1, generator=generator)
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        self.weight = torch.nn.Parameter(torch.randn(shape, generator=generator))
        self.bias = torch.nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)

    def extra_repr(self) -> str:
        return f"in_channels={self.weight.shape[1]}, out_channels={self.weight.shape[0]}, kernel_size={self.weight.shape[2]}, conv_clamp={self.conv_clamp}"

    def forward(self, x: torch.Tensor, w: torch.Tensor, *, fused_modconv: bool = True) -> torch.Tensor:
        """``x [N, in_channels, H, W]``, ``w [N, w_dim]`` -> ``[N, out_channels, H, W]``."""
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)


class SkipConv(torch.nn.Module):
    """The ``'resnet'`` shortcut: a bias-free 1x1 convolution with 2x FIR upsampling."""

    def __init__(
        self, in_channels: int, out_channels: int, *, resample_filter_shape: Sequence[int],
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(out_channels, in_channels, 1, 1, generator=init_generator(generator)))
        self.register_buffer("resample_filter", filter_buffer(resample_filter_shape))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def extra_repr(self) -> str:
        return f"in_channels={self.weight.shape[1]}, out_channels={self.weight.shape[0]}, up=2"

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        """``[N, in_channels, H, W] -> [N, out_channels, 2H, 2W]``, scaled by ``gain``."""
        w = (self.weight * self.weight_gain).to(x.dtype)
        x = conv2d_resample(x, w, self.resample_filter, up=2, flip_weight=False)
        return bias_act(x, None, gain=gain)
