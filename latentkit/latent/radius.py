"""Priors that also model the radius: the Gaussianized W's squared Mahalanobis distances are not chi-square.

On held-out samples the distances spread far wider than chi-square(w_dim) (MobileStyleGAN FFHQ: 5-95 %
321-800 against 461-566). :class:`StudentTRadius` keeps the Gaussian prior's mean and covariance shape
and fits a multivariate Student-t's degrees of freedom nu by maximum likelihood; its covariance equals
the Gaussian's (scale matrix ``Sigma * (nu - 2) / nu``), so only the radial law changes: under it
``d2 * nu / ((nu - 2) * w_dim)`` follows F(w_dim, nu). On held-out samples it wins by several nats per
sample (Table 1 of ``benchmarks/paper``), so it is an option of projection: ``latentkit project
--prior-radius student-t``, or ``prior=cached_prior(G, radius="student-t")`` in the API. Its
``penalty`` returns twice its negative log density up to a constant, and it has the Gaussian's
``coefficients``/``from_coefficients`` (a :class:`~latentkit.latent.prior_protocol.WhitenedPrior`), so
:func:`~latentkit.projection.project.project` uses it as ``prior=`` with either parametrization (in the whitened coefficients u the penalty is
:meth:`StudentTRadius.radius_penalty` of ``|u|^2``).

nu is fitted on held-out mapped samples (:func:`fit_student_t`, z stream seeded apart from the prior's
fit) and stored in the prior file's optional ``radius`` field (:meth:`StudentTRadius.save`,
:meth:`StudentTRadius.load`; see :mod:`latentkit.latent.prior_file`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from latentkit.checks import check_finite
from latentkit.errors import InputError, NotFittedError
from latentkit.latent.prior_file import MIN_RADIUS_SAMPLES, check_nu
from latentkit.latent.settings import DEFAULT_NU_SAMPLES, NU_SEED_OFFSET, RADIUS_MODEL, RADIUS_MODELS

if TYPE_CHECKING:
    from latentkit.latent.prior import GaussianPrior
    from latentkit.latent.prior_protocol import LatentPrior
    from latentkit.nets.generator import Generator

__all__ = ["DEFAULT_NU_SAMPLES", "NU_SEED_OFFSET", "RADIUS_MODELS", "RadiusComparison", "StudentTRadius",
           "compare_radius_models", "describe_radius", "fit_student_t", "gaussian_radius_loglik", "load_student_t",
           "radius_key", "student_t_radius_loglik"]



def gaussian_radius_loglik(d2: np.ndarray, dim: int) -> np.ndarray:
    """Per-sample log density (nats) of the Gaussian, up to the terms shared with the t (log-det, Jacobian)."""
    return -0.5 * dim * math.log(2 * math.pi) - 0.5 * d2


def student_t_radius_loglik(d2: np.ndarray, dim: int, nu: float) -> np.ndarray:
    """Per-sample log density of the covariance-matched multivariate t, same shared terms left out.

    ``d2`` are the Gaussian prior's squared Mahalanobis distances; the t's scale matrix is
    ``Sigma (nu - 2) / nu`` (needs ``nu > 2``).
    """
    from scipy.special import gammaln

    r = (nu - 2.0) / nu
    d2t = d2 / r
    return (gammaln((nu + dim) / 2) - gammaln(nu / 2) - 0.5 * dim * math.log(nu * math.pi)
            - 0.5 * dim * math.log(r) - 0.5 * (nu + dim) * np.log1p(d2t / nu))


def _fit_nu(d2: np.ndarray, dim: int) -> float:
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(lambda lg: -float(student_t_radius_loglik(d2, dim, 2.0 + math.exp(lg)).mean()),
                          bounds=(-6.0, 12.0), method="bounded")
    return 2.0 + math.exp(float(res.x))


class StudentTRadius:
    """A multivariate Student-t in v with the Gaussian prior's mean and covariance and a fitted nu.

    Args:
        prior: a fitted :class:`~latentkit.latent.prior.GaussianPrior` (its mean and covariance are kept).

    Attributes (after :meth:`fit`, :meth:`from_nu` or :meth:`load`):
        nu_: degrees of freedom, > 2.
        n_fit_: W vectors nu was fitted on (0 when given by :meth:`from_nu` without a count).
        fit_seed_: seed of their z stream (:func:`fit_student_t`), None when unknown.

    Example:
        >>> t = fit_student_t(cached_prior(G), G)                      # doctest: +SKIP
        >>> project(G, "face.png", prior=t)                            # doctest: +SKIP
    """

    def __init__(self, prior: GaussianPrior) -> None:
        self.prior = prior

    def fit(self, ws: torch.Tensor) -> StudentTRadius:
        """Fit nu by maximum likelihood on W vectors ``[N, w_dim]`` or ``[N, num_ws, w_dim]`` (each vector
        counts; use samples the prior was not fitted on).

        Raises:
            InputError: fewer than 8 W vectors, or non-finite values.
            ShapeError: ``ws`` not a tensor ``[..., w_dim]``.
        """
        self.prior.check_w(ws, "ws")
        check_finite(ws, "ws")
        d2 = self.prior.mahalanobis(ws.detach().to(torch.float64)).reshape(-1).cpu().numpy()
        return self._fit_d2(d2, None)

    def _fit_d2(self, d2: np.ndarray, seed: int | None) -> StudentTRadius:
        if d2.size < MIN_RADIUS_SAMPLES:
            raise InputError(f"fitting nu needs at least {MIN_RADIUS_SAMPLES} W vectors, got {d2.size}")
        self.nu_ = _fit_nu(d2, self.prior.w_dim)
        self.n_fit_, self.fit_seed_ = int(d2.size), seed
        return self

    @classmethod
    def from_nu(cls, prior: GaussianPrior, nu: float, *, n_fit: int = 0, seed: int | None = None) -> StudentTRadius:
        """A Student-t radius prior with a known ``nu`` (> 2) around ``prior``; ``n_fit`` and ``seed`` are
        recorded as provenance only.

        Raises:
            InputError: ``nu`` not a finite number > 2.
        """
        model = cls(prior)
        model.nu_, model.n_fit_, model.fit_seed_ = check_nu(nu), int(n_fit), seed
        return model

    def __repr__(self) -> str:
        state = f", nu_={self.nu_:.4g}, n_fit_={self.n_fit_}" if hasattr(self, "nu_") else ""
        return f"StudentTRadius({self.prior!r}{state})"

    def _require_fitted(self) -> None:
        if not hasattr(self, "nu_"):
            raise NotFittedError("StudentTRadius is not fitted: call fit(ws), fit_student_t(prior, G) or "
                                 "StudentTRadius.load(path) first")

    @property
    def w_dim(self) -> int:
        """Dimension of W."""
        return self.prior.w_dim

    @property
    def mean_(self) -> torch.Tensor:
        """The Gaussian prior's mean of v ``[w_dim]`` (float64 CPU), shared by the t."""
        return self.prior.mean_

    def coefficients(self, w: torch.Tensor) -> torch.Tensor:
        """The Gaussian prior's whitened coefficients ``[..., w_dim] -> [..., w_dim]`` (same mean and axes),
        for ``parametrization='prior'``; the t's penalty of them is :meth:`radius_penalty` of ``|u|^2``."""
        return self.prior.coefficients(w)

    def from_coefficients(self, u: torch.Tensor) -> torch.Tensor:
        """The Gaussian prior's map from whitened coefficients to W (same mean and axes), for ``start='prior_mean'``."""
        return self.prior.from_coefficients(u)

    def radius_penalty(self, d2: torch.Tensor) -> torch.Tensor:
        """``(nu + w_dim) * log(1 + d2 / (nu - 2))`` of squared Gaussian Mahalanobis distances ``d2 [...]``:
        twice the t's negative log density up to a constant; about ``d2`` near the mode for large nu.
        Its gradient is the Gaussian's scaled by ``(nu + w_dim) / (nu - 2 + d2)``. Differentiable."""
        self._require_fitted()
        return (self.nu_ + self.w_dim) * torch.log1p(d2 / (self.nu_ - 2.0))

    def penalty(self, w: torch.Tensor) -> torch.Tensor:
        """The Student-t penalty of W vectors: :meth:`radius_penalty` of the Gaussian prior's squared
        Mahalanobis distance, the t's counterpart of ``d2`` for the projector's prior term;
        ``[..., w_dim] -> [...]``, differentiable. (It was called ``mahalanobis``, which it is not.)"""
        self._require_fitted()
        return self.radius_penalty(self.prior.mahalanobis(w))

    def radius_info(self) -> dict[str, Any]:
        """``{"model": "student-t", "nu", "n_fit", "seed"}``: the prior file's ``radius`` field and what the
        projector's outputs record."""
        self._require_fitted()
        return {"model": RADIUS_MODEL, "nu": float(self.nu_), "n_fit": int(self.n_fit_), "seed": self.fit_seed_}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the Gaussian prior's file with nu in its optional ``radius`` field (atomically).

        ``GaussianPrior.load`` reads the file as the plain Gaussian; :meth:`load` reads it back as the t.

        Raises:
            InputError: ``n_fit_`` below 8 (a nu given by :meth:`from_nu` without its sample count).
        """
        from latentkit.latent.prior_file import write_prior_file

        info = self.radius_info()
        if info["n_fit"] < MIN_RADIUS_SAMPLES:
            raise InputError(f"cannot save a nu fitted on {info['n_fit']} W vectors (at least {MIN_RADIUS_SAMPLES}): "
                             "pass n_fit= to StudentTRadius.from_nu, or fit it with fit_student_t(prior, G)")
        meta = {**self.prior.metadata(), "radius": info}
        return write_prior_file(path, self.prior.mean_.numpy(), self.prior.covariance_.numpy(), meta)

    @classmethod
    def load(cls, path: str | os.PathLike) -> StudentTRadius:
        """Read a prior file that holds nu (written by :meth:`save` or ``latentkit fit-prior --radius student-t``).

        Raises:
            InputError: an unreadable or invalid prior file (see ``GaussianPrior.load``), or one without nu.
        """
        from latentkit.latent.prior import GaussianPrior
        from latentkit.latent.prior_file import read_prior_file

        radius = read_prior_file(path)[2]["radius"]
        if radius is None:
            raise InputError(
                f"{path} is a Gaussian prior without a Student-t nu (no metadata field 'radius'): write one with "
                "`latentkit fit-prior --radius student-t`, or fit nu with fit_student_t(prior, G)"
            )
        return cls.from_nu(GaussianPrior.load(path), radius["nu"], n_fit=radius["n_fit"], seed=radius["seed"])


def fit_student_t(
    prior: GaussianPrior,
    G: Generator,
    *,
    n_samples: int = DEFAULT_NU_SAMPLES,
    seed: int = NU_SEED_OFFSET,
    batch_size: int = 10_000,
    device: torch.device | str | None = None,
) -> StudentTRadius:
    """Fit the t's nu on ``n_samples`` held-out mapping outputs of ``G`` (streamed, never all held).

    The z stream is seeded ``seed``, which must differ from the seed the prior was fitted with (the
    defaults: prior seed 0, nu seed 3); classes are drawn as the prior's were (``prior.generator_``).

    Args:
        prior: the fitted Gaussian prior of ``G``.
        G: the generator.
        n_samples: held-out W vectors (>= 8).
        seed: seed of their z stream.
        batch_size: samples per mapping call; memory only.
        device: where the mapping runs (None: where ``G`` is).

    Returns:
        A fitted :class:`StudentTRadius` (``fit_seed_ == seed``).

    Raises:
        InputError: ``n_samples`` below 8, or a prior of another ``w_dim`` than ``G``.
    """
    from latentkit.latent.sampling import iter_mapping

    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < MIN_RADIUS_SAMPLES:
        raise InputError(f"fitting nu needs n_samples >= {MIN_RADIUS_SAMPLES} held-out W vectors, got {n_samples!r}")
    if prior.w_dim != G.w_dim:
        raise InputError(f"the prior has w_dim {prior.w_dim} but the generator {G.w_dim}: was it fitted on another network?")
    classes = prior.generator_.get("classes")
    d2 = [prior.mahalanobis(w.detach().to(torch.float64)).cpu().numpy()
          for w in iter_mapping(G, n_samples, batch_size=batch_size, seed=seed, classes=classes, device=device)]
    return StudentTRadius(prior)._fit_d2(np.concatenate(d2), int(seed))


def load_student_t(
    path: str | os.PathLike,
    G: Generator | None = None,
    *,
    n_samples: int = DEFAULT_NU_SAMPLES,
    seed: int = NU_SEED_OFFSET,
    device: torch.device | str | None = None,
) -> StudentTRadius:
    """The Student-t radius prior of a prior file: the nu stored in it, else nu fitted with :func:`fit_student_t`
    on held-out samples of ``G`` (the file is not changed; :meth:`StudentTRadius.save` stores it).

    Raises:
        InputError: an invalid prior file, or one without nu and no ``G`` to fit it on.
    """
    from latentkit.latent.prior import GaussianPrior
    from latentkit.latent.prior_file import read_prior_file

    if read_prior_file(path)[2]["radius"] is not None or G is None:
        return StudentTRadius.load(path)
    return fit_student_t(GaussianPrior.load(path), G, n_samples=n_samples, seed=seed, device=device)


def describe_radius(prior: LatentPrior | None) -> dict[str, Any] | None:
    """What a projection's outputs record about the prior's radius model: None without a prior,
    :meth:`StudentTRadius.radius_info` for the t, ``{"model": "gaussian"}`` for any other prior."""
    if prior is None:
        return None
    return prior.radius_info() if isinstance(prior, StudentTRadius) else {"model": "gaussian"}


def radius_key(prior: LatentPrior | None) -> dict[str, Any] | None:
    """The part of the radius model that changes a projection, for run fingerprints: ``{"model", "nu"}`` for
    the t, None otherwise (so the fingerprints of Gaussian runs stay what they were)."""
    info = describe_radius(prior)
    return None if info is None or info["model"] == "gaussian" else {"model": info["model"], "nu": info["nu"]}


@dataclass(frozen=True)
class RadiusComparison:
    """Held-out comparison of the Gaussian and the t radius models (per-sample mean log-likelihoods, nats)."""

    n_fit: int
    n_test: int
    nu: float
    loglik_gaussian: float
    loglik_t: float
    gain_per_sample: float
    gain_stderr: float
    ks_chi2: float
    ks_t: float
    quantiles: dict

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return dict(self.__dict__)


def compare_radius_models(prior: GaussianPrior, ws_fit: torch.Tensor, ws_test: torch.Tensor) -> RadiusComparison:
    """Fit nu on ``ws_fit``, compare held-out log-likelihoods and KS statistics on ``ws_test``.

    Args:
        prior: fitted Gaussian prior (fitted on neither set).
        ws_fit, ws_test: ``[N, w_dim]`` held-out W vectors.

    Returns:
        :class:`RadiusComparison`; ``gain_per_sample`` is the t's mean log-likelihood minus the Gaussian's
        (both include the same log-det and Jacobian terms, which cancel), with its standard error.
    """
    from scipy import stats

    dim = prior.w_dim
    model = StudentTRadius(prior).fit(ws_fit)
    d2 = prior.mahalanobis(ws_test.detach().to(torch.float64)).reshape(-1).cpu().numpy()
    lg, lt = gaussian_radius_loglik(d2, dim), student_t_radius_loglik(d2, dim, model.nu_)
    diff = lt - lg
    scale = model.nu_ / ((model.nu_ - 2.0) * dim)
    f = stats.f(dim, model.nu_)
    levels = (0.05, 0.5, 0.95)
    quantiles = {f"{q:g}": {"observed": float(np.quantile(d2, q)), "chi2": float(stats.chi2(dim).ppf(q)),
                            "t": float(f.ppf(q) / scale)} for q in levels}
    return RadiusComparison(
        n_fit=int(ws_fit.reshape(-1, dim).shape[0]), n_test=int(d2.size), nu=float(model.nu_),
        loglik_gaussian=float(lg.mean()), loglik_t=float(lt.mean()), gain_per_sample=float(diff.mean()),
        gain_stderr=float(diff.std(ddof=1) / math.sqrt(d2.size)),
        ks_chi2=float(stats.kstest(d2, stats.chi2(dim).cdf).statistic),
        ks_t=float(stats.kstest(d2 * scale, f.cdf).statistic), quantiles=quantiles,
    )
