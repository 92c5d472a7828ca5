"""LPIPS VGG16 with Winograd deep layers against direct convolutions: speed (interleaved) and round-off.

    python benchmarks/bench_lpips.py [--threads 2] [--rounds 7] [--resolution 256]

Times one projection-style LPIPS evaluation (features of one image, distance to fixed target features,
backward to the image) and its forward alone, with ``trunk.fast_convolutions`` True (Winograd F(4x4, 3x3)
for layers with >= 256 output channels) and False (every layer a direct convolution, as the ``lpips``
package and NVIDIA's VGG16 run), alternating within each round; ratios are medians of per-round ratios.
Round-off: the LPIPS distance and its image gradient of both float32 paths against a float64 direct
evaluation of the same network. Random backbone weights (the cost of the real ones). Writes
benchmarks/results/bench_lpips_<cpu kind>.json (``_avx2``, ``_avx512``, ``_avx512_amx``: as bench_speed.py).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from bench_speed import _cpu_kind  # this folder's sibling script (sys.path[0] when run)
from latentkit.projection.lpips import WINOGRAD_MIN_CHANNELS, lpips_vgg

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def _distance_and_grad(net, img, target_feats):
    x = img.clone().requires_grad_(True)
    d = net.distance_from_features(net.features(x), target_feats)
    d.sum().backward()
    return d.detach(), x.grad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--resolution", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    net = lpips_vgg("random")
    g = torch.Generator().manual_seed(0)
    img = torch.rand(1, 3, args.resolution, args.resolution, generator=g) * 2 - 1
    target = (img + 0.3 * torch.randn(img.shape, generator=g)).clamp(-1, 1)
    with torch.no_grad():
        target_feats = net.features(target)

    def timed(fast: bool, backward: bool):
        def run():
            net.trunk.fast_convolutions = fast
            if backward:
                _distance_and_grad(net, img, target_feats)
            else:
                with torch.no_grad():
                    net.distance_from_features(net.features(img), target_feats)
        return run

    arms = {"direct_fwd_bwd": timed(False, True), "winograd_fwd_bwd": timed(True, True),
            "direct_fwd": timed(False, False), "winograd_fwd": timed(True, False)}
    for run in arms.values():
        run()
    seconds: dict[str, list[float]] = {k: [] for k in arms}
    for _ in range(args.rounds):
        for name, run in arms.items():
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)

    def ratio(num: str, den: str) -> float:
        return statistics.median(a / b for a, b in zip(seconds[num], seconds[den], strict=True))

    # Round-off against float64 direct convolutions.
    net.trunk.fast_convolutions = False
    ref_d, ref_g = _distance_and_grad(net.double(), img.double(), [f.double() for f in target_feats])
    net.float()
    error = {}
    for name, fast in (("direct", False), ("winograd", True)):
        net.trunk.fast_convolutions = fast
        d, grad = _distance_and_grad(net, img, target_feats)
        error[name] = {"distance_rel": float((d.double() - ref_d).abs().max() / ref_d.abs().max()),
                       "grad_rel": float((grad.double() - ref_g).abs().max() / ref_g.abs().max())}
    net.trunk.fast_convolutions = True

    out = {
        "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                    "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": args.threads},
        "resolution": args.resolution, "winograd_min_channels": WINOGRAD_MIN_CHANNELS,
        "median_seconds": {k: statistics.median(v) for k, v in seconds.items()}, "seconds": seconds,
        "speedup_fwd_bwd": ratio("direct_fwd_bwd", "winograd_fwd_bwd"),
        "speedup_fwd": ratio("direct_fwd", "winograd_fwd"),
        "error_vs_float64": error,
    }
    print(f"LPIPS fwd+bwd: Winograd {out['speedup_fwd_bwd']:.2f}x direct; fwd {out['speedup_fwd']:.2f}x "
          f"({args.threads} threads, {out['machine']['cpu_capability']})")
    print(f"max relative error vs float64: direct {error['direct']}, winograd {error['winograd']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"bench_lpips_{_cpu_kind()}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
