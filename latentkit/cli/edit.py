"""``latentkit edit`` and ``latentkit directions``: parse, call the directions/edit API, write files.

Defaults come from the library's torch-free settings modules (so ``latentkit --help`` imports no torch).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from latentkit.cli._common import FiniteFloat, check_outdir, device_option, load_network, network_option, prior_or_cached, resolve_device
from latentkit.latent.settings import DEFAULT_AMOUNTS, DEFAULT_CACHED_SAMPLES
from latentkit.metrics.settings import ANALYSIS_AMOUNT, ANALYSIS_SAMPLES, DEFAULT_COMPONENTS
from latentkit.cli.tune import apply_delta, delta_option

__all__ = ["edit", "directions"]

_W_PCA_SAMPLES = 100_000  # latents drawn for --method w-pca
_FRAMES = 48  # video frames with --video


def _prior_options(func):
    func = click.option("--samples", "n_samples", type=click.IntRange(min=2), default=DEFAULT_CACHED_SAMPLES,
                        show_default=True, help="Samples for the cached prior when --prior is not given.")(func)
    return click.option("--prior", "prior_path", type=click.Path(exists=True, dir_okay=False), default=None,
                        help="A prior from `latentkit fit-prior`; default: the cached fit of the network.")(func)


@click.command("edit")
@click.argument("latents", type=click.Path(exists=True, dir_okay=False))
@click.option("--component", type=click.IntRange(min=0), default=None,
              help="Edit along the prior's principal component K of v (0-based, by descending variance).")
@click.option("--direction", "direction_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Edit along a direction file from `latentkit directions` or fit_direction(...).save().")
@click.option("--index", type=click.IntRange(min=0), default=0, show_default=True,
              help="Which direction of a --direction file holding several.")
@click.option("--amounts", default=",".join(f"{a:g}" for a in DEFAULT_AMOUNTS), show_default=True,
              help="Amounts in standard deviations of the direction.")
@click.option("--layers", default=None, help="W+ rows to edit: 0-7 (inclusive), 8- (8 to the last), 0..8 "
                                             "(GANSpace's start..end, end exclusive) or 0,2,5; default all.")
@click.option("--space", type=click.Choice(["v", "w"]), default=None,
              help="Where to move (default: the direction's own space; v for --component).")
@network_option
@_prior_options
@click.option("--out", "outdir", type=click.Path(file_okay=False), default="out/edit", show_default=True,
              help="Output folder: edited_w.npz, grid.png (and edit.mp4 with --video).")
@click.option("--video", is_flag=True, help="Also write edit.mp4: the first latent swept over the amounts' range "
                                            "(needs latentkit[video]).")
@click.option("--frames", type=click.IntRange(min=2), default=_FRAMES, show_default=True, help="Video frames.")
@click.option("--fps", type=FiniteFloat(min=0, min_open=True), default=24.0, show_default=True)
@click.option("--cell", type=click.IntRange(min=8), default=256, show_default=True, help="Grid cell size in px.")
@click.option("--noise-mode", type=click.Choice(["const", "random", "none"]), default="const", show_default=True)
@delta_option
@device_option
def edit(latents, component, direction_path, index, amounts, layers, space, network, prior_path, n_samples, outdir,
         video, frames, fps, cell, noise_mode, delta_path, device) -> None:
    """Edit the latents of LATENTS.npz (NVIDIA's key 'w') along a direction; write the edited latents
    (input latent major, amount minor) and a labelled grid (one row per latent, one column per amount)."""
    from latentkit import io
    from latentkit.latent.directions import Directions, prior_directions
    from latentkit.latent.edit import parse_amounts, ramp_amounts, render_edits
    from latentkit.grid import save_labelled_grid

    if (component is None) == (direction_path is None):
        raise click.UsageError("give exactly one of --component K or --direction FILE")
    amount_list = parse_amounts(amounts)
    check_outdir(outdir, "--out")
    dev = resolve_device(device)
    G = apply_delta(load_network(network, dev), delta_path)
    ws = io.load_latents(latents)
    ws = ws.expand(-1, G.num_ws, -1) if ws.shape[1] == 1 else ws
    G.check_ws(ws)
    if component is not None:
        dirs = prior_directions(prior_or_cached(prior_path, G, n_samples=n_samples))
        direction = dirs[component]
    else:
        direction = Directions.load(direction_path)[index]
    outdir = Path(outdir)
    result = render_edits(G, ws.to(dev), direction, amount_list, layers=layers, space=space, noise_mode=noise_mode)
    io.save_latents(outdir / "edited_w.npz", result.ws)
    stem = Path(latents).stem
    grid = save_labelled_grid(
        outdir / "grid.png", result.images, cols=[f"{a:+g} sd" for a in amount_list],
        rows=[f"{stem}-{i}" for i in range(ws.shape[0])], tile=cell,
        title=f"{direction.names[0]} ({space or direction.space}), layers {layers or 'all'}")
    written = {"latents": str(outdir / "edited_w.npz"), "grid": str(grid)}
    if video:
        from latentkit.latent.interpolate import save_video

        sweep = render_edits(G, ws[:1].to(dev), direction, ramp_amounts(amount_list, frames), layers=layers,
                             space=space, noise_mode=noise_mode)
        written["video"] = str(save_video(outdir / "edit.mp4", sweep.images, fps=fps))
    click.echo(json.dumps({**written, "direction": direction.names[0], "space": space or direction.space,
                           "amounts": amount_list, "layers": result.layers, "images": int(result.images.shape[0])},
                          indent=2))


@click.command("directions")
@network_option
@click.option("--components", "n_components", type=click.IntRange(min=1), default=DEFAULT_COMPONENTS, show_default=True,
              help="How many directions (the first K, by descending variance).")
@click.option("--method", type=click.Choice(["prior", "w-pca"]), default="prior", show_default=True,
              help="prior: the prior's principal components of v; w-pca: GANSpace's PCA of W samples.")
@_prior_options
@click.option("--w-samples", "w_samples", type=click.IntRange(min=2), default=_W_PCA_SAMPLES, show_default=True,
              help="Mapping outputs for --method w-pca (GANSpace uses 10^6).")
@click.option("--analysis-samples", "analysis_samples", type=click.IntRange(min=1), default=ANALYSIS_SAMPLES,
              show_default=True, help="Base latents the image changes are averaged over.")
@click.option("--amount", type=FiniteFloat(), default=ANALYSIS_AMOUNT, show_default=True,
              help="Edit size for the analysis, in standard deviations.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True, help="Seed of the base latents.")
@click.option("--per-layer/--no-per-layer", "per_layer", default=True, show_default=True,
              help="Measure the sensitivity of every W+ layer (num_ws renders more per direction and latent).")
@click.option("--plot/--no-plot", "plot", default=True, show_default=True,
              help="Write the one-page figure directions.png (needs latentkit[plot]).")
@click.option("--batch-size", "batch_size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--out", "outdir", type=click.Path(file_okay=False), default="out/directions", show_default=True,
              help="Output folder: directions.npz, analysis.npz, directions.png.")
@device_option
def directions(network, n_components, method, prior_path, n_samples, w_samples, analysis_samples, amount, seed,
               per_layer, plot, batch_size, outdir, device) -> None:
    """Find the first K directions of a network and analyse them: per-pixel image change (a heat map per
    direction), sensitivity per W+ layer with a suggested layer range, and a one-page figure."""
    from latentkit.errors import InputError
    from latentkit.latent.directions import prior_directions, w_pca_directions
    from latentkit.metrics.direction_analysis import analyse_directions

    if plot:
        try:
            import matplotlib  # noqa: F401  (checked before the long work)
        except ImportError:
            raise InputError("the figure needs matplotlib: pip install 'latentkit[plot]' (or pass --no-plot)") from None
    check_outdir(outdir, "--out")
    dev = resolve_device(device)
    G = load_network(network, dev)
    if n_components > G.w_dim:
        raise InputError(f"--components {n_components} is more than this network's w_dim = {G.w_dim}")
    if method == "prior":
        dirs = prior_directions(prior_or_cached(prior_path, G, n_samples=n_samples), n_components=n_components)
    else:
        dirs = w_pca_directions(G, w_samples, n_components=n_components, seed=seed)
    outdir = Path(outdir)
    written = {"directions": str(dirs.save(outdir / "directions.npz"))}
    analysis = analyse_directions(G, dirs, n_samples=analysis_samples, amount=amount, seed=seed, per_layer=per_layer,
                                  batch_size=batch_size)
    written["analysis"] = str(analysis.save(outdir / "analysis.npz"))
    if plot:
        written["figure"] = str(analysis.plot(outdir / "directions.png"))
    click.echo(json.dumps({"files": written, "method": method, **analysis.summary()}, indent=2))
