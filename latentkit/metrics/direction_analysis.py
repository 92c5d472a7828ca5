"""Where latent directions act: per-pixel image change and per-layer sensitivity of each direction.

For each direction ``k`` and base latents ``w`` (DSS-GAN's latent specialisation analysis):

- the heat map ``H_k[y, x]``: the mean absolute change of the image, over colour channels and base
  latents, when every layer is moved ``amount`` standard deviations along ``k``;
- the layer sensitivity ``S_k[l]``: the mean absolute image change when only W+ row ``l`` is moved;
- :meth:`DirectionAnalysis.layer_range`: the shortest run of consecutive layers holding a share of the
  sensitivity, a GANSpace-style ``start-end`` range to edit ``k`` with;
- the concentration: the share of the change in the 10% of pixels that change most (0.1 for a change
  spread evenly over the image, near 1 for a local one).

Image changes are in the generator's units (images in about [-1, 1]).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from latentkit.checks import check_plot_path
from latentkit.errors import InputError
from latentkit.latent.directions import Directions
from latentkit.latent.edit import edit
from latentkit.latent.sampling import iter_mapping
from latentkit.metrics.settings import ANALYSIS_AMOUNT, ANALYSIS_SAMPLES, DEFAULT_COMPONENTS

if TYPE_CHECKING:
    from latentkit.nets.generator import Generator

__all__ = ["DirectionAnalysis", "analyse_directions", "DEFAULT_COMPONENTS", "DEFAULT_SHARE"]

logger = logging.getLogger(__name__)

DEFAULT_SHARE = 0.8  # layer_range: share of the sensitivity the range must hold
_TOP = 0.1  # concentration: share of pixels


@dataclass
class DirectionAnalysis:
    """What :func:`analyse_directions` measured (float64 CPU tensors).

    Attributes:
        names: ``K`` direction names.
        sigmas: ``[K]`` standard deviations of the directions (in ``space``).
        space: where the edits were made.
        amount: the edit, in standard deviations.
        n_samples: base latents averaged over.
        heatmaps: ``[K, H, W]`` mean absolute image change per pixel, editing all layers.
        layer_sensitivity: ``[K, num_ws]`` mean absolute image change, editing one layer at a time.
        images: ``[N, C, H, W]`` the base latents' images (for the figure), float32.
    """

    names: list[str]
    sigmas: torch.Tensor
    space: str
    amount: float
    n_samples: int
    heatmaps: torch.Tensor
    layer_sensitivity: torch.Tensor
    images: torch.Tensor

    @property
    def total_change(self) -> torch.Tensor:
        """``[K]`` mean absolute image change over all pixels, editing all layers."""
        return self.heatmaps.flatten(1).mean(1)

    @property
    def concentration(self) -> torch.Tensor:
        """``[K]`` share of each heat map's sum in its top 10% pixels (0.1 uniform, 1 local)."""
        flat = self.heatmaps.flatten(1)
        top = flat.topk(max(1, int(round(_TOP * flat.shape[1]))), dim=1).values.sum(1)
        return top / flat.sum(1).clamp(min=torch.finfo(torch.float64).tiny)

    def layer_range(self, k: int, *, share: float = DEFAULT_SHARE) -> tuple[int, int]:
        """The shortest run of layers ``start..end`` (inclusive) holding ``share`` of direction ``k``'s
        layer sensitivity (the earliest such run when several are as short)."""
        if not 0 < share <= 1:
            raise InputError(f"share must be in (0, 1], got {share}")
        s = self.layer_sensitivity[k].numpy()
        need = share * s.sum() * (1 - 1e-12)
        cums = np.concatenate([[0.0], np.cumsum(s)])
        for length in range(1, len(s) + 1):
            for start in range(len(s) - length + 1):
                if cums[start + length] - cums[start] >= need:
                    return start, start + length - 1
        return 0, len(s) - 1

    def summary(self, *, share: float = DEFAULT_SHARE) -> dict[str, Any]:
        """JSON-ready: per direction its name, sigma, total change, concentration, the layer it acts
        through most and its layer range (as ``'start-end'``, inclusive)."""
        rows = []
        for k, name in enumerate(self.names):
            start, end = self.layer_range(k, share=share)
            rows.append({"name": name, "sigma": float(self.sigmas[k]), "total_change": float(self.total_change[k]),
                         "concentration": float(self.concentration[k]),
                         "peak_layer": int(self.layer_sensitivity[k].argmax()), "layers": f"{start}-{end}"})
        return {"space": self.space, "amount": self.amount, "n_samples": self.n_samples, "share": share,
                "directions": rows}

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``heatmaps``, ``layer_sensitivity``, ``sigmas`` and a JSON ``summary`` as ``.npz`` (atomically)."""
        from latentkit.datafiles import write_npz

        arrays = {"heatmaps": self.heatmaps.numpy(), "layer_sensitivity": self.layer_sensitivity.numpy(),
                  "sigmas": self.sigmas.numpy()}
        return write_npz(path, arrays, self.summary(), meta_key="summary")

    def plot(self, path: str | os.PathLike, *, share: float = DEFAULT_SHARE) -> Path:
        """A one-page figure (PNG/PDF/SVG by suffix): a base image, one heat map per direction and the
        layer sensitivity of every direction with its layer range. Needs matplotlib.

        Raises:
            InputError: if matplotlib is not installed.
        """
        try:
            import matplotlib

            matplotlib.use("Agg", force=False)
            from matplotlib.figure import Figure
        except ImportError as err:
            raise InputError("plotting the direction analysis needs matplotlib: pip install 'latentkit[plot]'") from err
        from latentkit.files import atomic_path
        from latentkit.io import to_uint8

        k_count = len(self.names)
        cols = min(6, k_count + 1)
        rows = -(-(k_count + 1) // cols)
        fig = Figure(figsize=(2.2 * cols, 2.3 * rows + 0.35 * k_count + 1.5))
        grid = fig.add_gridspec(rows + 1, cols, height_ratios=[2.3] * rows + [0.35 * k_count + 1.0])
        base = fig.add_subplot(grid[0, 0])
        base.imshow(to_uint8(self.images[:1])[0].squeeze())
        base.set_title("base image", fontsize=8)
        vmax = float(self.heatmaps.max()) or 1.0
        for k, name in enumerate(self.names):
            ax = fig.add_subplot(grid[(k + 1) // cols, (k + 1) % cols])
            ax.imshow(self.heatmaps[k].numpy(), cmap="inferno", vmin=0, vmax=vmax)
            start, end = self.layer_range(k, share=share)
            ax.set_title(f"{name}: {float(self.total_change[k]):.3f}, L{start}-{end}", fontsize=8)
        for ax in fig.axes:
            ax.set_xticks([])
            ax.set_yticks([])
        sens = fig.add_subplot(grid[rows, :])
        norm = self.layer_sensitivity / self.layer_sensitivity.max(1, keepdim=True).values.clamp(min=1e-300)
        sens.imshow(norm.numpy(), aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        for k in range(k_count):
            start, end = self.layer_range(k, share=share)
            sens.plot([start - 0.5, end + 0.5], [k, k], color="white", lw=1.5)
        sens.set_yticks(range(k_count), self.names, fontsize=7)
        sens.set_xticks(range(self.layer_sensitivity.shape[1]))
        sens.set_xlabel(f"W+ layer (white: shortest range with {share:.0%} of the sensitivity)", fontsize=8)
        sens.set_title("layer sensitivity (per direction, relative to its largest)", fontsize=9)
        fig.suptitle(f"mean |image change| for {self.amount:+g} sd in {self.space} over {self.n_samples} latents",
                     fontsize=10)
        fig.tight_layout()
        path = Path(path)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=check_plot_path(path), dpi=110)
        return path


@torch.no_grad()
class _RenderClock:
    """Advances the bar by rendered images and, after the second render call (the first carries one-time
    costs), logs what the whole analysis will take."""

    def __init__(self, bar: Any, total: int) -> None:
        import time

        self.bar, self.total, self.calls, self.count, self.now = bar, total, 0, 0, time.perf_counter
        self.last = self.now()

    def done(self, images: int) -> None:
        now = self.now()
        self.calls += 1
        self.count += images
        self.bar.update(images)
        if self.calls == 2 and self.count < self.total:
            per_image = (now - self.last) / max(images, 1)
            left = per_image * (self.total - self.count)
            logger.info("direction analysis: about %.2f s per image, so ~%s more (fewer: --components, "
                        "--analysis-samples, --no-per-layer)", per_image,
                        f"{left:.0f} s" if left < 90 else f"{left / 60:.0f} min")
        self.last = now


def analyse_directions(
    G: Generator,
    directions: Directions,
    *,
    ws: torch.Tensor | None = None,
    n_samples: int = ANALYSIS_SAMPLES,
    amount: float = ANALYSIS_AMOUNT,
    seed: int = 0,
    per_layer: bool = True,
    noise_mode: str = "const",
    batch_size: int = 8,
    progress: bool = True,
) -> DirectionAnalysis:
    """Measure where and through which layers each direction changes the image.

    Costs ``N * (1 + K * (1 + num_ws))`` renders (``N * (1 + K)`` without ``per_layer``); keep K and N
    small on a CPU.

    Args:
        G: the generator.
        directions: ``K`` directions (e.g. ``prior_directions(prior, n_components=20)``).
        ws: base latents ``[N, num_ws, w_dim]``; None draws ``n_samples`` mapping outputs with ``seed``.
        n_samples: base latents to draw when ``ws`` is None.
        amount: the edit, in standard deviations (one-sided, +amount).
        seed: seed of the drawn base latents.
        per_layer: also measure the layer sensitivity (else it is all zeros and the layer ranges are
            meaningless).
        noise_mode: the synthesis noise (``'const'`` so only the edit changes the image).
        batch_size: images per synthesis call (memory only).
        progress: show a tqdm bar on stderr.

    Returns:
        A :class:`DirectionAnalysis`.

    Raises:
        InputError: ``amount`` is 0, bad ``n_samples``; ShapeError: ``ws`` of the wrong shape.
    """
    from tqdm.auto import tqdm

    if float(amount) == 0.0:
        raise InputError("amount must not be 0: an edit of 0 changes nothing")
    device = G.w_avg.device
    if ws is None:
        if int(n_samples) < 1:
            raise InputError(f"n_samples must be >= 1, got {n_samples}")
        w = torch.cat(list(iter_mapping(G, int(n_samples), seed=seed, device=device)))
        ws = w[:, None].expand(-1, G.num_ws, -1)  # [N, num_ws, w_dim]
    G.check_ws(ws)
    ws = ws.to(device)

    def render(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([G.synthesis(c, noise_mode=noise_mode).to(torch.float64) for c in x.split(batch_size)])

    k_count, layers, n = len(directions), G.num_ws, ws.shape[0]
    renders = n * (1 + k_count * (1 + (layers if per_layer else 0)))
    logger.info("direction analysis: %d renders (%d latents x (1 + %d directions x %d edits))", renders, n, k_count,
                1 + (layers if per_layer else 0))
    with tqdm(total=renders, desc="analysing directions", unit="image", disable=not progress, leave=False) as bar:
        clock = _RenderClock(bar, renders)

        def counted(x: torch.Tensor) -> torch.Tensor:
            out = render(x)
            clock.done(x.shape[0])
            return out

        base = counted(ws)  # [N, C, H, W]
        heat = torch.zeros(k_count, *base.shape[-2:], dtype=torch.float64)
        sens = torch.zeros(k_count, layers, dtype=torch.float64)
        for k in range(k_count):
            d = directions[k]
            heat[k] = (counted(edit(ws, d, amount)) - base).abs().mean((0, 1)).cpu()
            if per_layer:
                for layer in range(layers):
                    sens[k, layer] = (counted(edit(ws, d, amount, layers=layer)) - base).abs().mean().cpu()
    logger.info("direction analysis: %d directions, %d latents, %+g sd", k_count, ws.shape[0], amount)
    return DirectionAnalysis(list(directions.names), directions.sigmas.clone(), directions.space, float(amount),
                             int(ws.shape[0]), heat, sens, base.float().cpu())
