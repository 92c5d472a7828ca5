"""Delta sizes by rank on the real default model (no tuning): which weights pivotal tuning updates and how
many bytes a delta of each rank takes, against the generator's float32 parameter bytes.

    nice -n 19 python benchmarks/bench_tune_sizes.py   # -> benchmarks/results/bench_tune_sizes.json
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

OUT = Path(__file__).resolve().parent / "results" / "bench_tune_sizes.json"


def main() -> None:
    from latentkit.load import load_generator
    from latentkit.projection.delta import tunable_parameters
    from latentkit.projection.tune import delta_bytes

    started = time.time()
    G = load_generator("mobilestylegan-ffhq")
    ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(0)))
    params = dict(G.named_parameters(remove_duplicate=False))
    base = {name: params[name] for name in tunable_parameters(G, ws)}
    total = 4 * sum(p.numel() for p in G.parameters())
    out = {"network": "mobilestylegan-ffhq", "parameter_bytes": total, "tuned_parameters": len(base),
           "tuned_parameter_bytes": 4 * sum(p.numel() for p in base.values()),
           "delta_bytes_by_rank": {str(r): delta_bytes(base, r) for r in (0, 1, 2, 4, 8, 16)}}
    out["percent_by_rank"] = {r: round(100 * b / total, 3) for r, b in out["delta_bytes_by_rank"].items()}
    out["seconds"] = round(time.time() - started, 1)
    print(json.dumps(out), flush=True)
    OUT.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
