"""Any torch module ``G(z) -> image`` as a latentkit :class:`~latentkit.nets.generator.Generator`.

A wrapped module has a Z space and nothing else: no mapping network, no W space (``num_ws = 0``,
``w_dim = 0``), no noise inputs, no classes. What works on it: sampling (``G(z)``), slerp interpolation in
Z, PPL in Z, FID/KID/PRDC (``evaluate`` renders ``G(z)``) and projection in Z
(:func:`latentkit.projection.zspace.project_z`). What needs W (``mapping``, ``synthesis``, the Gaussian
prior, ``compress``, ``project``) raises a one-line :class:`~latentkit.errors.InputError` saying so.
"""

from __future__ import annotations

from typing import Any

import torch

from latentkit.checks import check_shape
from latentkit.errors import InputError, ShapeError
from latentkit.nets.generator import Generator

__all__ = ["WrappedGenerator", "wrap", "NO_W_SPACE"]

NO_W_SPACE = (
    "this generator wraps a plain G(z) module and has no W space (num_ws = 0): use Z-space tools "
    "(interpolate space='z', ppl space='z', evaluate, latentkit.projection.zspace.project_z)"
)
"""The message of every W-space operation on a wrapped module."""


class WrappedGenerator(Generator):
    """A torch module ``G(z) -> image`` behind the Generator interface (see :func:`wrap`).

    Attributes:
        module: the wrapped module (a child: ``.to()``, ``.eval()``, ``.double()`` reach it).
        output_range: ``(low, high)`` of the module's images; :meth:`forward` maps it to [-1, 1].
    """

    architecture = "wrapped"

    def __init__(
        self, module: torch.nn.Module, *, z_dim: int, img_resolution: int, img_channels: int = 3,
        output_range: tuple[float, float] = (-1.0, 1.0),
    ) -> None:
        super().__init__()
        if not isinstance(module, torch.nn.Module):
            raise InputError(f"module must be a torch.nn.Module mapping z to images, got {type(module).__name__}")
        for name, value in (("z_dim", z_dim), ("img_resolution", img_resolution), ("img_channels", img_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        try:
            low, high = (float(v) for v in output_range)
        except (TypeError, ValueError) as err:
            raise InputError(f"output_range must be (low, high), got {output_range!r}") from err
        if not high > low:
            raise InputError(f"output_range must be (low, high) with high > low, got {output_range!r}")
        self.module = module
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = int(z_dim), 0, 0, 0
        self.img_resolution, self.img_channels = int(img_resolution), int(img_channels)
        self.output_range = (low, high)
        device = next((p.device for p in module.parameters()), torch.device("cpu"))
        self.register_buffer("w_avg", torch.zeros(0, device=device))  # no W space; carries device and dtype

    def extra_repr(self) -> str:
        return (f"z_dim={self.z_dim}, img_resolution={self.img_resolution}, img_channels={self.img_channels}, "
                f"output_range={self.output_range}")

    def map_latent(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        raise InputError(NO_W_SPACE)

    def mapping(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None) -> torch.Tensor:
        """Not available: a wrapped module has no W space.

        Raises:
            InputError: always.
        """
        raise InputError(NO_W_SPACE)

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "const",
                  noise: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Not available: a wrapped module has no W space.

        Raises:
            InputError: always.
        """
        raise InputError(NO_W_SPACE)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, noise_mode: str = "const") -> torch.Tensor:
        """Render z: ``z [N, z_dim]`` -> images ``[N, img_channels, img_resolution, img_resolution]`` in [-1, 1]
        (the module's ``output_range`` mapped linearly), in the generator's dtype.

        ``c`` must be None (or ``[N, 0]``); ``noise_mode`` is accepted and ignored (no noise inputs).

        Raises:
            ShapeError: z of the wrong shape, or a module output that is not ``[N, C, R, R]`` as declared.
            InputError: ``truncation_psi != 1`` (truncation is a W-space operation) or class labels.
        """
        n = check_shape(z, ["N", self.z_dim], "z")["N"]
        if truncation_psi != 1:
            raise InputError(f"truncation_psi={truncation_psi}: truncation is a W-space operation; {NO_W_SPACE}")
        if c is not None and c.numel() > 0:
            raise InputError("c: a wrapped G(z) module takes no class labels (c_dim = 0)")
        img = self.module(z.to(device=self.w_avg.device, dtype=self.dtype))
        expected = (n, self.img_channels, self.img_resolution, self.img_resolution)
        if not isinstance(img, torch.Tensor) or tuple(img.shape) != expected:
            got = list(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
            raise ShapeError(
                f"the wrapped module returned {got} for z [{n}, {self.z_dim}], expected images {list(expected)} "
                "(check img_resolution / img_channels given to wrap)"
            )
        low, high = self.output_range
        if (low, high) != (-1.0, 1.0):
            img = (img - low) * (2.0 / (high - low)) - 1.0
        return img.to(self.dtype)

    def info(self) -> dict[str, Any]:
        out = super().info()
        out["output_range"] = list(self.output_range)
        out["module"] = type(self.module).__name__
        return out


def wrap(
    module: torch.nn.Module, *, z_dim: int, img_resolution: int, img_channels: int = 3,
    output_range: tuple[float, float] = (-1, 1),
) -> WrappedGenerator:
    """Wrap any torch module ``G(z) -> image`` as a latentkit Generator (Z space only).

    Args:
        module: maps ``z [N, z_dim]`` (float, standard normal) to images ``[N, img_channels, R, R]``.
        z_dim: latent size.
        img_resolution: ``R``, the side of the square images.
        img_channels: image channels (3: RGB, 1: grey).
        output_range: the range of the module's images, e.g. ``(0, 1)`` for a sigmoid output; mapped
            linearly to latentkit's [-1, 1].

    Returns:
        A :class:`WrappedGenerator` (``num_ws = 0``: no W space), in eval mode with gradients off, on the
        module's device.

    Raises:
        InputError: a non-module, non-positive sizes, or an empty ``output_range``.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(8, 3 * 16 * 16), torch.nn.Tanh(),
        ...                           torch.nn.Unflatten(1, (3, 16, 16)))
        >>> G = wrap(net, z_dim=8, img_resolution=16)
        >>> G(torch.randn(2, 8)).shape
        torch.Size([2, 3, 16, 16])
    """
    generator = WrappedGenerator(module, z_dim=z_dim, img_resolution=img_resolution, img_channels=img_channels,
                                 output_range=output_range)
    return generator.eval().requires_grad_(False)
