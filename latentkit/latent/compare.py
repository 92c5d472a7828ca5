"""Compression next to truncation on the same latents: what ``latentkit compress`` shows.

:func:`compare_compression` compresses and truncates a batch of latents and counts what compression
touched; :func:`seeds_beyond_tau` finds seeds whose latents have components beyond ``tau`` (for the other
seeds compression changes nothing, so a demo on them would show identical images).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from latentkit.errors import InputError
from latentkit.latent.compress import DEFAULT_PSI, DEFAULT_TAU, compress, truncate
from latentkit.latent.sampling import z_from_seed

if TYPE_CHECKING:
    from latentkit.latent.prior import GaussianPrior
    from latentkit.nets.generator import Generator

__all__ = ["CompressionComparison", "compare_compression", "seeds_beyond_tau"]


@dataclass(frozen=True)
class CompressionComparison:
    """Latents ``[N, num_ws, w_dim]`` as given, log-compressed at ``tau`` and truncated at ``psi``.

    Attributes:
        max_coefficient: ``[N]`` the largest ``|u_k|`` over each latent's W vectors (standard deviations).
        vectors_compressed / vectors: W vectors with a component beyond ``tau`` / all of them.
        components_compressed / components: PCA coefficients beyond ``tau`` / all of them.
    """

    ws: torch.Tensor
    compressed: torch.Tensor
    truncated: torch.Tensor
    tau: float
    psi: float
    max_coefficient: torch.Tensor
    vectors_compressed: int
    vectors: int
    components_compressed: int
    components: int

    def summary(self) -> str:
        """One line: how much compression touched."""
        return (f"tau={self.tau:g}: {self.vectors_compressed} of {self.vectors} W vectors had components beyond "
                f"tau ({self.components_compressed} of {self.components} coefficients compressed); "
                f"truncation psi={self.psi:g} moved all of them")


def compare_compression(
    G: Generator, ws: torch.Tensor, prior: GaussianPrior, *, tau: float = DEFAULT_TAU, psi: float = DEFAULT_PSI,
    c: torch.Tensor | None = None,
) -> CompressionComparison:
    """Compress ``ws [N, num_ws, w_dim]`` at ``tau`` and truncate it towards ``G``'s (class) average at ``psi``.

    Raises:
        ShapeError: ``ws`` that does not fit ``G`` or the prior.
        InputError: bad ``tau``/``psi``, or non-finite latents.
    """
    n = G.check_ws(ws)
    if not bool(torch.isfinite(ws).all()):
        raise InputError("ws holds NaN or inf: cannot compress non-finite latents")
    labels = G.prepare_labels(c, n)
    with torch.no_grad():
        u = prior.coefficients(ws)  # [N, num_ws, w_dim]
        beyond = u.abs() > tau
        compressed = compress(ws, prior, tau=tau)
        truncated = truncate(ws, G.class_average(labels), psi)
    return CompressionComparison(
        ws=ws, compressed=compressed, truncated=truncated, tau=float(tau), psi=float(psi),
        max_coefficient=u.abs().flatten(1).amax(1).float().cpu(),
        vectors_compressed=int(beyond.any(-1).sum()), vectors=int(beyond.shape[0] * beyond.shape[1]),
        components_compressed=int(beyond.sum()), components=int(beyond.numel()),
    )


def seeds_beyond_tau(
    G: Generator, prior: GaussianPrior, count: int, *, tau: float = DEFAULT_TAU, search: int = 1024,
    c: torch.Tensor | None = None,
) -> list[int]:
    """The first ``count`` seeds from 0 whose mapped latents (z as NVIDIA's ``gen_images.py``) have a
    component beyond ``tau``; fewer when ``search`` seeds hold fewer.

    Raises:
        InputError: ``count`` or ``search`` below 1.
    """
    if count < 1 or search < 1:
        raise InputError(f"count and search must be >= 1, got {count} and {search}")
    found: list[int] = []
    for start in range(0, search, 64):
        seeds = list(range(start, min(start + 64, search)))
        z = torch.cat([z_from_seed(s, G.z_dim) for s in seeds]).to(G.w_avg.device)
        labels = None if c is None else c[:1].expand(len(seeds), -1)
        with torch.no_grad():
            w = G.mapping(z, labels)[:, :1]  # the mapping broadcasts one w: its first row says it all
            hit = (prior.coefficients(w).abs() > tau).flatten(1).any(1)
        found += [s for s, h in zip(seeds, hit.tolist()) if h]
        if len(found) >= count:
            return found[:count]
    return found
