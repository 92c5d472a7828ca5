"""One rank of a torchrun job running several ``latentkit`` commands in one process (started by
test_distributed.py; one job instead of one per command keeps the test short).

Usage: torchrun --nproc-per-node 2 ... cli_worker.py '[["fit-prior", ...], ["project", ...]]'
"""

from __future__ import annotations

import json
import sys

import torch

from latentkit.cli import main

if __name__ == "__main__":
    torch.set_num_threads(1)
    for args in json.loads(sys.argv[1]):
        main(args, prog_name="latentkit", standalone_mode=False)
