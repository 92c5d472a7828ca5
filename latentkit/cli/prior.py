"""``latentkit fit-prior`` and ``latentkit compress``: parse, call the prior/compress API, write files."""

from __future__ import annotations

import json
from pathlib import Path

import click

from latentkit.cli._common import (
    FiniteFloat,
    check_outdir,
    device_option,
    load_network,
    network_option,
    network_options,
    pick_network,
    prior_or_cached,
    resolve_device,
    say,
)
from latentkit.latent.settings import (
    DEFAULT_CACHED_SAMPLES,
    DEFAULT_DEMO_ROWS,
    DEFAULT_DEMO_TAUS,
    DEFAULT_NU_SAMPLES,
    DEFAULT_POOL,
    DEFAULT_PSI,
    DIAGNOSTIC_SAMPLES,
    NU_SEED_OFFSET,
    PRIOR_BATCH_SIZE,
    PRIOR_SAMPLES,
    RADIUS_MODELS,
)
from latentkit.cli.tune import apply_delta, delta_option

__all__ = ["fit_prior", "compress"]

_DEFAULT_OUTDIR = "out/compress"
_DEFAULT_TILE = 256  # latentkit.grid.DEFAULT_TILE (grid imports torch; checked in tests/cli/test_prior_cli.py)


@click.command("fit-prior")
@network_options
@click.option("--samples", "n_samples", type=click.IntRange(min=2), default=PRIOR_SAMPLES, show_default=True,
              help="Latents streamed through the mapping network.")
@click.option("--out", "out", type=click.Path(dir_okay=False), default="prior.npz", show_default=True,
              help="Where to write the prior (.npz).")
@click.option("--plot", "plot", type=click.Path(dir_okay=False), default=None,
              help="Also write a diagnostics figure (PNG) computed on held-out samples.")
@click.option("--holdout", "holdout", type=click.IntRange(min=8), default=DIAGNOSTIC_SAMPLES, show_default=True,
              help="Held-out samples for the diagnostics (with --plot).")
@click.option("--batch-size", "batch_size", type=click.IntRange(min=1), default=PRIOR_BATCH_SIZE, show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
              help="Seed of the z stream (held-out samples use seed + 2).")
@click.option("--class", "classes", type=int, multiple=True,
              help="Conditional nets: fit on these classes only (repeat the option); default all, uniformly.")
@click.option("--radius", type=click.Choice(RADIUS_MODELS), default="gaussian", show_default=True,
              help=f"student-t: also fit the covariance-matched Student-t's nu on {DEFAULT_NU_SAMPLES} held-out samples "
              f"(seed + {NU_SEED_OFFSET}) and store it in the file, for `latentkit project --prior-radius student-t`.")
@device_option
def fit_prior(source, network, n_samples, out, plot, holdout, batch_size, seed, classes, radius, device) -> None:
    """Fit the Gaussianized-W prior of SOURCE / --network (file or registry name; default network if omitted)."""
    from latentkit.checks import check_plot_path
    from latentkit.distributed import init_distributed
    from latentkit.latent.prior import GaussianPrior

    if plot is not None:
        check_plot_path(plot)  # before the fit, not after it
    dev = resolve_device(device)
    job = init_distributed(dev)  # under torchrun: each rank maps its share of the z blocks, rank 0 writes
    dev = job.device if job else dev
    G = load_network(pick_network(source, network), dev)
    if click.get_current_context().get_parameter_source("out") == click.core.ParameterSource.DEFAULT:
        say(f"writing the prior to ./{out} (choose with --out)")
    prior = GaussianPrior.from_generator(
        G, n_samples, batch_size=batch_size, seed=seed, device=dev, classes=list(classes) or None,
        shard=job.shard if job else None,
    )
    if job and not job.is_main:
        return
    if radius == "student-t":
        from latentkit.latent.radius import fit_student_t

        model = fit_student_t(prior, G, seed=seed + NU_SEED_OFFSET, batch_size=batch_size, device=dev)
        path = model.save(out)
        result = {"prior": str(path), **prior.summary(), "radius": model.radius_info()}
    else:
        path = prior.save(out)
        result = {"prior": str(path), **prior.summary()}
    if plot is not None:
        from latentkit.latent.diagnostics import diagnose_generator

        diag = diagnose_generator(prior, G, holdout, seed=seed + 2, classes=list(classes) or None,
                                  batch_size=batch_size, device=dev)
        result["plot"] = str(diag.plot(plot))
        result["diagnostics"] = diag.summary()
    click.echo(json.dumps(result, indent=2))


def _parse_taus(text: str) -> list[float]:
    """``--tau``: one threshold or a comma list ('3', '1,2,3'), each > 0."""
    try:
        taus = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        taus = []
    if not taus or any(not t > 0 or t != t or t == float("inf") for t in taus):
        raise click.BadParameter(f"expected one or more finite numbers > 0 such as '3' or '1,2,3', got {text!r}",
                                 param_hint="--tau")
    return taus


@click.command("compress")
@click.option("--tau", "tau_text", default=",".join(f"{t:g}" for t in DEFAULT_DEMO_TAUS), show_default=True,
              help="Compress PCA coefficients of v beyond tau standard deviations; one column per value ('3' or '1,2,3').")
@network_option
@click.option("--prior", "prior_path", type=click.Path(dir_okay=False), default=None,
              help="A prior from `latentkit fit-prior`; default: fit one and cache it per generator.")
@click.option("--samples", "n_samples", type=click.IntRange(min=2), default=DEFAULT_CACHED_SAMPLES, show_default=True,
              help="Samples for the cached prior when --prior is not given.")
@click.option("--seeds", default=None,
              help=f"Seeds to generate, e.g. 0-15 or 1,5,9 (default: the {DEFAULT_DEMO_ROWS} of the first --pool seeds with the "
              "largest whitened coefficients, where compression acts).")
@click.option("--pool", type=click.IntRange(min=1), default=DEFAULT_POOL, show_default=True,
              help="Without --seeds: how many seeds (0 .. pool-1) to search for the most extreme latents.")
@click.option("--latents", "latents", type=click.Path(exists=True, dir_okay=False), multiple=True,
              help="W/W+ latents (.npz key w, or .npy) to compress instead of seeds; repeatable.")
@click.option("--class", "class_idx", type=click.IntRange(min=0), default=None,
              help="Class for conditional nets; the cached prior is then fitted on this class only.")
@click.option("--outdir", default=None, type=click.Path(file_okay=False), help=f"Output folder (default {_DEFAULT_OUTDIR}).")
@click.option("--trunc", "--compare-psi", "compare_psi", type=FiniteFloat(), default=DEFAULT_PSI, show_default=True,
              help="Truncation psi of the baseline column.")
@click.option("--noise-mode", type=click.Choice(["const", "random", "none"]), default="const", show_default=True)
@click.option("--tile", type=click.IntRange(min=8), default=_DEFAULT_TILE, show_default=True,
              help="Largest side of each image in grid.png (pixels).")
@delta_option
@device_option
def compress(tau_text, network, prior_path, n_samples, seeds, pool, latents, class_idx, outdir, compare_psi, noise_mode,
             tile, delta_path, device) -> None:
    """Log-compress extreme latent components; write the latents, images and a labelled grid
    original | compressed (each tau) | truncated (psi baseline), one row per latent."""
    import torch

    from latentkit.latent.compress_demo import compress_demo, pick_extreme_seeds, seed_latents
    from latentkit.latent.sampling import one_hot, parse_seeds

    taus = _parse_taus(tau_text)
    if seeds is not None and latents:
        raise click.UsageError("give either --seeds or --latents, not both")
    seed_list = parse_seeds(seeds) if seeds is not None else None  # cheap checks before the network loads
    if outdir is None:
        outdir = _DEFAULT_OUTDIR
        say(f"writing to ./{outdir} (choose with --outdir)")
    check_outdir(outdir)
    dev = resolve_device(device)
    G = apply_delta(load_network(network, dev), delta_path)
    c1 = one_hot([class_idx], G.c_dim, device=dev) if class_idx is not None else None
    if G.c_dim and c1 is None:
        G.prepare_labels(None, 1)  # a conditional network needs --class: say so now
    if latents:
        ws, names = _read_latents(G, latents)
        ws = ws.to(dev)
    prior = prior_or_cached(prior_path, G, n_samples=n_samples, classes=None if class_idx is None else [class_idx],
                            announce=False)
    if not latents:
        if seed_list is None:
            seed_list, peaks = pick_extreme_seeds(G, prior, min(DEFAULT_DEMO_ROWS, pool), pool=pool, c=c1)
            shown = ", ".join(f"{s} ({float(p):.1f})" for s, p in zip(seed_list, peaks))
            say(f"no --seeds or --latents given: showing the {len(seed_list)} of the first {pool} seeds with the largest "
                f"whitened coefficients, where compression acts: seed (max |u|) {shown} (choose with --seeds, search "
                "more with --pool)")
            if float(peaks.max()) <= max(taus):
                say(f"none of them has a coefficient beyond tau={max(taus):g}: that column equals the original")
        names = [f"seed{s:04d}" for s in seed_list]
        ws = seed_latents(G, seed_list, c1)
    c = None if c1 is None else c1.expand(ws.shape[0], -1)
    if c is None and G.c_dim and G.w_avg.ndim == 2:
        from latentkit.errors import InputError

        raise InputError("this generator keeps one w_avg per class: pass --class K for the truncation baseline")
    demo = compress_demo(G, ws, prior, names=names, taus=taus, psi=compare_psi, noise_mode=noise_mode,
                         c=c if c is not None else (torch.zeros(ws.shape[0], G.c_dim, device=dev) if G.c_dim else None))
    say(demo.summary())
    written = demo.save(outdir, tile=tile)
    last = demo.comparisons[-1]
    click.echo(json.dumps({**written, "images": demo.images.shape[0] * demo.images.shape[1], "tau": last.tau,
                           "taus": demo.taus, "compare_psi": compare_psi,
                           "max_coefficient": [round(float(m), 3) for m in demo.max_coefficient],
                           "vectors_compressed": last.vectors_compressed, "vectors": last.vectors,
                           "components_compressed": last.components_compressed}, indent=2))


def _read_latents(G, files):
    """W or W+ latents from files, broadcast to W+: (``[N, num_ws, w_dim]``, one name per latent)."""
    import torch

    from latentkit import io

    parts, names = [], []
    for file in files:
        ws_file = io.load_latents(file)
        if ws_file.shape[1] == 1:
            ws_file = ws_file.expand(-1, G.num_ws, -1)
        G.check_ws(ws_file)
        parts.append(ws_file)
        names += [f"{Path(file).stem}-{i:02d}" for i in range(ws_file.shape[0])]
    return torch.cat(parts), names
