"""``latentkit fit-prior`` and ``latentkit compress``: parse, call the prior/compress API, write files."""

from __future__ import annotations

import json
from pathlib import Path

import click

from latentkit.cli._common import device_option, network_options, pick_network, resolve_device, resolve_network, say
from latentkit.cli.tune import apply_delta, delta_option

__all__ = ["fit_prior", "compress"]

# Defaults live in the API; they are repeated here only as literals click can show without importing
# torch, and checked against the API in tests/cli/test_prior_cli.py.
_DEFAULT_SAMPLES = 1_000_000  # GaussianPrior.from_generator(n_samples=...)
_DEFAULT_CACHED_SAMPLES = 100_000  # latentkit.latent.prior.DEFAULT_CACHED_SAMPLES
_DEFAULT_BATCH = 10_000  # from_generator(batch_size=...)
_DEFAULT_TAU = 3.0  # latentkit.latent.compress.DEFAULT_TAU
_DEFAULT_PSI = 0.7  # latentkit.latent.compress.DEFAULT_PSI
_DEFAULT_HOLDOUT = 10_000  # latentkit.latent.diagnostics.diagnose_generator(n_samples=...)
_DEFAULT_SEEDS = "0-7"
_DEFAULT_OUTDIR = "out/compress"
_DEFAULT_TILE = 256  # latentkit.grid.DEFAULT_TILE


def _load(network: str | None, device):
    """Load ``network`` (announcing the default when None) onto ``device``."""
    from latentkit.load import load_generator

    return load_generator(resolve_network(network), device=device)


@click.command("fit-prior")
@network_options
@click.option("--samples", "n_samples", type=click.IntRange(min=2), default=_DEFAULT_SAMPLES, show_default=True,
              help="Latents streamed through the mapping network.")
@click.option("--out", "out", type=click.Path(dir_okay=False), default="prior.npz", show_default=True,
              help="Where to write the prior (.npz).")
@click.option("--plot", "plot", type=click.Path(dir_okay=False), default=None,
              help="Also write a diagnostics figure (PNG) computed on held-out samples.")
@click.option("--holdout", "holdout", type=click.IntRange(min=8), default=_DEFAULT_HOLDOUT, show_default=True,
              help="Held-out samples for the diagnostics (with --plot).")
@click.option("--batch-size", "batch_size", type=click.IntRange(min=1), default=_DEFAULT_BATCH, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the z stream (held-out samples use seed + 2).")
@click.option("--class", "classes", type=int, multiple=True,
              help="Conditional nets: fit on these classes only (repeat the option); default all, uniformly.")
@click.option("--radius", type=click.Choice(["gaussian", "student-t"]), default="gaussian", show_default=True,
              help="student-t: also fit the covariance-matched Student-t's nu on 20000 held-out samples (seed + 3) "
              "and store it in the file, for `latentkit project --prior-radius student-t`.")
@device_option
def fit_prior(source, network, n_samples, out, plot, holdout, batch_size, seed, classes, radius, device) -> None:
    """Fit the Gaussianized-W prior of SOURCE / --network (file or registry name; default network if omitted)."""
    from latentkit.distributed import init_distributed
    from latentkit.latent.prior import GaussianPrior

    dev = resolve_device(device)
    job = init_distributed(dev)  # under torchrun: each rank maps its share of the z blocks, rank 0 writes
    dev = job.device if job else dev
    G = _load(pick_network(source, network), dev)
    if click.get_current_context().get_parameter_source("out") == click.core.ParameterSource.DEFAULT:
        say(f"writing the prior to ./{out} (choose with --out)")
    prior = GaussianPrior.from_generator(
        G, n_samples, batch_size=batch_size, seed=seed, device=dev, classes=list(classes) or None,
        shard=job.shard if job else None,
    )
    if job and not job.is_main:
        return
    if radius == "student-t":
        from latentkit.latent.radius import NU_SEED_OFFSET, fit_student_t

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


@click.command("compress")
@click.option("--tau", type=click.FloatRange(min=0, min_open=True), default=_DEFAULT_TAU, show_default=True,
              help="Compress PCA coefficients of v beyond tau standard deviations.")
@click.option("--network", "network", default=None, help="Generator file or registry name (default network if omitted).")
@click.option("--prior", "prior_path", type=click.Path(dir_okay=False), default=None,
              help="A prior from `latentkit fit-prior`; default: fit one and cache it per generator.")
@click.option("--samples", "n_samples", type=click.IntRange(min=2), default=_DEFAULT_CACHED_SAMPLES, show_default=True,
              help="Samples for the cached prior when --prior is not given.")
@click.option("--seeds", default=None,
              help="Seeds to generate, e.g. 0-15 or 1,5,9 (default: the first 8 seeds with components beyond tau).")
@click.option("--latents", "latents", type=click.Path(exists=True, dir_okay=False), multiple=True,
              help="W/W+ latents (.npz key w, or .npy) to compress instead of seeds; repeatable.")
@click.option("--class", "class_idx", type=click.IntRange(min=0), default=None,
              help="Class for conditional nets; the cached prior is then fitted on this class only.")
@click.option("--outdir", default=None, type=click.Path(file_okay=False), help=f"Output folder (default {_DEFAULT_OUTDIR}).")
@click.option("--trunc", "--compare-psi", "compare_psi", type=float, default=_DEFAULT_PSI, show_default=True,
              help="Truncation psi of the baseline column.")
@click.option("--noise-mode", type=click.Choice(["const", "random", "none"]), default="const", show_default=True)
@click.option("--tile", type=click.IntRange(min=8), default=_DEFAULT_TILE, show_default=True,
              help="Largest side of each image in grid.png (pixels).")
@delta_option
@device_option
def compress(tau, network, prior_path, n_samples, seeds, latents, class_idx, outdir, compare_psi, noise_mode, tile,
             delta_path, device) -> None:
    """Log-compress extreme latent components; write the latents, images and a labelled grid
    original | compressed (tau) | truncated (psi baseline), one row per latent."""
    import torch
    from tqdm.auto import tqdm

    from latentkit import io
    from latentkit.grid import save_labelled_grid
    from latentkit.latent.compare import compare_compression, seeds_beyond_tau
    from latentkit.latent.sampling import one_hot, parse_seeds, z_from_seed

    if seeds is not None and latents:
        raise click.UsageError("give either --seeds or --latents, not both")
    dev = resolve_device(device)
    G = apply_delta(_load(network, dev), delta_path)
    if outdir is None:
        outdir = _DEFAULT_OUTDIR
        say(f"writing to ./{outdir} (choose with --outdir)")
    outdir = Path(outdir)
    c1 = one_hot([class_idx], G.c_dim, device=dev) if class_idx is not None else None
    seed_list = parse_seeds(seeds) if seeds is not None else None  # cheap checks before the prior is fitted
    if G.c_dim and c1 is None:
        G.prepare_labels(None, 1)  # a conditional network needs --class: say so now
    if latents:
        ws, names = _read_latents(G, latents)
        ws = ws.to(dev)
    prior = _prior_for(G, prior_path, n_samples, class_idx)
    if not latents:
        if seed_list is None:
            seed_list = seeds_beyond_tau(G, prior, 8, tau=tau, c=c1)
            if not seed_list:
                seed_list = list(range(8))
                say(f"none of the first 1024 seeds has components beyond tau={tau:g}; showing seeds 0-7 (unchanged)")
            else:
                say(f"no --seeds or --latents given: showing the first {len(seed_list)} seeds with components beyond "
                    f"tau={tau:g} ({','.join(map(str, seed_list))}; choose with --seeds)")
        names = [f"seed{s:04d}" for s in seed_list]
        z = torch.cat([z_from_seed(s, G.z_dim) for s in seed_list]).to(dev)
        with torch.no_grad():
            ws = G.mapping(z, None if c1 is None else c1.expand(len(seed_list), -1))
    c = None if c1 is None else c1.expand(ws.shape[0], -1)
    if c is None and G.c_dim and G.w_avg.ndim == 2:
        from latentkit.errors import InputError

        raise InputError("this generator keeps one w_avg per class: pass --class K for the truncation baseline")
    result = compare_compression(G, ws, prior, tau=tau, psi=compare_psi, c=c if c is not None else (
        torch.zeros(ws.shape[0], G.c_dim, device=dev) if G.c_dim else None))
    say(result.summary())
    io.save_latents(outdir / "compressed_w.npz", result.compressed)
    rows = []
    kinds = ("original", "compressed", "truncated")
    with torch.no_grad():
        for i, name in enumerate(tqdm(names, desc="rendering", unit="latent", leave=False)):
            trio = torch.cat([result.ws[i : i + 1], result.compressed[i : i + 1], result.truncated[i : i + 1]])
            imgs = G.synthesis(trio, noise_mode=noise_mode).cpu()
            for img, kind in zip(imgs, kinds):
                io.save_image(outdir / f"{name}_{kind}.png", img)
            rows.append(imgs)
    labels = [f"{name} (max |u| {float(m):.1f})" for name, m in zip(names, result.max_coefficient)]
    grid = save_labelled_grid(outdir / "grid.png", torch.cat(rows), rows=labels, tile=tile,
                              cols=["original", f"compressed tau={tau:g}", f"truncated psi={compare_psi:g}"])
    click.echo(json.dumps({"latents": str(outdir / "compressed_w.npz"), "grid": str(grid), "images": 3 * len(names),
                           "tau": tau, "compare_psi": compare_psi, "vectors_compressed": result.vectors_compressed,
                           "vectors": result.vectors, "components_compressed": result.components_compressed},
                          indent=2))


def _prior_for(G, prior_path, n_samples, class_idx):
    """The prior from --prior, checked against the network, else the cached fit (per class with --class)."""
    from latentkit.errors import InputError
    from latentkit.latent.prior import GaussianPrior
    from latentkit.latent.prior_cache import cached_prior

    if prior_path is None:
        return cached_prior(G, n_samples=n_samples, classes=None if class_idx is None else [class_idx])
    prior = GaussianPrior.load(prior_path)
    if prior.w_dim != G.w_dim:
        raise InputError(f"--prior {prior_path} has w_dim {prior.w_dim}, the network has {G.w_dim}: "
                         "fit one for this network with `latentkit fit-prior`")
    if prior.generator_.get("sha256") and G.sha256 and prior.generator_["sha256"] != G.sha256:
        say(f"warning: --prior {prior_path} was fitted on another checkpoint (sha256 differs)")
    return prior


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
