"""Is the cost line of ``latentkit project`` right? The announced seconds per step against the measured median.

On the real default network (``mobilestylegan-ffhq``, offline), with the default prior and LPIPS weights,
as ``latentkit project examples/face.png`` runs: the estimate of
:func:`latentkit.projection.batch.estimate_step_seconds` (median of timed steps after a warm-up), the old
rule (the second of two steps) for comparison, then a real run of ``--steps`` steps timed step by step.
Acceptance (issue 26): the estimate within 1.5x of the measured median step time. Each repeat measures
both again. JSON goes to ``benchmarks/results/bench_estimate.json``.

Usage (slow: about 15 steps of the 1024 px model per repeat)::

    nice -n 19 python benchmarks/bench_estimate.py --steps 8 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from machine import cpu_model

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"


def _load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="mobilestylegan-ffhq")
    parser.add_argument("--image", default=str(REPO / "examples" / "face.png"))
    parser.add_argument("--steps", type=int, default=8, help="steps of the measured run")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "bench_estimate.json"))
    args = parser.parse_args()

    from latentkit.latent.prior_cache import cached_prior
    from latentkit.load import load_generator
    from latentkit.projection.batch import estimate_step_seconds
    from latentkit.projection.lpips import lpips_vgg
    from latentkit.projection.project import prepare_targets, project
    from latentkit.projection.settings import ProjectionSettings

    started = time.time()
    G = load_generator(args.network)
    prior = cached_prior(G)
    settings = ProjectionSettings(num_steps=args.steps)
    net = lpips_vgg(settings.perceptual_weights, max_resolution=settings.max_perceptual_resolution)
    target = prepare_targets(G, [args.image])
    report = {"network": args.network, "cpu": cpu_model(), "threads": torch.get_num_threads(),
              "nice": os.nice(0), "steps": args.steps, "setup_seconds": round(time.time() - started, 1), "repeats": []}
    for repeat in range(args.repeats):
        load_before = _load_average()
        old = estimate_step_seconds(G, target, settings, prior=prior, perceptual_net=net, warmup=1, timed=1)
        new = estimate_step_seconds(G, target, settings, prior=prior, perceptual_net=net)
        ends = [time.perf_counter()]
        project(G, target, settings=settings, prior=prior, perceptual_net=net, progress=False,
                callback=lambda step, ws: ends.append(time.perf_counter()))
        steps = [b - a for a, b in zip(ends, ends[1:])]  # steps[0] includes the run's set-up
        median = statistics.median(steps[1:])
        row = {"estimate_s": round(new, 3), "old_estimate_s": round(old, 3), "measured_median_s": round(median, 3),
               "measured_steps_s": [round(x, 3) for x in steps], "ratio": round(new / median, 3),
               "old_ratio": round(old / median, 3), "within_1_5x": 1 / 1.5 <= new / median <= 1.5,
               "load_average_before": load_before, "load_average_after": _load_average()}
        report["repeats"].append(row)
        print(json.dumps(row), flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    new = ", ".join(f"{r['ratio']:.2f}x" for r in report["repeats"])
    old = ", ".join(f"{r['old_ratio']:.2f}x" for r in report["repeats"])
    print(f"estimate / measured median: {new} (old rule, the second of two steps: {old})")


if __name__ == "__main__":
    main()
