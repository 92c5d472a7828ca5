"""Wall time of ``python -m latentkit --help`` and of each command's ``--help`` (fresh interpreters), with
the cost of ``import torch`` alone beside it: what ``--help`` would take if it still imported torch.

Runs alternate (help, a command's help, import torch) ``--repeats`` times so load from other processes hits
all of them; medians are reported. Nothing here asserts a time.

Usage::

    python benchmarks/bench_cli_help.py --repeats 5

Writes ``benchmarks/results/bench_cli_help.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bench_cli_help.json"


def _seconds(args: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, capture_output=True, env=env, cwd=ROOT)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--commands", default="project,compress,tradeoff", help="Commands whose --help is timed.")
    args = parser.parse_args()
    runs: dict[str, list[float]] = {"python -c pass": [], "latentkit --help": [], "import torch": []}
    commands = [c for c in args.commands.split(",") if c]
    runs.update({f"latentkit {c} --help": [] for c in commands})
    for _ in range(args.repeats):
        runs["python -c pass"].append(_seconds(["-c", "pass"]))
        runs["latentkit --help"].append(_seconds(["-m", "latentkit", "--help"]))
        for c in commands:
            runs[f"latentkit {c} --help"].append(_seconds(["-m", "latentkit", c, "--help"]))
        runs["import torch"].append(_seconds(["-c", "import torch"]))
    medians = {k: statistics.median(v) for k, v in runs.items()}
    for name, sec in medians.items():
        print(f"{name:32s} {sec * 1000:8.0f} ms (median of {args.repeats})")
    print(f"--help / import torch: {medians['latentkit --help'] / medians['import torch']:.2f}")
    out = {"medians_s": medians, "runs_s": runs, "python": platform.python_version(), "machine": platform.machine(),
           "load_average": os.getloadavg(), "cpus": os.cpu_count()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
