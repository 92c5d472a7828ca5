"""Synthesis throughput (images/s) by batch size for every reference network, on the CPU.

Loads each checkpoint in tests/data/reference-nets with ``latentkit.load_generator`` (networks whose
loader is not available are reported as skipped), renders ``G.synthesis(ws, noise_mode='const')`` for
batch sizes 1, 4 and 16, and reports the median images per second over several timed repeats, plus the
speed-up over batch size 1.

    python benchmarks/bench_synthesis.py [--threads 1] [--min-time 1.0]

Prints a table and writes benchmarks/results/bench_synthesis.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_NETS = ROOT / "tests" / "data" / "reference-nets"
RESULTS = ROOT / "benchmarks" / "results" / "bench_synthesis.json"
BATCH_SIZES = (1, 4, 16)


def _time_synthesis(G: torch.nn.Module, batch: int, min_time: float, min_repeats: int = 3) -> list[float]:
    """Seconds per call of ``G.synthesis`` for ``batch`` images, repeated until ``min_time`` has passed."""
    generator = torch.Generator().manual_seed(batch)
    z = torch.randn(batch, G.z_dim, generator=generator)
    c = None
    if G.c_dim:
        c = torch.nn.functional.one_hot(torch.arange(batch) % G.c_dim, G.c_dim).float()
    with torch.no_grad():
        ws = G.mapping(z, c)
        G.synthesis(ws)  # warm-up
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < min_repeats or time.perf_counter() - start < min_time:
            t0 = time.perf_counter()
            G.synthesis(ws)
            times.append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds of timed calls per batch size")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from latentkit import load_generator

    files = sorted(p for p in REFERENCE_NETS.iterdir() if p.suffix in (".pkl", ".pt"))
    rows = []
    for path in files:
        try:
            G = load_generator(path)
        except Exception as err:  # noqa: BLE001 - a loader not there yet (ImportError) or failing: report, go on
            rows.append({"file": path.name, "skipped": f"{type(err).__name__}: {err}"})
            continue
        row = {"file": path.name, "architecture": G.architecture, "resolution": G.img_resolution,
               "num_parameters": sum(p.numel() for p in G.parameters()), "images_per_s": {}, "ms_per_call": {}}
        for batch in BATCH_SIZES:
            times = _time_synthesis(G, batch, args.min_time)
            median = statistics.median(times)
            row["images_per_s"][str(batch)] = batch / median
            row["ms_per_call"][str(batch)] = 1000 * median
        rows.append(row)

    columns = " ".join(f"{'bs' + str(b) + ' img/s':>12s}" for b in BATCH_SIZES)
    header = f"{'file':36s} {'arch':22s} {'res':>4s} {columns}"
    header += f" {'x(bs16/bs1)':>12s}"
    print(header)
    print("-" * len(header))
    for row in rows:
        if "skipped" in row:
            print(f"{row['file']:36s} skipped ({row['skipped'][:80]})")
            continue
        ips = row["images_per_s"]
        ratio = ips[str(BATCH_SIZES[-1])] / ips[str(BATCH_SIZES[0])]
        row["speedup_bs16_vs_bs1"] = ratio
        print(f"{row['file']:36s} {row['architecture']:22s} {row['resolution']:4d} "
              + " ".join(f"{ips[str(b)]:12.1f}" for b in BATCH_SIZES) + f" {ratio:12.2f}")

    result = {
        "benchmark": "bench_synthesis",
        "device": "cpu",
        "threads": args.threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "batch_sizes": list(BATCH_SIZES),
        "networks": rows,
    }
    from latentkit.io import atomic_path

    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
