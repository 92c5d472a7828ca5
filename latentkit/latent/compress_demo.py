"""The compression demo of ``latentkit compress``: latents where compression acts, compressed at several tau,
beside truncation, rendered into one labelled grid.

Log-compression changes only the whitened PCA coefficients ``u`` beyond ``tau`` standard deviations, so a demo
on typical seeds shows identical columns. :func:`pick_extreme_seeds` therefore picks, among the first
``pool`` seeds, those whose latents have the largest ``max |u|``; :func:`compress_demo` compresses them at
every ``tau`` (1, 2, 3 by default), truncates them at ``psi`` and renders each column;
:meth:`CompressDemo.save` writes the latents, the images and ``grid.png``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from latentkit.errors import InputError
from latentkit.latent.compare import CompressionComparison, compare_compression
from latentkit.latent.compress import DEFAULT_PSI
from latentkit.latent.sampling import z_from_seed
from latentkit.latent.settings import DEFAULT_DEMO_TAUS, DEFAULT_POOL

if TYPE_CHECKING:
    from latentkit.latent.prior import GaussianPrior
    from latentkit.nets.generator import Generator

__all__ = ["DEFAULT_DEMO_TAUS", "DEFAULT_POOL", "CompressDemo", "compress_demo", "pick_extreme_seeds", "seed_latents"]



def seed_latents(G: Generator, seeds: Sequence[int], c: torch.Tensor | None = None) -> torch.Tensor:
    """W+ latents ``[N, num_ws, w_dim]`` of ``seeds`` (z as NVIDIA's ``gen_images.py`` draws it), untruncated.

    Args:
        c: ``[1, c_dim]`` the class of every seed (conditional generators), else None.
    """
    z = torch.cat([z_from_seed(s, G.z_dim) for s in seeds]).to(G.w_avg.device)  # [N, z_dim]
    with torch.no_grad():
        return G.mapping(z, None if c is None else c[:1].expand(len(seeds), -1))


def pick_extreme_seeds(
    G: Generator, prior: GaussianPrior, count: int, *, pool: int = DEFAULT_POOL, c: torch.Tensor | None = None,
    batch_size: int = 64,
) -> tuple[list[int], torch.Tensor]:
    """The ``count`` seeds among ``0 .. pool - 1`` whose latents have the largest whitened coefficient ``max |u|``.

    Returns:
        (the seeds, most extreme first; their ``max |u|`` ``[count]`` in standard deviations).

    Raises:
        InputError: ``count`` or ``pool`` below 1, or ``count > pool``.
    """
    if count < 1 or pool < 1 or count > pool:
        raise InputError(f"need 1 <= count <= pool, got count={count} and pool={pool}")
    peaks = []
    for start in range(0, pool, batch_size):
        seeds = list(range(start, min(start + batch_size, pool)))
        ws = seed_latents(G, seeds, c)
        with torch.no_grad():
            peaks.append(prior.coefficients(ws).abs().flatten(1).amax(1).float().cpu())  # [B]
    peak = torch.cat(peaks)  # [pool]
    top = peak.argsort(descending=True, stable=True)[:count]
    return [int(s) for s in top], peak[top]


@dataclass(frozen=True)
class CompressDemo:
    """Latents compressed at several tau beside truncation, rendered.

    Attributes:
        names: one name per latent (``seed0012``, ``file-00``).
        comparisons: one :class:`~latentkit.latent.compare.CompressionComparison` per tau, in order.
        images: ``[N, 2 + T, C, H, W]`` in about [-1, 1] (CPU): original, compressed at each tau, truncated.
        columns: the T + 2 column labels.
    """

    names: list[str]
    comparisons: list[CompressionComparison]
    images: torch.Tensor
    columns: list[str]

    @property
    def taus(self) -> list[float]:
        return [c.tau for c in self.comparisons]

    @property
    def max_coefficient(self) -> torch.Tensor:
        """``[N]`` the largest ``|u|`` of each latent (standard deviations)."""
        return self.comparisons[0].max_coefficient

    def summary(self) -> str:
        """One line: how many vectors and coefficients each tau compressed."""
        parts = [f"tau={c.tau:g}: {c.vectors_compressed} of {c.vectors} W vectors had components beyond tau "
                 f"({c.components_compressed} of {c.components} coefficients compressed)" for c in self.comparisons]
        return f"{'; '.join(parts)}; truncation psi={self.comparisons[-1].psi:g} moved all of them"

    def save(self, outdir: str | os.PathLike, *, tile: int = 256) -> dict[str, str]:
        """Write the latents, one PNG per image and ``grid.png`` into ``outdir``; returns name -> path.

        ``compressed_w.npz`` and ``<name>_compressed.png`` hold the last tau's latents and images; every other tau
        T gets ``compressed_tau<T>_w.npz`` and ``<name>_compressed_tau<T>.png``; then ``<name>_original.png``,
        ``<name>_truncated.png`` and ``grid.png``.
        """
        from latentkit import io
        from latentkit.grid import save_labelled_grid

        out = Path(outdir)
        written = {"latents": str(io.save_latents(out / "compressed_w.npz", self.comparisons[-1].compressed))}
        for c in self.comparisons[:-1]:
            written[f"latents_tau{c.tau:g}"] = str(io.save_latents(out / f"compressed_tau{c.tau:g}_w.npz", c.compressed))
        kinds = ["original"] + [f"compressed_tau{t:g}" for t in self.taus[:-1]] + ["compressed", "truncated"]
        for name, row in zip(self.names, self.images):
            for kind, img in zip(kinds, row):
                io.save_image(out / f"{name}_{kind}.png", img)
        labels = [f"{name} (max |u| {float(m):.1f})" for name, m in zip(self.names, self.max_coefficient)]
        grid = save_labelled_grid(out / "grid.png", self.images.flatten(0, 1), rows=labels, cols=self.columns,
                                  tile=tile)
        written["grid"] = str(grid)
        return written


def compress_demo(
    G: Generator,
    ws: torch.Tensor,
    prior: GaussianPrior,
    *,
    names: Sequence[str],
    taus: Sequence[float] = DEFAULT_DEMO_TAUS,
    psi: float = DEFAULT_PSI,
    c: torch.Tensor | None = None,
    noise_mode: str = "const",
    progress: bool = True,
) -> CompressDemo:
    """Compress ``ws [N, num_ws, w_dim]`` at every tau and truncate it at ``psi``; render every column.

    Args:
        G: the generator.
        ws: the latents, one per row of the demo.
        prior: the fitted prior of ``G``.
        names: N row names.
        taus: the compression thresholds, one column each (standard deviations, > 0).
        psi: the truncation of the baseline column.
        c: ``[N, c_dim]`` labels of a conditional generator (the truncation's class average), else None.
        noise_mode: the synthesis noise.
        progress: a tqdm bar on stderr while rendering.

    Raises:
        InputError: no taus, a tau <= 0, names that do not match ``ws``; see also :func:`compare_compression`.
    """
    from tqdm.auto import tqdm

    if not taus or any(float(t) <= 0 for t in taus):
        raise InputError(f"taus must be one or more numbers > 0, got {list(taus)}")
    if len(names) != ws.shape[0]:
        raise InputError(f"names must give one name per latent: {len(names)} names for {ws.shape[0]} latents")
    comparisons = [compare_compression(G, ws, prior, tau=float(t), psi=psi, c=c) for t in taus]
    rows = []
    with torch.no_grad():
        for i in tqdm(range(ws.shape[0]), desc="rendering", unit="latent", disable=not progress, leave=False):
            column = [ws[i : i + 1]] + [cmp.compressed[i : i + 1] for cmp in comparisons] + [comparisons[0].truncated[i : i + 1]]
            # one image per call: at 1024 px a call's feature maps take GBs per image
            rows.append(torch.cat([G.synthesis(x, noise_mode=noise_mode).cpu() for x in column]))  # [2 + T, C, H, W]
    columns = ["original"] + [f"compressed tau={float(t):g}" for t in taus] + [f"truncated psi={psi:g}"]
    return CompressDemo(list(names), comparisons, torch.stack(rows), columns)
