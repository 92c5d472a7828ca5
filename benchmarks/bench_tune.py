"""Pivotal tuning on the real default model (MobileStyleGAN FFHQ 1024): reconstruction, identity, editability,
locality, delta size and time, pivot vs tuned.

    nice -n 19 python benchmarks/bench_tune.py [--proj-steps 60] [--tune-steps 60] [--ranks 4,0] [--lrs 3e-4,3e-3]

Targets: examples/face.png, examples/grace_hopper.jpg (aligned FFHQ-style with latentkit's MTCNN aligner)
and generated faces (seeds 1 and 2, truncation 0.7). Each target is projected (W+ under the cached prior,
``--proj-steps``), then tuned once per rank in ``--ranks`` (0: full weights) from the same pivot; with
``--pti`` also PTI's own schedule restated: a W pivot (no prior) and full weights without the locality
term, at the same step counts. For each run:

* LPIPS (VGG16, latentkit's) and PSNR to the target, pivot vs tuned;
* identity distance (1 - cosine similarity of dlib face embeddings) to the target, pivot vs tuned;
* editability: the pivot moved +-2 sigma along the prior's first principal component, rendered by the
  original and by the tuned generator: identity distance of each edit to its generator's unedited image;
* locality: LPIPS between the original and the tuned generator at 16 random latents (seeds 0-15,
  truncation 0.7), and at the pivot for comparison;
* delta size (file bytes, and per cent of the generator's float32 parameter bytes); seconds per image;
* ``lpips_by_step``: the loss's LPIPS term at every step (LPIPS to the target before that step's update), so
  one long run gives the curve at every shorter step count; ``--lrs`` runs each rank at several learning rates.

Results are written after every run to benchmarks/results/bench_tune.json (reruns skip finished runs).
The machine's load is recorded: on a shared 2-core CPU the step counts must be small.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bench_tune.json"
WORK = Path(os.environ.get("BENCH_TUNE_WORK", ROOT / "benchmarks" / "results" / "bench_tune_work"))


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(4.0 / (a.clamp(-1, 1) - b.clamp(-1, 1)).square().mean()))


def _targets(G, args) -> dict[str, torch.Tensor]:
    from latentkit.projection.align import align_face
    from latentkit.projection.project import prepare_targets

    out = {"face": prepare_targets(G, ROOT / "examples" / "face.png")}
    aligned = WORK / "grace_hopper_aligned.png"
    if not aligned.is_file():
        try:
            face = align_face(ROOT / "examples" / "grace_hopper.jpg", output_size=G.img_resolution)[0]
            aligned.parent.mkdir(parents=True, exist_ok=True)
            face.image.save(aligned)
        except Exception as err:  # noqa: BLE001 - the benchmark goes on without it
            print(f"grace_hopper: alignment failed ({err}); skipped", flush=True)
    if aligned.is_file():
        out["grace_hopper"] = prepare_targets(G, aligned)
    for seed in args.seeds:
        z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            out[f"generated_seed{seed}"] = G.synthesis(G.mapping(z, truncation_psi=0.7), noise_mode="const").clamp(-1, 1)
    return out


def _identity_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    import numpy as np

    from latentkit.io import to_uint8
    from latentkit.metrics.identity import identity_similarity

    def image(x: torch.Tensor) -> np.ndarray:  # dlib wants a C-contiguous uint8 [H, W, 3]
        return np.ascontiguousarray(to_uint8(x.detach().cpu().clamp(-1, 1))[0])

    try:
        sim = identity_similarity(image(a), image(b), backend="dlib", detect=True, on_missing="nan")
    except Exception as err:  # noqa: BLE001 - a failed identity measure must not lose the run's other numbers
        print(f"identity: {str(err).splitlines()[0][:200]}", flush=True)
        return float("nan")
    return float(1 - sim[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", default="mobilestylegan-ffhq")
    parser.add_argument("--proj-steps", type=int, default=60)
    parser.add_argument("--tune-steps", type=int, default=60)
    parser.add_argument("--ranks", default="4,0")
    parser.add_argument("--lrs", default=None,
                        help="comma list of learning rates, each run at every rank (default: TuneSettings')")
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2])
    parser.add_argument("--only", default=None, help="comma list of target names")
    parser.add_argument("--locality-scale", type=float, default=1.0,
                        help="both locality weights are PTI's 0.1 times this factor (keys without /loc: PTI's)")
    parser.add_argument("--pti", action="store_true", help="also PTI's schedule restated (W pivot, full, no locality)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from latentkit.latent.directions import prior_directions
    from latentkit.latent.edit import edit
    from latentkit.latent.prior_cache import cached_prior
    from latentkit.load import load_generator
    from latentkit.projection.lpips import lpips_vgg
    from latentkit.projection.project import ProjectionSettings, project
    from latentkit.projection.tune import render_tuned, tune
    from latentkit.projection.tune_settings import FULL_LEARNING_RATE, FULL_LOCALITY_WEIGHT, TuneSettings

    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"runs": {}}
    started = time.perf_counter()
    G = load_generator(args.network)
    prior = cached_prior(G)
    net = lpips_vgg("auto")
    param_bytes = 4 * sum(p.numel() for p in G.parameters())
    results.update(network=args.network, architecture=G.architecture, parameter_bytes=param_bytes,
                   perceptual_weights=net.weights, cpu=platform.processor() or platform.machine(),
                   threads=args.threads, load_seconds=round(time.perf_counter() - started, 1))
    direction = prior_directions(prior, n_components=1)[0]
    z16 = torch.randn(16, G.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        random_ws = G.mapping(z16, truncation_psi=0.7)
    WORK.mkdir(parents=True, exist_ok=True)
    targets = _targets(G, args)
    if args.only:
        targets = {k: v for k, v in targets.items() if k in args.only.split(",")}
    default_lr = FULL_LEARNING_RATE  # PTI's: runs at other rates carry /lr<rate> in their key
    lrs = [float(x) for x in args.lrs.split(",")] if args.lrs else [None]
    schedules = [("latentkit", rank, TuneSettings(delta_rank=rank, learning_rate=lr).lr)
                 for rank in (int(r) for r in args.ranks.split(",")) for lr in lrs]
    if args.pti:
        schedules.append(("pti", 0, default_lr))
    for method, rank, lr in schedules:  # every target at the first schedule first
        for name, target in targets.items():
            key = f"{name}/{method}/rank{rank}/p{args.proj_steps}/t{args.tune_steps}" + (f"/lr{lr:g}" if lr != default_lr else "")
            key += f"/loc{args.locality_scale:g}" if args.locality_scale != 1 else ""
            if key in results["runs"]:
                continue
            pivot_file = WORK / f"{name}_{'w' if method == 'pti' else 'wplus'}_p{args.proj_steps}.pt"
            t0 = time.perf_counter()
            if pivot_file.is_file():
                pivot = torch.load(pivot_file, weights_only=True)
                proj_seconds = pivot.pop("seconds")
            else:
                ps = ProjectionSettings(num_steps=args.proj_steps, space="w" if method == "pti" else "w+")
                res = project(G, target, settings=ps, prior=None if method == "pti" else prior, perceptual_net=net,
                              progress=False)
                proj_seconds = time.perf_counter() - t0
                pivot = {"ws": res.ws, "noises": res.noises}
                torch.save({**pivot, "seconds": proj_seconds}, pivot_file)
            ts = TuneSettings(num_steps=args.tune_steps, delta_rank=rank, learning_rate=lr,
                              locality_l2_weight=FULL_LOCALITY_WEIGHT * args.locality_scale,
                              locality_lpips_weight=FULL_LOCALITY_WEIGHT * args.locality_scale,
                              locality_samples=0 if method == "pti" else TuneSettings().locality_samples)
            t1 = time.perf_counter()
            out = tune(G, target, pivot["ws"], noise=pivot["noises"] or None, settings=ts, perceptual_net=net,
                       progress=False)
            tune_seconds = time.perf_counter() - t1
            delta = out.delta
            path = delta.save(WORK / f"{name}_{method}_rank{rank}_lr{lr:g}_loc{args.locality_scale:g}.safetensors")
            with torch.no_grad():
                lp = net(torch.cat([out.pivot_images, out.images]).clamp(-1, 1), target)
                edits = {}
                for amount in (-2.0, 2.0):
                    moved = edit(pivot["ws"], direction, amount)
                    orig = G.synthesis(moved, noise_mode="const", noise=pivot["noises"] or None)
                    tuned = render_tuned(G, delta, moved, pivot["noises"] or None)
                    edits[f"{amount:+g}"] = {
                        "original_G": _identity_distance(orig, out.pivot_images),
                        "tuned_G": _identity_distance(tuned, out.images),
                    }
                local = []
                for w in random_ws.split(4):
                    a = G.synthesis(w, noise_mode="const")
                    b = render_tuned(G, delta, w)
                    local.append(net(b.clamp(-1, 1), a.clamp(-1, 1)))
                local_lpips = torch.cat(local)
                at_pivot = float(net(out.images.clamp(-1, 1), out.pivot_images.clamp(-1, 1))[0])
            row = {
                "pivot": {"lpips": float(lp[0]), "psnr": _psnr(out.pivot_images, target),
                          "identity_distance": _identity_distance(out.pivot_images, target)},
                "tuned": {"lpips": float(lp[1]), "psnr": _psnr(out.images, target),
                          "identity_distance": _identity_distance(out.images, target)},
                "edit_identity_distance": edits,
                "locality_lpips_random_mean": float(local_lpips.mean()),
                "locality_lpips_random_max": float(local_lpips.max()),
                "change_lpips_at_pivot": at_pivot,
                "delta_file_bytes": path.stat().st_size,
                "delta_percent_of_generator": round(100 * path.stat().st_size / param_bytes, 3),
                "projection_seconds": round(proj_seconds, 1),
                "tune_seconds": round(tune_seconds, 1),
                "tune_seconds_per_step": round(tune_seconds / args.tune_steps, 2),
                "learning_rate": lr,
                "locality_weights": [ts.locality_l2_weight, ts.locality_lpips_weight],
                # the loss's LPIPS term is LPIPS to the target before each step: the curve over steps, free
                "lpips_by_step": [round(float(x), 5) for x in out.loss_terms["lpips"][0]],
                "loadavg_1min": os.getloadavg()[0],
            }
            results["runs"][key] = row
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(results, indent=1))
            print(key, json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
