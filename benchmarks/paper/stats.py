"""The statistics behind every verdict of the paper report: paired t, jackknife, power (numpy/scipy only).

A verdict is never stronger than its test: a claimed direction "holds" only where the two-sided 95 %
confidence interval of the paired difference excludes 0 on the claimed side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05


@dataclass(frozen=True)
class Paired:
    """A paired comparison ``b - a`` over n units (targets, pairs or samples)."""

    n: int
    mean: float
    se: float
    lo: float
    hi: float
    p: float

    def cell(self, digits: int = 3) -> str:
        if self.n == 0:
            return "n = 0"
        if self.n < 2:
            return f"{self.mean:+.{digits}g} (n = {self.n}, no test)"
        return (f"{self.mean:+.{digits}g} [{self.lo:+.{digits}g}, {self.hi:+.{digits}g}], "
                f"p = {self.p:.2g}, n = {self.n}")

    def verdict(self, claim: str) -> str:
        """``claim``: 'lower', 'higher' (b versus a) or 'none' (two-sided: only whether it differs)."""
        if self.n < 2:
            return f"no test (n = {self.n})"
        below, above = self.hi < 0, self.lo > 0
        if claim == "none":
            return "b lower than a" if below else "b higher than a" if above else "no difference shown"
        if (claim == "lower" and below) or (claim == "higher" and above):
            return "holds"
        if below or above:
            return "opposite"
        return "not established"


def paired(a, b) -> Paired:
    """Paired t on ``b - a`` (NaN units dropped): mean, SE, 95 % CI and two-sided p."""
    d = np.asarray(b, np.float64) - np.asarray(a, np.float64)
    d = d[np.isfinite(d)]
    n = int(d.size)
    if n == 0:
        return Paired(0, float("nan"), float("nan"), float("nan"), float("nan"), float("nan"))
    mean = float(d.mean())
    if n < 2:
        return Paired(n, mean, float("nan"), float("nan"), float("nan"), float("nan"))
    se = float(d.std(ddof=1) / np.sqrt(n))
    if se == 0:
        return Paired(n, mean, 0.0, mean, mean, 0.0 if mean != 0 else 1.0)
    q = stats.t.ppf(1 - ALPHA / 2, n - 1)
    p = float(2 * stats.t.sf(abs(mean / se), n - 1))
    return Paired(n, mean, se, mean - q * se, mean + q * se, p)


def from_estimate(mean: float, se: float, n: int) -> Paired:
    """A difference with a jackknife/bootstrap SE: normal 95 % CI and two-sided p (n recorded, not used)."""
    if not np.isfinite(se) or se <= 0:
        return Paired(n, mean, se, float("nan"), float("nan"), float("nan"))
    z = stats.norm.ppf(1 - ALPHA / 2)
    return Paired(n, mean, se, mean - z * se, mean + z * se, float(2 * stats.norm.sf(abs(mean / se))))


def mean_se(x) -> tuple[float, float, int]:
    a = np.asarray([v for v in x if v is not None], np.float64)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return float("nan"), float("nan"), 0
    return float(a.mean()), float(a.std(ddof=1) / np.sqrt(a.size)) if a.size > 1 else float("nan"), int(a.size)


def pm(x, digits: int = 4) -> str:
    m, s, n = mean_se(x)
    if n == 0:
        return "-"
    return f"{m:.{digits}g}" + (f" ± {s:.2g}" if np.isfinite(s) else "")


def pairwise_matrix(pairs: list[float], m: int) -> np.ndarray:
    """The symmetric ``[m, m]`` matrix of values given in ``itertools.combinations(range(m), 2)`` order."""
    out = np.full((m, m), np.nan)
    iu = np.triu_indices(m, 1)
    out[iu] = pairs
    out.T[iu] = pairs
    return out


def pairwise_mean(mat: np.ndarray, keep: np.ndarray | None = None) -> float:
    sub = mat if keep is None else mat[np.ix_(keep, keep)]
    iu = np.triu_indices(len(sub), 1)
    return float(np.nanmean(sub[iu]))


def jackknife(stat, m: int) -> tuple[float, float]:
    """``stat(keep)`` on all m samples, and its jackknife SE over leave-one-sample-out subsets."""
    full = stat(np.arange(m))
    loo = np.array([stat(np.delete(np.arange(m), i)) for i in range(m)])
    return float(full), float(np.sqrt((m - 1) / m * ((loo - loo.mean()) ** 2).sum()))


def n_for_power(dz: float, power: float = 0.8, alpha: float = ALPHA, n_max: int = 10_000) -> int:
    """Smallest n for which a two-sided paired t at ``alpha`` detects a standardised effect ``dz`` with ``power``."""
    dz = abs(dz)
    if not np.isfinite(dz) or dz == 0:
        return n_max
    for n in range(2, n_max):
        q = stats.t.ppf(1 - alpha / 2, n - 1)
        nc = dz * np.sqrt(n)
        if stats.nct.sf(q, n - 1, nc) + stats.nct.cdf(-q, n - 1, nc) >= power:
            return n
    return n_max
