"""An image encoder for any generator: one forward pass from an image to W+ latents.

The encoder is a small residual CNN built from scratch (no downloaded weights) that predicts, per layer,
the whitened PCA coefficients ``u`` of the generator's Gaussianized-W prior; a fixed head maps them to W
with the prior's own transform (``w = prior.from_coefficients(u)``, i.e. ``inverse_transform(mean + u @
colour)``), so an untrained encoder (its last layer starts at zero) predicts the prior's mode, the
projector's default start. It is trained on the generator's own samples
(:mod:`latentkit.projection.encoder_train`) and stored as safetensors (:mod:`latentkit.projection.encoder_file`).

Anything with ``num_ws``, ``w_dim`` and ``__call__(images [N, 3, H, W] in [-1, 1]) -> ws [N, num_ws, w_dim]``
is an :class:`ImageEncoder` (a ``typing.Protocol``); :func:`latentkit.projection.project.project` takes one
as ``encoder=`` to start from its prediction (``ProjectionSettings(start='encoder')``).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from latentkit.errors import InputError, ShapeError
from latentkit.nets.generator import Generator

__all__ = ["EncoderConfig", "ImageEncoder", "ResNetEncoder", "default_config", "encoder_fingerprint",
           "network_fingerprint", "prior_fingerprint", "prior_head"]


@runtime_checkable
class ImageEncoder(Protocol):
    """What the projector needs of an encoder."""

    num_ws: int
    w_dim: int

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """``images [N, C, H, W]`` in [-1, 1] (any size) -> ``ws [N, num_ws, w_dim]``."""
        ...


@dataclass(frozen=True)
class EncoderConfig:
    """The architecture of a :class:`ResNetEncoder`, as plain data (stored in the file's header).

    Attributes:
        num_ws: W+ layers of the generator.
        w_dim: width of w.
        img_channels: channels of the generator's images (1 or 3).
        input_resolution: images are area-resized to this square side first (a power of two >= 16).
        channels: width of each residual stage; each stage halves the resolution.
        hidden: width of the fully connected layer before the per-layer coefficients.
    """

    num_ws: int
    w_dim: int
    img_channels: int = 3
    input_resolution: int = 64
    channels: tuple[int, ...] = (32, 64, 128, 128)
    hidden: int = 512

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        ints = {"num_ws": self.num_ws, "w_dim": self.w_dim, "img_channels": self.img_channels,
                "input_resolution": self.input_resolution, "hidden": self.hidden}
        for name, value in ints.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"encoder {name} must be an integer >= 1, got {value!r}")
        r = self.input_resolution
        if r < 16 or r & (r - 1):
            raise InputError(f"encoder input_resolution must be a power of two >= 16, got {r}")
        if not self.channels or min(self.channels) < 1 or r >> len(self.channels) < 2:
            raise InputError(f"encoder channels {self.channels} must be >= 1 and leave at least 2x2 pixels of {r}")

    @property
    def feature_resolution(self) -> int:
        """Side of the last stage's feature map."""
        return self.input_resolution >> len(self.channels)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["channels"] = list(self.channels)
        return out

    @classmethod
    def from_dict(cls, data: Any) -> EncoderConfig:
        """Build from :meth:`to_dict`'s output (a file header): unknown or missing keys are an InputError."""
        names = {"num_ws", "w_dim", "img_channels", "input_resolution", "channels", "hidden"}
        if not isinstance(data, dict) or set(data) != names or not isinstance(data["channels"], list):
            raise InputError(f"encoder config must have exactly the keys {sorted(names)}, got {data!r:.200}")
        return cls(**data)


class _Block(torch.nn.Module):
    """Residual block: two 3x3 convolutions with GroupNorm and leaky ReLU; the first one strided by 2."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False)
        self.norm1 = torch.nn.GroupNorm(min(8, cout), cout)
        self.conv2 = torch.nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.norm2 = torch.nn.GroupNorm(min(8, cout), cout)
        self.skip = torch.nn.Conv2d(cin, cout, 1, stride=2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.leaky_relu(self.norm1(self.conv1(x)), 0.2)
        y = self.norm2(self.conv2(y))
        return F.leaky_relu(y + self.skip(x), 0.2)


class ResNetEncoder(torch.nn.Module):
    """Image -> whitened prior coefficients per layer -> W+ (see the module docstring).

    Args:
        config: the :class:`EncoderConfig`.
        prior_mean: ``[w_dim]`` mean of the prior's v (float); with ``prior_colour`` and the activation
            (``slope``, ``gain``) it maps coefficients u to w: ``w = act(mean + u @ colour)``. Build these
            from a fitted prior with :func:`prior_head`.
        prior_colour: ``[w_dim, w_dim]``.
        slope: negative slope of the generator's last mapping activation.
        gain: its gain.
    """

    prior_mean: torch.Tensor  # buffers: [w_dim] and [w_dim, w_dim]
    prior_colour: torch.Tensor

    def __init__(self, config: EncoderConfig, prior_mean: torch.Tensor, prior_colour: torch.Tensor,
                 slope: float, gain: float) -> None:
        super().__init__()
        self.config = config
        self.num_ws, self.w_dim = config.num_ws, config.w_dim
        self.slope, self.gain = float(slope), float(gain)
        widths = (config.img_channels,) + config.channels
        self.blocks = torch.nn.Sequential(*[_Block(a, b) for a, b in zip(widths[:-1], widths[1:])])
        flat = config.channels[-1] * config.feature_resolution**2
        self.fc = torch.nn.Linear(flat, config.hidden)
        self.out = torch.nn.Linear(config.hidden, config.num_ws * config.w_dim)
        torch.nn.init.zeros_(self.out.weight)  # untrained: u = 0, the prior's mode
        torch.nn.init.zeros_(self.out.bias)
        self.register_buffer("prior_mean", prior_mean.detach().to(torch.float32).clone())
        self.register_buffer("prior_colour", prior_colour.detach().to(torch.float32).clone())

    def extra_repr(self) -> str:
        c = self.config
        return (f"num_ws={c.num_ws}, w_dim={c.w_dim}, input_resolution={c.input_resolution}, "
                f"channels={list(c.channels)}, hidden={c.hidden}")

    def resize(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, C, H, W]`` -> ``[N, C, r, r]`` (area resize, or antialiased bicubic when upsampling)."""
        r = self.config.input_resolution
        if images.ndim != 4 or images.shape[1] != self.config.img_channels:
            raise ShapeError(f"encoder images must be [N, {self.config.img_channels}, H, W], got {list(images.shape)}")
        if images.shape[2:] == (r, r):
            return images
        if min(images.shape[2:]) >= r:
            return F.adaptive_avg_pool2d(images, r)
        return F.interpolate(images, size=(r, r), mode="bicubic", antialias=True, align_corners=False)

    def coefficients(self, images: torch.Tensor) -> torch.Tensor:
        """``images [N, C, H, W]`` in [-1, 1] -> whitened coefficients ``u [N, num_ws, w_dim]``."""
        x = self.blocks(self.resize(images.to(self.prior_mean.dtype)))
        h = F.leaky_relu(self.fc(x.flatten(1)), 0.2)
        return self.out(h).view(-1, self.num_ws, self.w_dim)  # [N, num_ws, w_dim]

    def to_w(self, u: torch.Tensor) -> torch.Tensor:
        """Coefficients ``u [..., w_dim]`` -> ``w [..., w_dim]`` through the prior (differentiable)."""
        from latentkit.latent.gaussianize import v_to_w

        return v_to_w(self.prior_mean + u @ self.prior_colour, self.slope, self.gain)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images [N, C, H, W]`` in [-1, 1] -> ``ws [N, num_ws, w_dim]``."""
        return self.to_w(self.coefficients(images))


def prior_head(prior: Any) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """(mean ``[w_dim]``, colour ``[w_dim, w_dim]``, slope, gain) of a fitted GaussianPrior, read through its
    public transforms in float64: ``from_coefficients(u) == inverse_transform(mean + u @ colour)``."""
    for name in ("from_coefficients", "transform", "slope_", "gain_", "w_dim"):
        if not hasattr(prior, name):
            raise InputError(f"the encoder needs a fitted GaussianPrior, got {type(prior).__name__} (no {name})")
    w_dim = int(prior.w_dim)
    basis = torch.cat([torch.zeros(1, w_dim, dtype=torch.float64), torch.eye(w_dim, dtype=torch.float64)])
    with torch.no_grad():
        v = prior.transform(prior.from_coefficients(basis))  # [1 + w_dim, w_dim]
    return v[0], v[1:] - v[0], float(prior.slope_), float(prior.gain_)


def network_fingerprint(G: Generator) -> dict[str, Any]:
    """What identifies the generator an encoder belongs to (plain data for the file header)."""
    return {"sha256": G.sha256 or "", "architecture": G.architecture, "num_ws": int(G.num_ws),
            "w_dim": int(G.w_dim), "img_resolution": int(G.img_resolution), "img_channels": int(G.img_channels)}


def prior_fingerprint(mean: torch.Tensor, colour: torch.Tensor) -> str:
    """sha256 (first 16 hex digits) of a prior head's float32 tensors."""
    digest = hashlib.sha256()
    for t in (mean, colour):
        digest.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def encoder_fingerprint(encoder: ImageEncoder) -> str:
    """sha256 (16 hex digits) of an encoder's weights (a module's state dict), else of its type's name."""
    digest = hashlib.sha256(type(encoder).__qualname__.encode())
    state = encoder.state_dict() if isinstance(encoder, torch.nn.Module) else {}
    for name, t in sorted(state.items()):
        digest.update(name.encode())
        digest.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def default_config(G: Generator, *, input_resolution: int | None = None) -> EncoderConfig:
    """The encoder for ``G``: 64 px input (``min(64, img_resolution)``, at least 16) unless given."""
    r = input_resolution or max(16, min(64, 1 << int(math.log2(G.img_resolution))))
    stages = 4 if r >= 64 else 3
    return EncoderConfig(num_ws=int(G.num_ws), w_dim=int(G.w_dim), img_channels=int(G.img_channels),
                         input_resolution=int(r), channels=(32, 64, 128, 128)[:stages])
