"""StyleGAN3 generator (configs T and R), "Alias-Free Generative Adversarial Networks".

Clean-room re-implementation with the numerics of NVIDIA's ``training/networks_stylegan3.py``:

* mapping: identical to StyleGAN2's (:class:`latentkit.nets.stylegan2.MappingNetwork`): RMS-normalised z
  and label embedding, ``num_layers`` fully connected lrelu layers with learning-rate multiplier 0.01;
* synthesis input: Fourier features whose frequencies are rotated and translated by an affine function of
  ``ws[:, 0]`` (``R @ T @ transform``), mixed by a learned channel matrix;
* synthesis layers: modulated convolution with StyleGAN3's normalisations (per-filter RMS of the weight,
  RMS of the whole style tensor, demodulation, input gain ``1 / sqrt(magnitude_ema)``), then the filtered
  leaky ReLU (:mod:`latentkit.nets.ops.filtered_lrelu`). The last layer is ToRGB: styles scaled by
  ``1 / sqrt(in_channels * k**2)``, no demodulation, linear activation;
* the image is multiplied by ``output_scale``.

There are no noise inputs. Every filter and Fourier buffer is loaded from the checkpoint, never designed
here: the layer geometry (up/down factors, taps, padding) is given by :class:`SynthesisLayerSpec`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from latentkit.checks import check_shape
from latentkit.errors import InputError, ShapeError
from latentkit.nets.ops.filtered_lrelu import filtered_lrelu
from latentkit.nets.generator import Generator, float_dtype
from latentkit.nets.stylegan2 import FullyConnectedLayer, MappingConfig, MappingNetwork

__all__ = [
    "SynthesisInputSpec",
    "SynthesisLayerSpec",
    "SynthesisInput",
    "SynthesisLayer",
    "SynthesisNetwork",
    "FourierGenerator",
    "StyleGAN3Generator",
    "modulated_conv2d_sg3",
]


@dataclass(frozen=True)
class SynthesisInputSpec:
    """Geometry of the Fourier-feature input layer.

    Attributes:
        channels: number of Fourier features (= channels of the first layer).
        size: output ``(width, height)`` in pixels, margin included.
        sampling_rate: sampling rate of the output grid.
        bandwidth: cutoff of the frequencies; out-of-band frequencies are damped.
    """

    channels: int
    size: tuple[int, int]
    sampling_rate: float
    bandwidth: float


@dataclass(frozen=True)
class SynthesisLayerSpec:
    """Geometry of one synthesis layer, as stored per layer in the checkpoint.

    Attributes:
        name: the layer's name, e.g. ``'L3_36_32'`` (``L{index}_{out_size}_{out_channels}``).
        in_channels, out_channels: feature channels.
        in_size, out_size: ``(width, height)`` of the input and output feature maps.
        conv_kernel: kernel size of the modulated convolution (1 for ToRGB and config R).
        up, down: up- and downsampling factors of the filtered leaky ReLU.
        up_taps, down_taps: filter lengths (1 = no filter).
        down_radial: the down filter is 2-D radial ``[taps, taps]`` (config R, non-critical layers).
        padding: ``(x0, x1, y0, y1)`` padding of the upsampled signal.
        is_torgb: the final ToRGB layer (no demodulation, linear activation).
        is_critically_sampled: the layer's cutoff equals its Nyquist frequency (last layers).
        conv_clamp: activation clamp, None for no clamping.
        use_fp16: the original runs this layer in float16 on CUDA.
    """

    name: str
    in_channels: int
    out_channels: int
    in_size: tuple[int, int]
    out_size: tuple[int, int]
    conv_kernel: int
    up: int
    down: int
    up_taps: int
    down_taps: int
    down_radial: bool
    padding: tuple[int, int, int, int]
    is_torgb: bool
    is_critically_sampled: bool
    conv_clamp: float | None
    use_fp16: bool = False


class SynthesisInput(torch.nn.Module):
    """Fourier features transformed by ``ws[:, 0]``: ``[N, w_dim] -> [N, channels, height, width]``."""

    def __init__(self, w_dim: int, spec: SynthesisInputSpec) -> None:
        super().__init__()
        self.spec = spec
        self.weight = torch.nn.Parameter(torch.zeros(spec.channels, spec.channels))
        self.affine = FullyConnectedLayer(w_dim, 4)
        self.register_buffer("transform", torch.eye(3))
        self.register_buffer("freqs", torch.zeros(spec.channels, 2))
        self.register_buffer("phases", torch.zeros(spec.channels))

    def transforms(self, w: torch.Tensor) -> torch.Tensor:
        """The per-sample inverse transform ``R @ T @ transform`` of the image plane, ``[N, 3, 3]``."""
        t = self.affine(w)  # [N, 4]: cos-like, sin-like, translation x, y
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        one, zero = torch.ones_like(t[:, 0]), torch.zeros_like(t[:, 0])
        rotation = torch.stack([t[:, 0], -t[:, 1], zero, t[:, 1], t[:, 0], zero, zero, zero, one], 1)
        translation = torch.stack([one, zero, -t[:, 2], zero, one, -t[:, 3], zero, zero, one], 1)
        return rotation.view(-1, 3, 3) @ translation.view(-1, 3, 3) @ self.transform.unsqueeze(0)

    def extra_repr(self) -> str:
        return f"channels={self.spec.channels}, size={list(self.spec.size)}, sampling_rate={self.spec.sampling_rate:g}, bandwidth={self.spec.bandwidth:g}"

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        """``w [N, w_dim]`` -> Fourier features ``[N, channels, height, width]``."""
        spec = self.spec
        m = self.transforms(w)  # [N, 3, 3]
        freqs = self.freqs.unsqueeze(0)  # [1, C, 2]
        phases = self.phases.unsqueeze(0) + (freqs @ m[:, :2, 2:]).squeeze(2)  # [N, C]
        freqs = freqs @ m[:, :2, :2]  # [N, C, 2]
        # Frequencies pushed beyond the band by the user transform fade out linearly up to Nyquist.
        amplitudes = (1 - (freqs.norm(dim=2) - spec.bandwidth) / (spec.sampling_rate / 2 - spec.bandwidth)).clamp(0, 1)

        width, height = spec.size
        theta = torch.eye(2, 3, device=w.device, dtype=w.dtype)
        theta[0, 0] = 0.5 * width / spec.sampling_rate
        theta[1, 1] = 0.5 * height / spec.sampling_rate
        grid = F.affine_grid(theta.unsqueeze(0), [1, 1, height, width], align_corners=False)  # [1, H, W, 2]
        x = (grid.unsqueeze(3) @ freqs.transpose(1, 2)[:, None, None]).squeeze(3)  # [N, H, W, C]
        x = torch.sin((x + phases[:, None, None, :]) * (2 * math.pi))
        x = x * amplitudes[:, None, None, :]
        x = x @ (self.weight / math.sqrt(spec.channels)).t()
        return x.permute(0, 3, 1, 2).contiguous()  # [N, C, H, W]


def modulated_conv2d_sg3(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    *,
    demodulate: bool = True,
    padding: int = 0,
    input_gain: torch.Tensor | None = None,
    fused: bool | None = None,
) -> torch.Tensor:
    """StyleGAN3's modulated convolution.

    With ``demodulate`` the weight is first divided by the RMS of each output filter and the styles by the
    RMS of the whole style tensor (all samples: this cancels in the demodulation except through its 1e-8
    epsilon, which makes results depend on the batch at the 1e-7 level, as in the original).

    Fused (NVIDIA's only form): one grouped convolution with per-sample weights. Unfused: the styles scale
    the input channels, one convolution with the shared weight, the demodulation scales the output channels:
    the same function, but its backward never forms the per-sample weight gradient, which is as costly as
    the convolution's input gradient and which nothing needs when the weight itself is constant.

    Args:
        x: ``[N, I, H, W]``.
        weight: ``[O, I, k, k]``.
        styles: ``[N, I]``.
        demodulate: normalise each output filter of each sample to unit norm.
        padding: zero padding of the convolution.
        input_gain: scale of the input channels applied after demodulation, ``[]``, ``[I]`` or ``[N, I]``.
        fused: True for the grouped convolution, False for the unfused form; None (default) chooses the
            unfused form exactly when gradients are being recorded and ``weight`` needs none (projection).

    Returns:
        ``[N, O, H + 2 * padding - k + 1, W + 2 * padding - k + 1]``.
    """
    n = x.shape[0]
    out_ch, in_ch, kh, kw = weight.shape
    if fused is None:
        fused = not (torch.is_grad_enabled() and not weight.requires_grad)
    if demodulate:
        weight = weight * weight.square().mean([1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean().rsqrt()
    if not fused:
        scale = styles if input_gain is None else styles * input_gain.expand(n, in_ch)  # [N, I]
        y = F.conv2d(x * scale[:, :, None, None].to(x.dtype), weight.to(x.dtype), padding=padding)
        if demodulate:  # 1 / |weight * styles[n]| per output filter: [N, O]
            d = (styles.square() @ weight.square().sum([2, 3]).t() + 1e-8).rsqrt()
            y = y * d[:, :, None, None].to(y.dtype)
        return y
    w = weight.unsqueeze(0) * styles[:, None, :, None, None]  # [N, O, I, k, k]
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()[:, :, None, None, None]
    if input_gain is not None:
        w = w * input_gain.expand(n, in_ch)[:, None, :, None, None]
    y = F.conv2d(x.reshape(1, -1, *x.shape[2:]), w.reshape(-1, in_ch, kh, kw).to(x.dtype),
                 padding=padding, groups=n)
    return y.reshape(n, out_ch, *y.shape[2:])


class SynthesisLayer(torch.nn.Module):
    """One StyleGAN3 layer: affine style, modulated conv, filtered leaky ReLU (or ToRGB).

    ``x [N, in_channels, in_h, in_w]``, ``w [N, w_dim]`` -> ``[N, out_channels, out_h, out_w]``.
    """

    def __init__(self, w_dim: int, spec: SynthesisLayerSpec) -> None:
        super().__init__()
        self.spec = spec
        self.affine = FullyConnectedLayer(w_dim, spec.in_channels)
        k = spec.conv_kernel
        self.weight = torch.nn.Parameter(torch.zeros(spec.out_channels, spec.in_channels, k, k))
        self.bias = torch.nn.Parameter(torch.zeros(spec.out_channels))
        self.register_buffer("magnitude_ema", torch.ones([]))
        up_shape = [spec.up_taps] if spec.up_taps > 1 else None
        down_shape = None if spec.down_taps <= 1 else [spec.down_taps] * (2 if spec.down_radial else 1)
        self.register_buffer("up_filter", None if up_shape is None else torch.zeros(up_shape))
        self.register_buffer("down_filter", None if down_shape is None else torch.zeros(down_shape))
        self.fp16 = False

    def extra_repr(self) -> str:
        return f"{self.spec.name}: in_channels={self.spec.in_channels}, out_channels={self.spec.out_channels}, kernel={self.spec.conv_kernel}, up={self.spec.up}, down={self.spec.down}, in_size={list(self.spec.in_size)}, out_size={list(self.spec.out_size)}, is_torgb={self.spec.is_torgb}, conv_clamp={self.spec.conv_clamp}"

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        spec = self.spec
        styles = self.affine(w)
        if spec.is_torgb:
            styles = styles * (1 / math.sqrt(spec.in_channels * spec.conv_kernel**2))
        half = self.fp16 and spec.use_fp16 and x.device.type == "cuda"
        dtype = torch.float16 if half else self.weight.dtype
        x = modulated_conv2d_sg3(x.to(dtype), self.weight, styles, demodulate=not spec.is_torgb,
                                 padding=spec.conv_kernel - 1, input_gain=self.magnitude_ema.rsqrt())
        return filtered_lrelu(
            x, self.up_filter, self.down_filter, self.bias.to(x.dtype), up=spec.up, down=spec.down,
            padding=spec.padding, gain=1.0 if spec.is_torgb else math.sqrt(2),
            slope=1.0 if spec.is_torgb else 0.2, clamp=spec.conv_clamp,
        )


class SynthesisNetwork(torch.nn.Module):
    """``ws [N, num_ws, w_dim]`` -> image ``[N, C, H, W]``: input, layers (ws[:, 1:]), output scale."""

    def __init__(self, *, w_dim: int, input_spec: SynthesisInputSpec,
                 layer_specs: list[SynthesisLayerSpec], output_scale: float = 0.25) -> None:
        super().__init__()
        if not layer_specs or not layer_specs[-1].is_torgb:
            raise InputError("layer_specs must end with the ToRGB layer (is_torgb=True)")
        self.w_dim = w_dim
        self.num_ws = len(layer_specs) + 1
        self.output_scale = float(output_scale)
        self.input = SynthesisInput(w_dim, input_spec)
        self.layers = torch.nn.ModuleDict({spec.name: SynthesisLayer(w_dim, spec) for spec in layer_specs})

    def forward(self, ws: torch.Tensor) -> torch.Tensor:
        compute = float_dtype(self)
        ws_per_layer = ws.to(compute).unbind(dim=1)
        x = self.input(ws_per_layer[0])
        for layer, w in zip(self.layers.values(), ws_per_layer[1:]):
            x = layer(x, w)
        if self.output_scale != 1:
            x = x * self.output_scale
        return x.to(compute)


class FourierGenerator(Generator):
    """Shared part of StyleGAN3 and StyleGAN-XL: a mapping module plus the StyleGAN3 synthesis network.

    Subclasses build ``mapping_net`` (``forward(z, c) -> w`` and ``last_preactivation(z, c)``) and call
    :meth:`_setup`. The checkpoint's ``mapping.w_avg`` lives here as the buffer ``w_avg``.
    """

    mapping_net: torch.nn.Module
    synthesis_net: SynthesisNetwork

    def _setup(self, *, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
               input_spec: SynthesisInputSpec, layer_specs: list[SynthesisLayerSpec],
               output_scale: float, w_avg_shape: tuple[int, ...]) -> None:
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis_net = SynthesisNetwork(w_dim=w_dim, input_spec=input_spec, layer_specs=layer_specs,
                                              output_scale=output_scale)
        self.num_ws = self.synthesis_net.num_ws
        self.register_buffer("w_avg", torch.zeros(w_avg_shape))

    def map_latent(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.mapping_net(z, c)

    def last_preactivation(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """Input of the mapping network's last activation, ``[N, w_dim]`` (see :attr:`mapping_activation`)."""
        n = check_shape(z, ["N", self.z_dim], "z")["N"]
        return self.mapping_net.last_preactivation(z.to(self.w_avg.device, self.dtype), self.prepare_labels(c, n))

    @property
    def fp16(self) -> bool:
        """Opt-in: on CUDA, run the layers the checkpoint marks ``use_fp16`` in float16 (as NVIDIA does)."""
        return any(layer.fp16 for layer in self.synthesis_net.layers.values())

    @fp16.setter
    def fp16(self, enabled: bool) -> None:
        for layer in self.synthesis_net.layers.values():
            layer.fp16 = bool(enabled)

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "const",
                  noise: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Render ``ws [N, num_ws, w_dim]`` to images ``[N, img_channels, img_resolution, img_resolution]``.

        StyleGAN3 has no noise inputs: ``noise_mode`` is validated and otherwise ignored, and ``noise``
        must be empty.

        Raises:
            ShapeError: if ``ws`` has the wrong shape.
            InputError: if ``noise_mode`` is unknown or ``noise`` names inputs this network lacks.
        """
        self.check_ws(ws)
        self.check_noise_mode(noise_mode)
        if noise:
            raise InputError(
                f"noise: {self.architecture} has no noise inputs (const_noise() is empty), got keys "
                f"{sorted(noise)}; pass noise=None"
            )
        img = self.synthesis_net(ws.to(self.w_avg.device))
        if img.shape[2:] != (self.img_resolution, self.img_resolution):
            raise ShapeError(
                f"synthesis produced {list(img.shape)}, expected resolution {self.img_resolution}; "
                "the layer specification does not match img_resolution"
            )
        return img


class StyleGAN3Generator(FourierGenerator):
    """StyleGAN3 generator, config T (3x3 convs, separable filters) or R (1x1 convs, radial filters).

    Args:
        z_dim, c_dim, w_dim, img_resolution, img_channels: as in NVIDIA's code.
        mapping_layers: number of fully connected mapping layers.
        input_spec: geometry of the Fourier input.
        layer_specs: the synthesis layers in order, ending with ToRGB.
        output_scale: image multiplier (0.25 in NVIDIA's code).
        mapping_lr_multiplier: learning-rate multiplier of the mapping layers (0.01).
        architecture: ``'stylegan3-t'`` or ``'stylegan3-r'``.

    Weights are placeholders after construction; load them (``latentkit.load_generator``).
    """

    def __init__(self, *, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_layers: int, input_spec: SynthesisInputSpec, layer_specs: list[SynthesisLayerSpec],
                 output_scale: float = 0.25, mapping_lr_multiplier: float = 0.01,
                 architecture: str = "stylegan3-t") -> None:
        super().__init__()
        if architecture not in ("stylegan3-t", "stylegan3-r"):
            raise InputError(f"architecture must be 'stylegan3-t' or 'stylegan3-r', got {architecture!r}")
        self.architecture = architecture
        # The stylegan3 repo's mapping network is the StyleGAN2 one (label embedding c_dim -> w_dim).
        mapping = MappingConfig(num_layers=mapping_layers, lr_multiplier=mapping_lr_multiplier)
        self.mapping_net = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, config=mapping)
        self._setup(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution,
                    img_channels=img_channels, input_spec=input_spec, layer_specs=layer_specs,
                    output_scale=output_scale, w_avg_shape=(w_dim,))
