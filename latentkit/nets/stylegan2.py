"""StyleGAN2 generator, as trained by NVIDIA's stylegan2-ada-pytorch and stylegan3 code bases.

Clean-room re-implementation with the numerics of their pure-PyTorch reference paths:

* mapping: RMS-normalised z (conditional nets: concatenated with an RMS-normalised linear label
  embedding), ``num_layers`` fully connected lrelu layers with learning-rate multiplier 0.01;
* synthesis: one block per resolution 4, 8, ..., ``img_resolution``. The first block starts from a learned
  constant; later blocks upsample with a modulated 3x3 transposed convolution and the block's FIR filter.
  Each convolution is modulated by an affine function of its w, demodulated, gets per-pixel noise times a
  learned strength, a bias, ``sqrt(2) * leaky_relu(., 0.2)`` and an optional clamp. The image is built by
  ``'skip'`` ToRGB layers (``'orig'``: ToRGB on the last block only; ``'resnet'``: residual feature blocks).

The module names match the checkpoints (``b{res}.conv0``, ``b{res}.torgb``, ``fc{i}`` ...), under
``mapping_net`` / ``synthesis_net`` instead of ``mapping`` / ``synthesis`` (those are methods here).
Every FIR filter is a buffer loaded from the checkpoint, never recomputed by the loader.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from latentkit.checks import check_shape
from latentkit.errors import InputError, ShapeError
from latentkit.nets.generator import Generator, float_dtype
from latentkit.nets.mapping import FullyConnectedLayer, MappingConfig, MappingLayers, MappingNetwork, init_generator
from latentkit.nets.stylegan2_layers import SkipConv, SynthesisLayer, ToRGBLayer, filter_buffer
from latentkit.nets.ops import upsample2d

__all__ = [
    "BlockConfig",
    "MappingConfig",
    "FullyConnectedLayer",
    "MappingLayers",
    "MappingNetwork",
    "SynthesisLayer",
    "ToRGBLayer",
    "SynthesisBlock",
    "SynthesisNetwork",
    "StyleGAN2Generator",
    "default_blocks",
]

ARCHITECTURES = ("orig", "skip", "resnet")


@dataclass(frozen=True)
class BlockConfig:
    """One synthesis block (NVIDIA's ``SynthesisBlock`` arguments).

    Attributes:
        resolution: output resolution of the block.
        in_channels: input feature channels; 0 for the first block, which starts from a learned constant.
        out_channels: output feature channels.
        is_last: the block at ``img_resolution`` (always has a ToRGB layer).
        architecture: ``'orig'``, ``'skip'`` or ``'resnet'``.
        use_fp16: the block may run in float16 on CUDA when the generator's ``fp16`` is switched on.
        conv_clamp: clamp of the convolution outputs (None: no clamp).
        kernel_size: size of the 3x3 convolutions.
        use_noise: the convolutions have noise inputs.
        activation: activation of the convolutions.
        resample_filter_shape: shape of the FIR filter buffers (``[4, 4]`` for NVIDIA's ``[1, 3, 3, 1]``).
        fused_modconv: one grouped convolution per layer; None: NVIDIA's ADA rule (fused in float32 or for
            a single sample).
    """

    resolution: int
    in_channels: int
    out_channels: int
    is_last: bool = False
    architecture: str = "skip"
    use_fp16: bool = False
    conv_clamp: float | None = None
    kernel_size: int = 3
    use_noise: bool = True
    activation: str = "lrelu"
    resample_filter_shape: tuple[int, ...] = (4, 4)
    fused_modconv: bool | None = None


def _fuse_modconv(block: torch.nn.Module, dtype: torch.dtype, ws: torch.Tensor) -> bool:
    """Whether a block runs its modulated convolutions as one grouped convolution (per-sample weights).

    Per-sample weights only pay off when their gradients are wanted (training). When autograd is on but
    the weights are frozen (projection: gradients reach only ws and noise), the grouped path would still
    compute ``[N, O, I, k, k]`` weight gradients; scaling the activations instead (one shared weight)
    computes only what is needed. Otherwise NVIDIA's rule: fused in float32 or for a single sample.
    """
    if torch.is_grad_enabled() and not any(p.requires_grad for p in block.parameters()):
        return False
    return dtype != torch.float16 or ws.shape[0] == 1


def default_blocks(
    *,
    img_resolution: int,
    channel_base: int = 32768,
    channel_max: int = 512,
    num_fp16_res: int = 0,
    conv_clamp: float | None = None,
    architecture: str = "skip",
) -> list[BlockConfig]:
    """The block list NVIDIA's ``SynthesisNetwork`` builds from its constructor arguments.

    Channels at resolution ``res`` are ``min(channel_base // res, channel_max)``; the ``num_fp16_res``
    highest resolutions (but never 4x4) are marked ``use_fp16``.

    Raises:
        ShapeError: if ``img_resolution`` is not a power of two >= 4.
    """
    log2 = int(math.log2(img_resolution)) if img_resolution > 0 else 0
    if img_resolution < 4 or 2**log2 != img_resolution:
        raise ShapeError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
    resolutions = [2**i for i in range(2, log2 + 1)]
    channels = {res: min(channel_base // res, channel_max) for res in resolutions}
    fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8)
    return [
        BlockConfig(
            resolution=res,
            in_channels=channels[res // 2] if res > 4 else 0,
            out_channels=channels[res],
            is_last=res == img_resolution,
            architecture=architecture,
            use_fp16=res >= fp16_resolution,
            conv_clamp=conv_clamp,
        )
        for res in resolutions
    ]


class SynthesisBlock(torch.nn.Module):
    """One resolution of the synthesis network: ``(x, img, ws) -> (x, img)``."""

    def __init__(
        self, config: BlockConfig, *, w_dim: int, img_channels: int, generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        generator = init_generator(generator)
        if config.architecture not in ARCHITECTURES:
            raise InputError(f"architecture must be one of {ARCHITECTURES}, got {config.architecture!r}")
        self.config = config
        self.in_channels, self.resolution = config.in_channels, config.resolution
        self.img_channels, self.w_dim = img_channels, w_dim
        self.fp16 = False
        layer_kwargs = dict(w_dim=w_dim, resolution=config.resolution, kernel_size=config.kernel_size,
                            use_noise=config.use_noise, activation=config.activation,
                            conv_clamp=config.conv_clamp, resample_filter_shape=config.resample_filter_shape,
                            generator=generator)
        if config.in_channels == 0:
            shape = (config.out_channels, config.resolution, config.resolution)
            self.const = torch.nn.Parameter(torch.randn(shape, generator=generator))
        self.register_buffer("resample_filter", filter_buffer(config.resample_filter_shape))
        self.num_conv = 1 if config.in_channels == 0 else 2
        self.has_torgb = config.is_last or config.architecture == "skip"
        if config.in_channels != 0:
            self.conv0 = SynthesisLayer(config.in_channels, config.out_channels, up=2, **layer_kwargs)
        self.conv1 = SynthesisLayer(config.out_channels, config.out_channels, **layer_kwargs)
        if self.has_torgb:
            self.torgb = ToRGBLayer(config.out_channels, img_channels, w_dim=w_dim, conv_clamp=config.conv_clamp,
                                    generator=generator)
        if config.in_channels != 0 and config.architecture == "resnet":
            self.skip = SkipConv(config.in_channels, config.out_channels,
                                 resample_filter_shape=config.resample_filter_shape, generator=generator)

    def conv_layers(self) -> dict[str, SynthesisLayer]:
        """The noise-carrying layers of the block, by name (``'conv0'``, ``'conv1'``)."""
        return {name: getattr(self, name) for name in ("conv0", "conv1") if hasattr(self, name)}

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, in_channels={self.in_channels}, architecture={self.config.architecture}, use_fp16={self.config.use_fp16}, fp16={self.fp16}"

    def forward(
        self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor, *, noise_mode: str,
        noise: dict[str, torch.Tensor], force_fp32: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``ws [N, num_conv + has_torgb, w_dim]``; ``x`` ``[N, in_channels, res/2, res/2]`` (None for the
        first block); ``img`` ``[N, img_channels, res/2, res/2]`` or None. Returns the new ``(x, img)``."""
        compute = float_dtype(self)
        dtype = torch.float16 if self.config.use_fp16 and self.fp16 and not force_fp32 else compute
        fused = self.config.fused_modconv
        if fused is None:
            fused = _fuse_modconv(self, dtype, ws)
        w_iter = iter(ws.unbind(dim=1))
        kw = dict(noise_mode=noise_mode, fused_modconv=fused)
        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = self.conv1(x, next(w_iter), noise=noise.get("conv1"), **kw)
        elif self.config.architecture == "resnet":
            x = x.to(dtype)
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x, next(w_iter), noise=noise.get("conv0"), **kw)
            x = self.conv1(x, next(w_iter), noise=noise.get("conv1"), gain=math.sqrt(0.5), **kw)
            x = y + x
        else:
            x = x.to(dtype)
            x = self.conv0(x, next(w_iter), noise=noise.get("conv0"), **kw)
            x = self.conv1(x, next(w_iter), noise=noise.get("conv1"), **kw)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.has_torgb:
            y = self.torgb(x, next(w_iter), fused_modconv=fused).to(compute)
            img = y if img is None else img + y
        return x, img


class SynthesisNetwork(torch.nn.Module):
    """W+ -> image: the blocks ``b4``, ``b8``, ... in order of resolution."""

    def __init__(
        self, *, w_dim: int, img_channels: int, blocks: Sequence[BlockConfig], generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        generator = init_generator(generator)
        if not blocks:
            raise InputError("blocks: a StyleGAN2 synthesis network needs at least one block, got none")
        self.w_dim, self.img_channels = w_dim, img_channels
        self.block_names: list[str] = []
        self.num_ws = 0
        for config in blocks:
            block = SynthesisBlock(config, w_dim=w_dim, img_channels=img_channels, generator=generator)
            name = f"b{config.resolution}"
            self.add_module(name, block)
            self.block_names.append(name)
            self.num_ws += block.num_conv
        self.num_ws += int(getattr(self, self.block_names[-1]).has_torgb)

    def blocks(self) -> list[SynthesisBlock]:
        """The blocks in order of resolution."""
        return [getattr(self, name) for name in self.block_names]

    def forward(
        self, ws: torch.Tensor, *, noise_mode: str = "const", noise: dict[str, torch.Tensor] | None = None,
        force_fp32: bool = True,
    ) -> torch.Tensor:
        """``ws [N, num_ws, w_dim]`` -> images ``[N, img_channels, R, R]`` (float32, or the parameters' dtype)."""
        ws = ws.to(float_dtype(self))
        noise = noise or {}
        x = img = None
        w_idx = 0
        for name, block in zip(self.block_names, self.blocks()):
            block_ws = ws.narrow(1, w_idx, block.num_conv + int(block.has_torgb))  # [N, k, w_dim]
            w_idx += block.num_conv
            block_noise = {key.split(".", 1)[1]: v for key, v in noise.items() if key.split(".", 1)[0] == name}
            x, img = block(x, img, block_ws, noise_mode=noise_mode, noise=block_noise, force_fp32=force_fp32)
        return img


class StyleGAN2Generator(Generator):
    """NVIDIA's StyleGAN2 generator (stylegan2-ada-pytorch, and ``networks_stylegan2`` of the stylegan3 repo).

    Args:
        z_dim, c_dim, w_dim, img_resolution, img_channels: as in NVIDIA's code.
        mapping: mapping network options.
        blocks: the synthesis blocks in order of resolution (see :func:`default_blocks`, which builds them
            from NVIDIA's ``channel_base`` / ``channel_max`` / ``num_fp16_res`` / ``conv_clamp``).
        seed: seed of the initial random weights (NVIDIA's initialisation scheme; the global RNG is not
            used). Pretrained weights replace them: ``latentkit.load_generator``.

    Attributes:
        fp16: opt-in (default False). On CUDA, run the blocks the checkpoint marks ``use_fp16`` in float16,
            as the original does; float32 is the reference.

    Example:
        >>> G = StyleGAN2Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
        ...                        blocks=default_blocks(img_resolution=16, channel_base=64, channel_max=8))
        >>> G(torch.randn(2, 8)).shape
        torch.Size([2, 3, 16, 16])
    """

    architecture = "stylegan2"

    def __init__(
        self, *, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int = 3,
        mapping: MappingConfig = MappingConfig(), blocks: Sequence[BlockConfig], seed: int = 0,
    ) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.mapping_config = mapping
        self.mapping_net = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, config=mapping, generator=generator)
        self.synthesis_net = SynthesisNetwork(w_dim=w_dim, img_channels=img_channels, blocks=blocks,
                                              generator=generator)
        self.num_ws = self.synthesis_net.num_ws
        if blocks[-1].resolution != img_resolution or not blocks[-1].is_last:
            raise InputError(
                f"blocks: the last block must be the is_last block at img_resolution={img_resolution}, "
                f"got resolution {blocks[-1].resolution} (is_last={blocks[-1].is_last})"
            )
        self.register_buffer("w_avg", torch.zeros(w_dim))

    @property
    def fp16(self) -> bool:
        """Whether the blocks marked ``use_fp16`` run in float16 on CUDA (opt-in)."""
        return any(block.fp16 for block in self.synthesis_net.blocks())

    @fp16.setter
    def fp16(self, enabled: bool) -> None:
        for block in self.synthesis_net.blocks():
            block.fp16 = bool(enabled)

    def map_latent(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.mapping_net(z, c)

    def last_preactivation(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """Input of the mapping network's last activation, ``[N, w_dim]`` (see :attr:`mapping_activation`)."""
        n = check_shape(z, ["N", self.z_dim], "z")["N"]
        return self.mapping_net.last_preactivation(z.to(self.w_avg.device, self.dtype), self.prepare_labels(c, n))

    def const_noise(self) -> dict[str, torch.Tensor]:
        """The stored noise inputs, ``'b{res}.conv{0,1}'`` -> ``[1, 1, res, res]`` (views of the buffers)."""
        out = {}
        for name, block in zip(self.synthesis_net.block_names, self.synthesis_net.blocks()):
            for conv_name, layer in block.conv_layers().items():
                if layer.use_noise:
                    out[f"{name}.{conv_name}"] = layer.noise_const[None, None]
        return out

    def synthesis(
        self, ws: torch.Tensor, noise_mode: str = "const", noise: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Render W+ latents.

        Args:
            ws: ``[N, num_ws, w_dim]``.
            noise_mode: ``'const'`` (stored buffers), ``'random'`` (fresh Gaussian noise) or ``'none'``.
            noise: per-layer noise overriding ``noise_mode`` for the layers it names: keys of
                :meth:`const_noise`, values ``[N, 1, res, res]`` or ``[1, 1, res, res]``.

        Returns:
            Images ``[N, img_channels, img_resolution, img_resolution]``, float32.

        Raises:
            ShapeError: if ``ws`` or a noise tensor has the wrong shape.
            InputError: if ``noise_mode`` is unknown or ``noise`` has unknown keys.
        """
        n = self.check_ws(ws)
        self.check_noise_mode(noise_mode)
        if noise:
            self.check_noise(noise, n)
        ws = ws.to(self.w_avg.device)
        force_fp32 = ws.device.type != "cuda"
        return self.synthesis_net(ws, noise_mode=noise_mode, noise=noise, force_fp32=force_fp32)

    def info(self) -> dict[str, Any]:
        out = super().info()
        out["synthesis_blocks"] = list(self.synthesis_net.block_names)
        return out

