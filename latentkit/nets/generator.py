"""The Generator interface every architecture implements.

It mirrors NVIDIA's generators (``z_dim``, ``c_dim``, ``w_dim``, ``num_ws``, ``img_resolution``,
``img_channels``, ``w_avg``, ``mapping``, ``synthesis``, ``__call__``) and adds what the rest of the toolkit
needs: the architecture name, the last mapping activation (inverted by the Gaussian prior) and the
stored noise inputs (optimised by the projector).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from latentkit.checks import check_shape
from latentkit.errors import InputError, ShapeError

__all__ = ["Generator", "MappingActivation", "NOISE_MODES", "float_dtype"]

NOISE_MODES = ("const", "random", "none")


def float_dtype(module: torch.nn.Module) -> torch.dtype:
    """The dtype a module computes in: that of its first floating-point parameter or buffer (float32 if none).

    The networks compute in float32 as loaded; ``G.double()`` makes them compute in float64 (used where
    float32 round-off would be amplified, e.g. finite differences in PPL).
    """
    for tensor in module.parameters():
        if tensor.is_floating_point():
            return tensor.dtype
    for tensor in module.buffers():
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


@dataclass(frozen=True)
class MappingActivation:
    """The mapping network's last activation: ``w = gain * leaky_relu(pre, slope)``.

    Attributes:
        slope: negative slope of the leaky ReLU (0.2 in every StyleGAN code base).
        gain: multiplier applied after the activation (sqrt(2) in NVIDIA's and rosinality's code).
    """

    slope: float = 0.2
    gain: float = math.sqrt(2)


class Generator(torch.nn.Module):
    """Base class of latentkit generators.

    Subclasses set the attributes below in ``__init__``, register the buffer ``w_avg`` and implement
    :meth:`map_latent`, :meth:`synthesis` and :meth:`const_noise`.

    Attributes:
        architecture: short name, e.g. ``'stylegan2'``, ``'stylegan3-t'``, ``'stylegan3-r'``,
            ``'stylegan-xl'``, ``'rosinality-stylegan2'``, ``'mobilestylegan'``.
        z_dim, c_dim, w_dim, num_ws, img_resolution, img_channels: as in NVIDIA's code.
        mapping_activation: the last activation of the mapping network.
        w_avg: buffer ``[w_dim]`` (or ``[c_dim, w_dim]`` for generators that keep one average per class).
        source: where the weights came from (file path or registry name), set by the loader.
        sha256: sha256 of the checkpoint file, set by the loader ('' if unknown).
    """

    architecture: str = "generator"
    z_dim: int
    c_dim: int
    w_dim: int
    num_ws: int
    img_resolution: int
    img_channels: int
    mapping_activation: MappingActivation = MappingActivation()
    w_avg: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.source = ""
        self.sha256 = ""

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the generator computes in (float32 as loaded; ``G.double()`` gives float64)."""
        return self.w_avg.dtype

    # ----------------------------------------------------------------------------------------------
    # What subclasses implement.

    def map_latent(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Run the mapping network without broadcasting or truncation.

        Args:
            z: latents ``[N, z_dim]``, float32.
            c: one-hot (or soft) class labels ``[N, c_dim]``; ``[N, 0]`` for unconditional nets.

        Returns:
            w ``[N, w_dim]``: the raw output of the last mapping activation.
        """
        raise NotImplementedError

    def synthesis(
        self,
        ws: torch.Tensor,
        noise_mode: str = "const",
        noise: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Render images from W+ latents.

        Args:
            ws: ``[N, num_ws, w_dim]``.
            noise_mode: ``'const'`` (the stored noise buffers), ``'random'`` or ``'none'``.
            noise: optional per-image noise overriding the stored buffers: the keys of
                :meth:`const_noise`, each ``[N, 1, H, W]`` (or ``[1, 1, H, W]``, shared).

        Returns:
            Images ``[N, img_channels, img_resolution, img_resolution]``, values around [-1, 1].
        """
        raise NotImplementedError

    def const_noise(self) -> dict[str, torch.Tensor]:
        """The stored noise inputs, name -> ``[1, 1, H, W]`` (empty for nets without noise, e.g. StyleGAN3)."""
        return {}

    # ----------------------------------------------------------------------------------------------
    # Shared behaviour.

    def class_average(self, c: torch.Tensor) -> torch.Tensor:
        """The truncation centre for each sample, ``[N, w_dim]``.

        Uses the row of the sample's class (argmax of ``c``) when ``w_avg`` is ``[c_dim, w_dim]``.
        """
        if self.w_avg.ndim == 2:
            return self.w_avg[c.argmax(dim=1)]
        return self.w_avg.unsqueeze(0).expand(c.shape[0], -1)

    @staticmethod
    def check_noise_mode(noise_mode: str) -> None:
        """Raise :class:`~latentkit.errors.InputError` unless ``noise_mode`` is one of :data:`NOISE_MODES`."""
        if noise_mode not in NOISE_MODES:
            from latentkit.errors import InputError

            raise InputError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")

    def mean_mapped_w(self, num_samples: int, *, seed: int = 0, batch_size: int = 4096) -> torch.Tensor:
        """The mean of ``map_latent(z)`` over ``num_samples`` standard normal z (unconditional nets), ``[w_dim]``.

        z is drawn on the CPU from ``torch.Generator().manual_seed(seed)`` in chunks of ``batch_size`` (the
        same estimate on every device) and the sum is accumulated in float64. Used by networks whose files
        store no ``w_avg``.

        Raises:
            InputError: if ``num_samples < 1``.
        """
        from latentkit.errors import InputError

        if num_samples < 1:
            raise InputError(f"num_samples must be >= 1, got {num_samples}")
        gen = torch.Generator().manual_seed(seed)
        total = torch.zeros(self.w_dim, dtype=torch.float64, device=self.w_avg.device)
        for start in range(0, num_samples, batch_size):
            z = torch.randn(min(batch_size, num_samples - start), self.z_dim, generator=gen)
            total += self.map_latent(z.to(self.w_avg.device), z[:, :0]).double().sum(dim=0)
        return total / num_samples

    def prepare_labels(self, c: torch.Tensor | None, n: int) -> torch.Tensor:
        """Validate class labels; returns ``[N, c_dim]`` float32 on the generator's device.

        Raises:
            ShapeError: if a conditional generator gets no labels or the shape is wrong.
        """
        device = self.w_avg.device
        if c is None:
            if self.c_dim > 0:
                raise ShapeError(
                    f"this generator is class-conditional (c_dim={self.c_dim}): pass one-hot labels c "
                    f"of shape [{n}, {self.c_dim}] (or --class K on the command line)"
                )
            return torch.zeros(n, 0, device=device)
        check_shape(c, [n, self.c_dim], "c")
        return c.to(device=device, dtype=self.dtype)

    def mapping(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
    ) -> torch.Tensor:
        """Map z to W+ latents, NVIDIA style.

        Args:
            z: ``[N, z_dim]``.
            c: labels ``[N, c_dim]`` (None for unconditional nets).
            truncation_psi: ``w_avg + psi * (w - w_avg)``; 1 disables truncation.
            truncation_cutoff: truncate only the first ``cutoff`` layers (None: all).

        Returns:
            ws ``[N, num_ws, w_dim]`` on the generator's device.
        """
        n = check_shape(z, ["N", self.z_dim], "z")["N"]
        c = self.prepare_labels(c, n)
        w = self.map_latent(z.to(device=self.w_avg.device, dtype=self.dtype), c)
        ws = w.unsqueeze(1).repeat(1, self.num_ws, 1)  # [N, num_ws, w_dim]
        if truncation_psi != 1:
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            avg = self.class_average(c).unsqueeze(1)  # [N, 1, w_dim]
            ws[:, :cutoff] = avg.lerp(ws[:, :cutoff], truncation_psi)
        return ws

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "const",
    ) -> torch.Tensor:
        """``synthesis(mapping(z, c, ...))``: images ``[N, C, H, W]``."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode)

    def check_noise(self, noise: Mapping[str, torch.Tensor] | None, n: int) -> dict[str, torch.Tensor]:
        """Validate a ``noise=`` override of ``synthesis`` for ``n`` images against :meth:`const_noise`: known
        names only, each ``[n or 1, 1, H, W]`` with the stored buffer's ``H, W``. Returns it as a dict.

        Raises:
            InputError: a name this generator has no noise input of.
            ShapeError: a value that is not such a tensor.
        """
        given = dict(noise or {})
        if not given:
            return given
        stored = self.const_noise()
        unknown = sorted(set(given) - set(stored))
        if unknown:
            raise InputError(f"noise has unknown keys {unknown}; this generator's noise inputs are {sorted(stored)}")
        for key, value in given.items():
            h, w = stored[key].shape[-2:]
            if not isinstance(value, torch.Tensor) or value.ndim != 4 or value.shape[0] not in (1, n) \
                    or tuple(value.shape[1:]) != (1, h, w):
                got = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise ShapeError(f"noise[{key!r}] must have shape [{n} or 1, 1, {h}, {w}], got {got}")
        return given

    def check_ws(self, ws: torch.Tensor) -> int:
        """Validate W+ latents ``[N, num_ws, w_dim]`` and return N."""
        return check_shape(ws, ["N", self.num_ws, self.w_dim], "ws")["N"]

    def info(self) -> dict[str, Any]:
        """Summary for ``latentkit info``: architecture, dims, resolution, parameter count."""
        return {
            "architecture": self.architecture,
            "source": self.source,
            "sha256": self.sha256,
            "z_dim": self.z_dim,
            "c_dim": self.c_dim,
            "w_dim": self.w_dim,
            "num_ws": self.num_ws,
            "img_resolution": self.img_resolution,
            "img_channels": self.img_channels,
            "conditional": self.c_dim > 0,
            "num_parameters": sum(p.numel() for p in self.parameters()),
            "mapping_activation": {
                "slope": self.mapping_activation.slope,
                "gain": self.mapping_activation.gain,
            },
        }
