"""How latent guidance moves latents, measured on the conditional reference networks.

For each conditional net in tests/data/reference-nets, class means ``mu_k = mean_z M(z, k)`` are
estimated from ``--fit`` seeded z per class (W space, psi = 1, first W+ row). Then, for ``--n`` other z
per class and each guidance scale s, the guided latent ``w_g = w_marg + s (M(z, c) - w_marg)`` is scored by

* ``d_class``: mean distance to its own class mean ``mu_c``;
* ``d_marginal``: mean distance to the marginal mean (mean of the class means);
* ``nearest_class_acc``: fraction of samples whose nearest class mean is their own class;
* ``calls``: mapping-network evaluations per sample.

These are random (perturbed-init) networks, so the numbers show the geometry of the operation, not image
quality; FID against real data needs a real checkpoint (examples/guidance_fid.py).

    python benchmarks/bench_guidance.py [--n 200] [--fit 2000]

Prints a table and writes benchmarks/results/bench_guidance.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from latentkit import load_generator
from latentkit.latent.guide import guided_latents
from latentkit.latent.sampling import one_hot

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_NETS = ROOT / "tests" / "data" / "reference-nets"
RESULTS = ROOT / "benchmarks" / "results" / "bench_guidance.json"
NETS = ("sg2ada_cond_map2_res32.pkl", "sg3r_cond_res32.pkl", "sgxl_cond_t_res16.pkl")
SCALES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)


@torch.no_grad()
def measure(name: str, n: int, fit: int) -> dict:
    G = load_generator(REFERENCE_NETS / name)
    gen = torch.Generator().manual_seed(0)
    means = []
    for k in range(G.c_dim):
        z = torch.randn(fit, G.z_dim, generator=gen)
        means.append(G.mapping(z, one_hot([k] * fit, G.c_dim))[:, 0].mean(0))
    mu = torch.stack(means)  # [c_dim, w_dim]
    mu_marg = mu.mean(0)
    z = torch.randn(n * G.c_dim, G.z_dim, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(G.c_dim).repeat_interleave(n)
    rows = []
    for s in SCALES:
        res = guided_latents(G, z, labels, scale=s)
        w = res.ws[:, 0]  # [N, w_dim]
        d_class = (w - mu[labels]).norm(dim=1).mean().item()
        d_marg = (w - mu_marg).norm(dim=1).mean().item()
        acc = (torch.cdist(w, mu).argmin(1) == labels).float().mean().item()
        rows.append({"scale": s, "d_class": d_class, "d_marginal": d_marg, "nearest_class_acc": acc,
                     "calls": res.mapping_calls_per_sample})
    return {"net": name, "architecture": G.architecture, "c_dim": G.c_dim, "samples": n * G.c_dim, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="test samples per class")
    parser.add_argument("--fit", type=int, default=2000, help="samples per class for the class means")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = []
    for name in NETS:
        out = measure(name, args.n, args.fit)
        results.append(out)
        print(f"\n{name} ({out['architecture']}, {out['c_dim']} classes, {out['samples']} samples)")
        print(f"{'s':>5} {'d_class':>9} {'d_marginal':>11} {'nearest-class acc':>18} {'calls':>6}")
        for r in out["rows"]:
            print(f"{r['scale']:>5.1f} {r['d_class']:>9.3f} {r['d_marginal']:>11.3f} {r['nearest_class_acc']:>18.3f} "
                  f"{r['calls']:>6d}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"n_per_class": args.n, "fit_per_class": args.fit, "results": results}, indent=1))
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
