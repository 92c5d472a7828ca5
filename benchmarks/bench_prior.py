"""Benchmark of GaussianPrior.from_generator and compress on the CPU.

The mapping network is NVIDIA-style (normalise z by its second moment, 8 fully connected 512 -> 512
layers, each ``lrelu(0.2) * sqrt(2)``, weights scaled by 1/sqrt(fan_in)) with *random* weights: the
timing depends only on the shapes, not on trained values.

Reports:
- fit time as a ratio to the mapping forward alone (same z draws, same batches); goal <= 1.2. Two
  ways: end to end (best of ``--repeats`` alternating runs), and interleaved (mapping and statistics
  timed batch by batch in one loop, robust to load from other processes on a shared machine);
- peak resident memory of the fit above that of the mapping-only pass (goal: far below one
  ``N x w_dim`` float32 buffer, which the streaming fit never builds);
- compression throughput in W+ latents per second (``[N, 18, 512]`` float32 mapping outputs, tau = 3).

Usage:
    OMP_NUM_THREADS=1 python benchmarks/bench_prior.py --samples 1000000 --threads 1
Writes benchmarks/results/bench_prior.json.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import time
from pathlib import Path

import torch

from latentkit.latent.compress import compress
from latentkit.nets.generator import Generator
from latentkit.latent.prior import GaussianPrior, _Moments, _v64


class RandomMapping(Generator):
    """An NVIDIA-style 8-layer mapping network with random weights (no synthesis)."""

    architecture = "bench-mapping"

    def __init__(self, z_dim: int = 512, w_dim: int = 512, num_layers: int = 8, num_ws: int = 18, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, 0, w_dim, num_ws
        self.img_resolution, self.img_channels = 1024, 3
        dims = [z_dim] + [w_dim] * num_layers
        self.weights = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.randn(o, i, generator=g) / math.sqrt(i)) for i, o in zip(dims[:-1], dims[1:])]
        )
        self.biases = torch.nn.ParameterList([torch.nn.Parameter(0.1 * torch.randn(o, generator=g)) for o in dims[1:]])
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def map_latent(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        x = z * (z.square().mean(1, keepdim=True) + 1e-8).rsqrt()
        for weight, bias in zip(self.weights, self.biases):
            x = torch.nn.functional.leaky_relu(torch.addmm(bias, x, weight.T), 0.2) * math.sqrt(2)
        return x


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def mapping_only(G: RandomMapping, n: int, batch_size: int) -> float:
    """Seconds for the same z draws and mapping calls as the fit, without any statistics."""
    rng = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    done = 0
    with torch.no_grad():
        while done < n:
            b = min(batch_size, n - done)
            G.map_latent(torch.randn(b, G.z_dim, generator=rng), torch.zeros(b, 0))
            done += b
    return time.perf_counter() - start


def interleaved(G: RandomMapping, n: int, batch_size: int) -> tuple[float, float]:
    """(mapping seconds, statistics seconds) timed batch by batch in the same loop, so that load from
    other processes on a shared machine hits both alike. Uses the fit's internal update step."""
    rng = torch.Generator().manual_seed(0)
    moments = _Moments(G.w_dim, torch.device("cpu"))
    t_map = t_stats = 0.0
    done = 0
    with torch.no_grad():
        while done < n:
            b = min(batch_size, n - done)
            t0 = time.perf_counter()
            w = G.map_latent(torch.randn(b, G.z_dim, generator=rng), torch.zeros(b, 0))
            t1 = time.perf_counter()
            moments.update(_v64(w, 0.2, math.sqrt(2)))
            t2 = time.perf_counter()
            t_map, t_stats, done = t_map + t1 - t0, t_stats + t2 - t1, done + b
    return t_map, t_stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1, help="alternate mapping/fit runs; best of each")
    parser.add_argument("--interleaved-samples", type=int, default=200_000)
    parser.add_argument("--compress-latents", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    G = RandomMapping().eval().requires_grad_(False)
    mapping_only(G, 2 * args.batch_size, args.batch_size)  # warm up (allocator, BLAS)
    t_map, t_fit = [], []
    rss: list[float] = []  # process peaks after the first mapping pass and after the first fit
    prior = None
    for _ in range(args.repeats):
        t_map.append(mapping_only(G, args.samples, args.batch_size))
        rss.append(peak_rss_mb())
        start = time.perf_counter()
        prior = GaussianPrior.from_generator(G, args.samples, batch_size=args.batch_size, progress=False)
        t_fit.append(time.perf_counter() - start)
        rss.append(peak_rss_mb())
    rss_map, rss_fit = rss[0], rss[1]

    il_map, il_stats = interleaved(G, args.interleaved_samples, args.batch_size)

    with torch.no_grad():  # real mapping outputs (held out), broadcast to W+
        ws = G.mapping(torch.randn(args.compress_latents, G.z_dim, generator=torch.Generator().manual_seed(1)))
    compress(ws[:10], prior)  # warm the cached matrices
    start = time.perf_counter()
    out = compress(ws, prior, tau=3.0)
    t_comp = time.perf_counter() - start
    changed = float((out != ws).any(-1).float().mean())

    result = {
        "device": "cpu",
        "cpu": platform.processor() or platform.machine(),
        "threads": args.threads,
        "mapping": "NVIDIA-style, 8 x FC 512->512, random weights",
        "samples": args.samples,
        "batch_size": args.batch_size,
        "mapping_only_s": min(t_map),
        "fit_s": min(t_fit),
        "fit_over_mapping_ratio": min(t_fit) / min(t_map),
        "interleaved_samples": args.interleaved_samples,
        "interleaved_ratio": (il_map + il_stats) / il_map,
        "peak_rss_mapping_mb": rss_map,
        "peak_rss_fit_mb": rss_fit,
        "fit_extra_rss_mb": rss_fit - rss_map,
        "n_x_w_dim_float32_buffer_mb": args.samples * G.w_dim * 4 / 2**20,
        "n_floored": prior.n_floored_,
        "compress_latents": args.compress_latents,
        "compress_num_ws": G.num_ws,
        "compress_latents_per_s": args.compress_latents / t_comp,
        "compress_w_vectors_per_s": args.compress_latents * G.num_ws / t_comp,
        "compress_fraction_vectors_changed": changed,
    }
    for key, value in result.items():
        print(f"{key:>36}: {value:.4g}" if isinstance(value, float) else f"{key:>36}: {value}")
    out_dir = Path(__file__).parent / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "bench_prior.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
