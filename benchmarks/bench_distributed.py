"""Batch projection on 1 versus K processes (torchrun, gloo on the CPU): images per second.

Each process gets one thread (``OMP_NUM_THREADS=1``, ``torch.set_num_threads(1)``), so K processes use K
cores and the comparison is of the same work split K ways, not of thread scaling. Runs alternate between
1 and K processes (``--repeats`` rounds), so load from other processes on a shared machine hits both.
Two rates per run:

* ``in_run``: images / the slowest rank's seconds inside :func:`project_files` (sharding, projection,
  writing, the end-of-job merge; no start-up);
* ``end_to_end``: images / the wall time of the whole ``torchrun`` command (interpreter, torch import,
  loading the network, process-group rendezvous).

The ratio K/1 of the medians is what to read (ideal: K). As a control, ``capacity`` is the same ratio
for K independent one-thread matmul loops (no latentkit, no communication): what the machine can give
K processes at the moment; on a shared, loaded machine it is below K and bounds the projection ratio.
No GPU on the machine this was written on: the NCCL path (``cuda:LOCAL_RANK`` per rank) is untested here.

Usage::

    python benchmarks/bench_distributed.py --images 24 --steps 30 --procs 2 --repeats 3

Writes ``benchmarks/results/bench_distributed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NET = REPO / "tests" / "data" / "reference-nets" / "sg2ada_uncond_map8_res32.pkl"


def worker(args: argparse.Namespace) -> None:
    """One rank: project the folder, write this rank's seconds to ``args.times/rank<R>.json``."""
    import torch

    from latentkit.distributed import init_distributed
    from latentkit.load import load_generator
    from latentkit.projection.batch import project_files
    from latentkit.projection.inputs import expand_inputs
    from latentkit.projection.settings import ProjectionSettings

    torch.set_num_threads(1)
    job = init_distributed("cpu")
    G = load_generator(args.network, device="cpu")
    settings = ProjectionSettings(num_steps=args.steps, perceptual=None, mse_weight=1.0, w_avg_samples=1000)
    files = expand_inputs([args.images])
    started = time.perf_counter()
    project_files(G, files, args.outdir, settings=settings, batch_size=args.batch_size, progress=False,
                  shard=job.shard)
    seconds = time.perf_counter() - started
    Path(args.times, f"rank{job.rank}.json").write_text(json.dumps({"seconds": seconds}))


_SPIN = (
    "import time, torch; torch.set_num_threads(1); a = torch.randn(256, 256); t = time.perf_counter()\n"
    "for _ in range(400): a = torch.tanh(a @ a)\n"
    "print(time.perf_counter() - t)"
)


def capacity(procs: int) -> float:
    """Work per second of ``procs`` simultaneous one-thread matmul loops, relative to one loop alone."""
    env = dict(os.environ, OMP_NUM_THREADS="1")

    def together(k: int) -> float:
        runs = [subprocess.Popen([sys.executable, "-c", _SPIN], env=env, stdout=subprocess.PIPE, text=True) for _ in range(k)]
        return max(float(r.communicate()[0]) for r in runs)

    return procs * together(1) / together(procs)


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(procs: int, images: Path, work: Path, args: argparse.Namespace, index: int) -> dict[str, float]:
    out, times = work / f"out-{procs}-{index}", work / f"times-{procs}-{index}"
    times.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(procs), "--master-addr",
           "127.0.0.1", "--master-port", str(_port()), __file__, "--worker", "--images", str(images), "--outdir",
           str(out), "--times", str(times), "--steps", str(args.steps), "--batch-size", str(args.batch_size),
           "--network", str(args.network)]
    started = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - started
    slowest = max(json.loads(p.read_text())["seconds"] for p in times.glob("rank*.json"))
    return {"in_run": args.images / slowest, "end_to_end": args.images / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--images", default=24)
    parser.add_argument("--outdir")
    parser.add_argument("--times")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--network", default=str(NET))
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    import numpy as np
    from PIL import Image

    args.images = int(args.images)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        images = work / "in"
        images.mkdir()
        rng = np.random.RandomState(0)
        for i in range(args.images):
            Image.fromarray(rng.randint(0, 255, (32, 32, 3), dtype=np.uint8)).save(images / f"img{i:04d}.png")
        rates: dict[int, list[dict[str, float]]] = {1: [], args.procs: []}
        control = []
        for index in range(args.repeats):
            for procs in (1, args.procs):  # interleaved
                rates[procs].append(run(procs, images, work, args, index))
            control.append(capacity(args.procs))
    median = {p: {k: statistics.median(r[k] for r in runs) for k in ("in_run", "end_to_end")} for p, runs in rates.items()}
    result = {
        "network": Path(args.network).name, "images": args.images, "steps": args.steps, "batch_size": args.batch_size,
        "threads_per_process": 1, "procs": args.procs, "repeats": args.repeats, "backend": "gloo (CPU)",
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "gpu": None},
        "images_per_s": {str(p): runs for p, runs in rates.items()},
        "median_images_per_s": {str(p): m for p, m in median.items()},
        "ratio": {k: median[args.procs][k] / median[1][k] for k in ("in_run", "end_to_end")},
        "capacity": {"runs": control, "median": statistics.median(control)},
        "load_average_at_end": os.getloadavg()[0],
    }
    path = REPO / "benchmarks" / "results" / "bench_distributed.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("median_images_per_s", "ratio", "capacity", "load_average_at_end")}, indent=2))


if __name__ == "__main__":
    main()
