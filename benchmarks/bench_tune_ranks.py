"""Reconstruction per megabyte of pivotal-tuning deltas by rank, on a reference net (quick, CPU).

    nice -n 19 python benchmarks/bench_tune_ranks.py [--steps 60] [--proj-steps 100]

examples/face.png and examples/grace_hopper.jpg (centre-cropped) are fitted to the 32 px test net
``sg2ada_uncond_map8_res32.pkl``, projected (W+, no prior) and tuned from the same pivot at ranks 1, 2, 4, 8
and full weights, with ``max_delta_fraction`` lifted so every rank is what it says. LPIPS (the pretrained
VGG16 LPIPS if available offline) and PSNR to the target, delta bytes and their share of the generator's
float32 parameter bytes are written to benchmarks/results/bench_tune_ranks.json. A narrow test net is not
FFHQ at 1024: this shows the shape of the size/quality curve, not the real model's numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "bench_tune_ranks.json"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--proj-steps", type=int, default=100)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--images", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from latentkit.load import load_generator
    from latentkit.projection.lpips import lpips_vgg
    from latentkit.projection.project import ProjectionSettings, project
    from latentkit.projection.tune import tune
    from latentkit.projection.tune_settings import TuneSettings

    G = load_generator(ROOT / "tests" / "data" / "reference-nets" / "sg2ada_uncond_map8_res32.pkl")
    net = lpips_vgg("auto")
    param_bytes = 4 * sum(p.numel() for p in G.parameters())
    files = [ROOT / "examples" / "face.png", ROOT / "examples" / "grace_hopper.jpg"][: args.images]
    pivot = project(G, files, settings=ProjectionSettings(num_steps=args.proj_steps, w_avg_samples=2000),
                    perceptual_net=net, progress=False)
    targets = pivot.targets

    def scores(images: torch.Tensor) -> dict:
        lp = net(images.clamp(-1, 1), targets)
        mse = (images.clamp(-1, 1) - targets).square().flatten(1).mean(1)
        return {"lpips": lp.tolist(), "psnr": (10 * torch.log10(4 / mse)).tolist()}

    out = {"network": "sg2ada_uncond_map8_res32", "parameter_bytes": param_bytes, "perceptual_weights": net.weights,
           "steps": args.steps, "learning_rate": args.lr, "pivot": scores(pivot.images), "ranks": {}}
    for rank in (1, 2, 4, 8, 0):
        started = time.perf_counter()
        s = TuneSettings(num_steps=args.steps, delta_rank=rank, learning_rate=args.lr, max_delta_fraction=10.0)
        result = tune(G, targets, pivot.ws, noise=pivot.noises, settings=s, perceptual_net=net, progress=False)
        size = result.deltas[0].nbytes
        out["ranks"]["full" if rank == 0 else str(rank)] = {
            **scores(result.images), "delta_bytes": size, "percent_of_generator": round(100 * size / param_bytes, 2),
            "seconds": round(time.perf_counter() - started, 1), "loadavg_1min": os.getloadavg()[0]}
        OUT.write_text(json.dumps(out, indent=1))
        print(rank, json.dumps(out["ranks"]["full" if rank == 0 else str(rank)]), flush=True)


if __name__ == "__main__":
    main()
