"""Make the prior file shipped with latentkit for the default offline network (``mobilestylegan-ffhq``).

It is exactly what ``cached_prior(G)`` fits on first use (100 000 mapped samples, z seed 0, float64
statistics), stored as float32 (1 MiB instead of 2) so the first ``latentkit project`` starts in seconds.
Run: ``nice -n 19 python benchmarks/make_shipped_prior.py``; then record the printed sha256 in
``latentkit/latent/prior_cache.py`` (``SHIPPED_PRIORS``).
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from latentkit.latent.prior import DEFAULT_CACHED_SAMPLES, GaussianPrior
    from latentkit.latent.prior_cache import prior_cache_path, shipped_prior_dir
    from latentkit.latent.prior_file import read_prior_file, write_prior_file
    from latentkit.load import load_generator

    started = time.time()
    G = load_generator("mobilestylegan-ffhq")
    prior = GaussianPrior.from_generator(G, DEFAULT_CACHED_SAMPLES, seed=0)
    out = shipped_prior_dir() / prior_cache_path(G).name
    tmp = out.with_suffix(".f64.npz")
    prior.save(tmp)
    mean, cov, meta = read_prior_file(tmp)
    meta = {k: v for k, v in meta.items() if k != "radius" or v is not None}
    write_prior_file(out, mean.astype(np.float32), cov.astype(np.float32), meta)
    tmp.unlink()
    read_prior_file(out)  # validates the float32 file
    print(out, hashlib.sha256(out.read_bytes()).hexdigest(), f"{out.stat().st_size} bytes",
          f"{time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
