"""One rank of a torchrun job projecting a folder through the API (started by test_distributed.py).

Usage: torchrun --nproc-per-node 2 ... project_worker.py NETWORK IMAGES OUTDIR [--batch-size B] [--die-rank R]
``--die-rank R``: rank R exits abruptly (os._exit) right after its first image, as a crashed rank would.
"""

from __future__ import annotations

import argparse
import os

import torch

from latentkit.distributed import init_distributed
from latentkit.load import load_generator
from latentkit.projection.batch import project_files
from latentkit.projection.inputs import expand_inputs
from latentkit.projection.settings import ProjectionSettings

FAST = ProjectionSettings(num_steps=3, perceptual=None, mse_weight=1.0, w_avg_samples=64)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("network")
    parser.add_argument("images")
    parser.add_argument("outdir")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--die-rank", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    job = init_distributed("cpu")
    G = load_generator(args.network, device=job.device)

    def on_image(record) -> None:
        if job.rank == args.die_rank:
            os._exit(3)

    records = project_files(G, expand_inputs([args.images]), args.outdir, settings=FAST, batch_size=args.batch_size,
                            progress=False, on_image=on_image, shard=job.shard)
    assert len(records) == len(expand_inputs([args.images]))


if __name__ == "__main__":
    main()
