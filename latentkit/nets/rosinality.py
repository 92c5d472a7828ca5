"""rosinality/stylegan2-pytorch's StyleGAN2 generator, re-implemented (architecture ``'rosinality-stylegan2'``).

The module tree mirrors the parameter and buffer names of rosinality's ``model.Generator`` so that a
checkpoint's ``g_ema`` state dict loads with strict key and shape checks:

* ``style.{1..n_mlp}``: equalized-lr linear layers (lr multiplier ``lr_mlp``, leaky ReLU 0.2 times
  sqrt(2) with the bias added before the activation) after a parameter-free pixel norm (``style.0``);
* ``input.input``: the learned constant ``[1, C, 4, 4]``;
* ``conv1`` and ``convs.{i}``: modulated 3x3 convolutions with demodulation, noise injection
  (``noise.weight``, a scalar) and a leaky ReLU with bias (``activate.bias``); every even ``convs``
  entry upsamples 2x with a transposed convolution followed by a blur (``conv.blur.kernel``);
* ``to_rgb1`` and ``to_rgbs.{i}``: modulated 1x1 convolutions without demodulation plus a bias; the
  running image is upsampled with ``upsample.kernel`` and added (skip architecture);
* ``noises.noise_{i}``: the stored noise inputs ``[1, 1, r, r]`` used by ``noise_mode='const'``.

FIR kernels are buffers loaded from the checkpoint, never recomputed. Channel counts are constructor
arguments (the loader reads them off the tensor shapes); :func:`standard_channels` gives rosinality's
usual table for building a fresh network. Mapping: ``z [N, style_dim] -> w [N, style_dim]``; the
base class broadcasts it to ``ws [N, n_latent, style_dim]`` with ``n_latent = 2 * log2(size) - 2``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from latentkit.checks import check_shape
from latentkit.errors import InputError
from latentkit.nets.generator import Generator, MappingActivation
from latentkit.nets.rosinality_layers import (
    ConstInput,
    EqualLinear,
    PixelNorm,
    StyledConv,
    ToRGB,
)

__all__ = ["RosinalityGenerator", "standard_channels", "W_AVG_SAMPLES", "W_AVG_SEED"]

W_AVG_SAMPLES = 10_000
"""Number of z samples :meth:`RosinalityGenerator.estimate_w_avg` averages by default."""

W_AVG_SEED = 0
"""Seed of the CPU ``torch.Generator`` that draws those samples."""

_SLOPE = 0.2
_GAIN = math.sqrt(2)


def standard_channels(size: int, channel_multiplier: int = 2) -> dict[int, int]:
    """rosinality's channel table: resolution -> channels for every resolution up to ``size``.

    512 channels up to 32x32, then ``256, 128, 64, 32, 16`` times ``channel_multiplier`` for 64 ... 1024.
    """
    table = {4: 512, 8: 512, 16: 512, 32: 512}
    for log_res, base in zip(range(6, 11), (256, 128, 64, 32, 16)):
        table[2**log_res] = base * channel_multiplier
    return {res: ch for res, ch in table.items() if res <= size}


class RosinalityGenerator(Generator):
    """rosinality's StyleGAN2 generator (``model.Generator``), unconditional.

    Build it with the sizes of a checkpoint, then load its ``g_ema`` state dict (keys as in rosinality's
    code) plus ``w_avg``; :func:`latentkit.load.rosinality.load_rosinality` does both. A fresh instance
    holds zeros.

    Args:
        size: output resolution (a power of two >= 4).
        style_dim: width of z and w (``z_dim = w_dim = style_dim``).
        n_mlp: number of mapping layers.
        channels: feature channels per resolution, ``{4: C4, 8: C8, ..., size: C}``.
        kernel_size: size of the synthesis convolutions (3 in rosinality's code).
        blur_taps: taps of the stored FIR kernels (4 for ``blur_kernel=[1, 3, 3, 1]``).
        lr_mlp: learning-rate multiplier of the mapping layers (rosinality's default 0.01; not stored
            in checkpoints).
        img_channels: output channels (3).

    Raises:
        InputError: if ``size`` is not a power of two >= 4 or ``channels`` lacks a resolution.
    """

    architecture = "rosinality-stylegan2"
    mapping_activation = MappingActivation(slope=_SLOPE, gain=_GAIN)

    def __init__(
        self,
        size: int,
        style_dim: int,
        n_mlp: int,
        channels: Mapping[int, int],
        *,
        kernel_size: int = 3,
        blur_taps: int = 4,
        lr_mlp: float = 0.01,
        img_channels: int = 3,
    ) -> None:
        super().__init__()
        if size < 4 or size & (size - 1):
            raise InputError(f"size must be a power of two >= 4, got {size}")
        log_size = int(math.log2(size))
        missing = [2**i for i in range(2, log_size + 1) if 2**i not in channels]
        if missing:
            raise InputError(f"channels must give a channel count for every resolution 4..{size}; missing {missing}")
        self.size = size
        self.style_dim = style_dim
        self.n_mlp = n_mlp
        self.channels = {2**i: int(channels[2**i]) for i in range(2, log_size + 1)}
        self.z_dim = self.w_dim = style_dim
        self.c_dim = 0
        self.num_ws = self.n_latent = 2 * log_size - 2
        self.num_noise = 2 * log_size - 3
        self.img_resolution = size
        self.img_channels = img_channels
        self.w_avg_source = "unset"

        self.style = torch.nn.Sequential(
            PixelNorm(), *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activate=True) for _ in range(n_mlp)]
        )
        c4 = self.channels[4]
        self.input = ConstInput(c4)
        self.conv1 = StyledConv(c4, c4, kernel_size, style_dim, upsample=False, blur_taps=blur_taps)
        self.to_rgb1 = ToRGB(c4, img_channels, style_dim, upsample=False, blur_taps=blur_taps)
        self.convs = torch.nn.ModuleList()
        self.to_rgbs = torch.nn.ModuleList()
        in_ch = c4
        for log_res in range(3, log_size + 1):
            out_ch = self.channels[2**log_res]
            self.convs.append(StyledConv(in_ch, out_ch, kernel_size, style_dim, upsample=True, blur_taps=blur_taps))
            self.convs.append(StyledConv(out_ch, out_ch, kernel_size, style_dim, upsample=False, blur_taps=blur_taps))
            self.to_rgbs.append(ToRGB(out_ch, img_channels, style_dim, upsample=True, blur_taps=blur_taps))
            in_ch = out_ch
        self.noises = torch.nn.Module()
        for i in range(self.num_noise):
            res = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.zeros(1, 1, res, res))
        self.register_buffer("w_avg", torch.zeros(style_dim))

    # ----------------------------------------------------------------------------------------------
    # Mapping.

    def map_latent(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """rosinality's ``style(z)``: pixel norm and ``n_mlp`` lrelu layers.

        Args:
            z: ``[N, style_dim]``.
            c: ignored (the network is unconditional; ``[N, 0]``).

        Returns:
            w ``[N, style_dim]``.
        """
        return self.style(z)

    def mapping_preact(self, z: torch.Tensor) -> torch.Tensor:
        """The input of the last mapping activation, ``[N, style_dim]`` (``w = sqrt(2) * lrelu(pre, 0.2)``)."""
        check_shape(z, ["N", self.z_dim], "z")
        layers = list(self.style)
        x = z.to(device=self.w_avg.device, dtype=self.dtype)
        for layer in layers[:-1]:
            x = layer(x)
        return layers[-1].preact(x)

    @torch.no_grad()
    def estimate_w_avg(
        self, num_samples: int = W_AVG_SAMPLES, *, seed: int = W_AVG_SEED, batch_size: int = 1000
    ) -> torch.Tensor:
        """Set ``w_avg`` to the mean of ``map_latent(z)`` over ``num_samples`` draws of z.

        z is drawn on the CPU from ``torch.Generator().manual_seed(seed)`` (so the estimate is the same on
        every device) and the mean is accumulated in float64.

        Args:
            num_samples: how many z to average.
            seed: seed of the CPU generator.
            batch_size: z per mapping call (does not change the result beyond float rounding).

        Returns:
            The new ``w_avg`` ``[style_dim]``.
        """
        self.w_avg.copy_(self.mean_mapped_w(num_samples, seed=seed, batch_size=batch_size).to(self.w_avg.dtype))
        self.w_avg_source = f"estimated: mean of {num_samples} mapped z (seed {seed})"
        return self.w_avg

    # ----------------------------------------------------------------------------------------------
    # Synthesis.

    def const_noise(self) -> dict[str, torch.Tensor]:
        """The stored noise buffers, ``'noise_0' ... 'noise_{L-1}'`` -> ``[1, 1, r, r]`` (r = 4, 8, 8, 16, ...)."""
        return {name: buf for name, buf in self.noises.named_buffers(recurse=False)}

    def _noise_inputs(
        self, n: int, noise_mode: str, noise: Mapping[str, torch.Tensor] | None, like: torch.Tensor
    ) -> list[torch.Tensor | None]:
        self.check_noise_mode(noise_mode)
        stored = self.const_noise()
        given = self.check_noise(noise, n)
        inputs: list[torch.Tensor | None] = []
        for name, buf in stored.items():
            res = buf.shape[-1]
            if name in given:
                inputs.append(given[name].to(device=like.device, dtype=like.dtype))
            elif noise_mode == "const":
                inputs.append(buf)
            elif noise_mode == "random":
                inputs.append(torch.randn(n, 1, res, res, device=like.device, dtype=like.dtype))
            else:
                inputs.append(None)
        return inputs

    def synthesis(
        self,
        ws: torch.Tensor,
        noise_mode: str = "const",
        noise: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Render images from broadcast latents, as ``g_ema([ws], input_is_latent=True)`` does.

        Args:
            ws: ``[N, n_latent, style_dim]``.
            noise_mode: ``'const'`` (the ``noises.noise_i`` buffers, rosinality's
                ``randomize_noise=False``), ``'random'`` (fresh normal noise per sample) or ``'none'``
                (no noise).
            noise: optional overrides, keys of :meth:`const_noise`, each ``[N, 1, r, r]`` or
                ``[1, 1, r, r]``; layers not in the dict follow ``noise_mode``.

        Returns:
            Images ``[N, img_channels, size, size]``, values around [-1, 1].

        Raises:
            ShapeError: if ``ws`` or a noise tensor has the wrong shape.
            InputError: for an unknown ``noise_mode`` or noise key.
        """
        n = self.check_ws(ws)
        ws = ws.to(device=self.w_avg.device, dtype=self.dtype)
        noises = self._noise_inputs(n, noise_mode, noise, ws)
        x = self.input.input.repeat(n, 1, 1, 1)
        x = self.conv1(x, ws[:, 0], noises[0])
        img = self.to_rgb1(x, ws[:, 1], None)
        for block, to_rgb in enumerate(self.to_rgbs):
            i = 2 * block + 1  # index of the block's first latent and first noise input
            x = self.convs[2 * block](x, ws[:, i], noises[i])
            x = self.convs[2 * block + 1](x, ws[:, i + 1], noises[i + 1])
            img = to_rgb(x, ws[:, i + 2], img)
        return img

    def info(self) -> dict[str, Any]:
        """Base summary plus ``n_mlp``, the channel table and where ``w_avg`` came from."""
        summary = super().info()
        summary.update(
            n_mlp=self.n_mlp,
            channels={str(res): ch for res, ch in self.channels.items()},
            w_avg_source=self.w_avg_source,
        )
        return summary
