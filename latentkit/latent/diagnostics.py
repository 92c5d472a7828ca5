"""How Gaussian is the Gaussianized W space? Diagnostics of a fitted :class:`~latentkit.latent.prior.GaussianPrior`.

For raw w and for v (the inverted activation) it reports per-dimension skewness and excess kurtosis
(both 0 for a Gaussian), and how well held-out squared Mahalanobis distances follow chi-square(w_dim):
a Kolmogorov-Smirnov statistic and quantiles side by side.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from latentkit.checks import check_plot_path
from latentkit.errors import InputError, ShapeError
from latentkit.latent.settings import DIAGNOSTIC_SAMPLES, PRIOR_BATCH_SIZE

if TYPE_CHECKING:
    from latentkit.nets.generator import Generator
    from latentkit.latent.prior import GaussianPrior

__all__ = ["PriorDiagnostics", "diagnose", "diagnose_generator", "QUANTILE_LEVELS"]

QUANTILE_LEVELS = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


@dataclass(frozen=True)
class PriorDiagnostics:
    """Gaussianity of w and v on held-out samples.

    Attributes:
        n_samples: number of W vectors examined.
        w_dim: their dimension.
        skew_w, skew_v: ``[w_dim]`` skewness per coordinate of w and of v.
        kurtosis_w, kurtosis_v: ``[w_dim]`` excess kurtosis per coordinate (0 for a Gaussian).
        mahalanobis_sq: ``[n_samples]`` squared Mahalanobis distances under the prior.
        ks_statistic, ks_pvalue: Kolmogorov-Smirnov test of ``mahalanobis_sq`` against chi-square(w_dim).
        quantile_levels: probabilities, e.g. ``(0.01, ..., 0.99)``.
        observed_quantiles, expected_quantiles: ``[len(quantile_levels)]`` of ``mahalanobis_sq`` and of
            chi-square(w_dim).
        explained_variance: ``[w_dim]`` the prior's eigenvalues (descending), for the spectrum plot.
        n_floored: how many of them the prior floored.
    """

    n_samples: int
    w_dim: int
    skew_w: np.ndarray
    skew_v: np.ndarray
    kurtosis_w: np.ndarray
    kurtosis_v: np.ndarray
    mahalanobis_sq: np.ndarray
    ks_statistic: float
    ks_pvalue: float
    quantile_levels: tuple[float, ...]
    observed_quantiles: np.ndarray
    expected_quantiles: np.ndarray
    explained_variance: np.ndarray
    n_floored: int

    def summary(self) -> dict[str, Any]:
        """Scalars only (JSON-ready): mean |skewness| and |excess kurtosis| for w and v, KS, quantiles."""
        return {
            "n_samples": self.n_samples,
            "w_dim": self.w_dim,
            "mean_abs_skew_w": float(np.abs(self.skew_w).mean()),
            "mean_abs_skew_v": float(np.abs(self.skew_v).mean()),
            "mean_abs_kurtosis_w": float(np.abs(self.kurtosis_w).mean()),
            "mean_abs_kurtosis_v": float(np.abs(self.kurtosis_v).mean()),
            "ks_statistic": self.ks_statistic,
            "ks_pvalue": self.ks_pvalue,
            "quantiles": {
                f"{q:g}": {"observed": float(o), "chi2": float(e)}
                for q, o, e in zip(self.quantile_levels, self.observed_quantiles, self.expected_quantiles)
            },
            "condition_number": float(self.explained_variance[0] / self.explained_variance[-1]),
            "n_floored": self.n_floored,
        }

    def to_dict(self) -> dict[str, Any]:
        """Every field, arrays as lists."""
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in asdict(self).items()}

    def plot(self, path: str | os.PathLike) -> Path:
        """Save a 2x3 figure (PNG/PDF/SVG by suffix): skewness and kurtosis histograms for w and v,
        chi-square Q-Q plot and histogram of the distances, and the eigenvalue spectrum. Needs matplotlib.

        Raises:
            InputError: if matplotlib is not installed.
        """
        try:
            import matplotlib

            matplotlib.use("Agg", force=False)
            from matplotlib.figure import Figure
        except ImportError as err:
            raise InputError(
                "plotting the prior diagnostics needs matplotlib: pip install 'latentkit[plot]'"
            ) from err
        from scipy import stats

        from latentkit.files import atomic_path

        fig = Figure(figsize=(15, 8.5))
        ax = fig.subplots(2, 3)
        fig.subplots_adjust(left=0.05, right=0.98, top=0.95, bottom=0.07, wspace=0.25, hspace=0.3)
        for a, (name, w_vals, v_vals) in zip(
            ax[0, :2],
            [("skewness", self.skew_w, self.skew_v), ("excess kurtosis", self.kurtosis_w, self.kurtosis_v)],
        ):
            lo = min(w_vals.min(), v_vals.min())
            hi = max(w_vals.max(), v_vals.max())
            bins = np.linspace(lo, hi, 50) if hi > lo else 10
            a.hist(w_vals, bins=bins, alpha=0.6, label=f"w (mean |.| {np.abs(w_vals).mean():.3g})")
            a.hist(v_vals, bins=bins, alpha=0.6, label=f"v (mean |.| {np.abs(v_vals).mean():.3g})")
            a.axvline(0, color="k", lw=0.8)
            a.set(title=f"{name} per dimension", xlabel=name, ylabel="dimensions")
            a.legend()
        d2 = np.sort(self.mahalanobis_sq)
        chi2 = stats.chi2(self.w_dim)
        probs = (np.arange(1, len(d2) + 1) - 0.5) / len(d2)
        a = ax[0, 2]
        a.plot(chi2.ppf(probs), d2, ".", ms=2)
        lims = [chi2.ppf(probs[0]), chi2.ppf(probs[-1])]
        a.plot(lims, lims, "k--", lw=0.8)
        a.set_xscale("log")
        a.set_yscale("log")
        a.set(title=f"Q-Q vs chi2({self.w_dim}), KS = {self.ks_statistic:.3f}", xlabel="chi2 quantile",
              ylabel="squared Mahalanobis (held out)")
        a = ax[1, 0]
        hi = max(np.quantile(d2, 0.995), chi2.ppf(0.999))
        a.hist(d2, bins=np.linspace(0, hi, 60), density=True, alpha=0.6, label="held-out v (to 99.5%)")
        grid = np.linspace(0, hi, 400)
        a.plot(grid, chi2.pdf(grid), "k", label=f"chi2({self.w_dim})")
        a.set(title="squared Mahalanobis distance", xlabel="d^2", ylabel="density")
        a.legend()
        a = ax[1, 1]
        a.semilogy(np.arange(1, self.w_dim + 1), self.explained_variance)
        a.set(title=f"eigenvalues of cov(v) ({self.n_floored} floored)", xlabel="component", ylabel="variance")
        a = ax[1, 2]
        a.axis("off")
        rows = [f"{q:>5g}  {o:10.1f}  {e:10.1f}" for q, o, e in
                zip(self.quantile_levels, self.observed_quantiles, self.expected_quantiles)]
        a.text(0, 1, "quantile  observed    chi2\n" + "\n".join(rows) + f"\n\nN = {self.n_samples}",
               family="monospace", va="top")
        path = Path(path)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=check_plot_path(path), dpi=100)
        return path


def diagnose(
    prior: GaussianPrior,
    ws: torch.Tensor,
    *,
    quantile_levels: tuple[float, ...] = QUANTILE_LEVELS,
) -> PriorDiagnostics:
    """Gaussianity diagnostics of ``prior`` on held-out W vectors (not those it was fitted on).

    Distances are computed in float64.

    Args:
        prior: a fitted prior.
        ws: ``[N, w_dim]`` or ``[N, num_ws, w_dim]`` (every vector is used), ``N >= 8``.
        quantile_levels: probabilities at which to compare the distances with chi-square(w_dim).

    Returns:
        :class:`PriorDiagnostics`.

    Raises:
        ShapeError: wrong shape or fewer than 8 vectors.
        NotFittedError: unfitted prior.
    """
    from scipy import stats

    prior.check_w(ws, "ws")
    w = ws.detach().reshape(-1, prior.w_dim).to("cpu", torch.float64)  # [N, w_dim]
    if w.shape[0] < 8:
        raise ShapeError(f"diagnostics need at least 8 held-out W vectors, got {w.shape[0]}")
    if not all(0 < q < 1 for q in quantile_levels):
        raise InputError(f"quantile_levels must lie in (0, 1), got {quantile_levels}")
    v = prior.transform(w)
    d2 = prior.mahalanobis(w).numpy()
    w_np, v_np = w.numpy(), v.numpy()
    chi2 = stats.chi2(prior.w_dim)
    ks = stats.kstest(d2, chi2.cdf)
    levels = tuple(float(q) for q in quantile_levels)
    return PriorDiagnostics(
        n_samples=int(w.shape[0]),
        w_dim=prior.w_dim,
        skew_w=stats.skew(w_np, axis=0),
        skew_v=stats.skew(v_np, axis=0),
        kurtosis_w=stats.kurtosis(w_np, axis=0, fisher=True),
        kurtosis_v=stats.kurtosis(v_np, axis=0, fisher=True),
        mahalanobis_sq=d2,
        ks_statistic=float(ks.statistic),
        ks_pvalue=float(ks.pvalue),
        quantile_levels=levels,
        observed_quantiles=np.quantile(d2, levels),
        expected_quantiles=chi2.ppf(levels),
        explained_variance=prior.explained_variance_.numpy().copy(),
        n_floored=prior.n_floored_,
    )


def diagnose_generator(
    prior: GaussianPrior,
    G: Generator,
    n_samples: int = DIAGNOSTIC_SAMPLES,
    *,
    seed: int = 2,
    classes: Sequence[int] | None = None,
    batch_size: int = PRIOR_BATCH_SIZE,
    device: torch.device | str | None = None,
) -> PriorDiagnostics:
    """:func:`diagnose` on ``n_samples`` fresh mapping outputs of ``G``.

    Pick a ``seed`` the prior was not fitted with: :meth:`GaussianPrior.from_generator` uses ``seed``
    (z) and ``seed + 1`` (classes), so ``fit seed + 2`` (the default for a fit with seed 0) is held out.

    Args:
        prior: a fitted prior of ``G``.
        G: the generator.
        n_samples: held-out samples (>= 8).
        seed, classes, batch_size, device: as :func:`latentkit.latent.prior.iter_mapping`.

    Returns:
        :class:`PriorDiagnostics`.
    """
    from latentkit.latent.sampling import sample_w

    ws = sample_w(G, n_samples, batch_size=batch_size, seed=seed, classes=classes, device=device)
    return diagnose(prior, ws)
