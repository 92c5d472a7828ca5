"""The Gaussianized W space: a Gaussian prior on the mapping network's pre-activations.

The last layer of a StyleGAN mapping network ends in ``w = gain * leaky_relu(v, slope)`` (slope 0.2 and
gain sqrt(2) in NVIDIA's and rosinality's code). Undoing that activation gives ``v``, the exact
pre-activation of the last layer, whose distribution is close to Gaussian:

    v = w / gain            where w >= 0
    v = w / (gain * slope)  where w <  0

We divide by the gain so that ``v`` is the real pre-activation; leaving it out would only scale every
``v`` (and its mean and covariance) by a constant and change no Mahalanobis distance or PCA coefficient.

:class:`GaussianPrior` follows scikit-learn's estimator conventions: ``__init__`` stores arguments,
:meth:`GaussianPrior.fit` returns ``self``, fitted state ends in ``_`` and using an unfitted prior raises
:class:`~latentkit.errors.NotFittedError`. Statistics and their eigendecomposition are computed in
float64 on the CPU and kept as float64 CPU tensors; the matrices that :meth:`~GaussianPrior.mahalanobis`,
:meth:`~GaussianPrior.coefficients` and friends use are cast once per (device, dtype) and cached, so
every transform is differentiable torch on the caller's device and dtype.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from latentkit.checks import check_finite
from latentkit.errors import InputError, NotFittedError, ShapeError
from latentkit.latent.gaussianize import check_activation, v_to_w, w_to_v, w_to_v64
from latentkit.latent.moments import Moments
from latentkit.latent.prior_file import PRIOR_FORMAT, PRIOR_FORMAT_VERSION
from latentkit.latent.sampling import iter_mapping, resolve_classes
from latentkit.latent.settings import DEFAULT_CACHED_SAMPLES, PRIOR_BATCH_SIZE, PRIOR_SAMPLES
from latentkit.nets.generator import MappingActivation

if TYPE_CHECKING:
    from latentkit.nets.generator import Generator

__all__ = ["GaussianPrior", "w_to_v", "v_to_w", "PRIOR_FORMAT_VERSION", "DEFAULT_CACHED_SAMPLES"]

logger = logging.getLogger(__name__)

_STATS_CHUNK = 4096  # rows converted to float64 at a time


# --------------------------------------------------------------------------------------------------
# The prior.


class GaussianPrior:
    """A full-covariance Gaussian on ``v``, the mapping network's last pre-activation.

    Args:
        slope: negative slope of the last leaky ReLU; None takes it from the generator in
            :meth:`from_generator` and uses 0.2 in :meth:`fit`.
        gain: multiplier after that activation; None takes it from the generator, else sqrt(2).

    Attributes (after fitting; float64 CPU tensors):
        mean_: ``[w_dim]`` mean of v.
        covariance_: ``[w_dim, w_dim]`` covariance of v (unbiased, ``N - 1``).
        components_: ``[w_dim, w_dim]`` principal axes of v, one per row, by descending variance.
        explained_variance_: ``[w_dim]`` eigenvalues of ``covariance_``, descending, after the floor.
        n_samples_: number of W vectors fitted.
        n_floored_: eigenvalues raised to the floor (numerically zero or negative ones only).
        eigenvalue_floor_: that floor, ``w_dim * eps(float64) * largest eigenvalue``.
        slope_, gain_: the activation inverted.
        generator_: dict ``{"sha256", "source", "architecture", "classes"}`` (empty strings when unknown).

    Example:
        >>> prior = GaussianPrior.from_generator(G, 100_000)          # doctest: +SKIP
        >>> d2 = prior.mahalanobis(ws)                                 # [N, num_ws]  # doctest: +SKIP
    """

    def __init__(self, *, slope: float | None = None, gain: float | None = None) -> None:
        self.slope = slope
        self.gain = gain

    # ---------------------------------------------------------------------------------------------
    # scikit-learn plumbing.

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The ``__init__`` arguments, as scikit-learn's ``get_params``."""
        return {"slope": self.slope, "gain": self.gain}

    def set_params(self, **params: Any) -> GaussianPrior:
        """Set ``__init__`` arguments; unknown names raise ``TypeError``."""
        for key, value in params.items():
            if key not in ("slope", "gain"):
                raise TypeError(f"GaussianPrior has no parameter {key!r} (it has 'slope' and 'gain')")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        state = f", n_samples_={self.n_samples_}, w_dim={self.w_dim}" if hasattr(self, "mean_") else ""
        return f"GaussianPrior(slope={self.slope}, gain={self.gain}{state})"

    def _require_fitted(self) -> None:
        if not hasattr(self, "mean_"):
            raise NotFittedError("this GaussianPrior is not fitted yet: call fit(ws), GaussianPrior.from_generator(G) "
                                 "or GaussianPrior.load(path) first")

    @property
    def w_dim(self) -> int:
        """Dimension of the W vectors the prior was fitted on."""
        self._require_fitted()
        return int(self.mean_.shape[0])

    # ---------------------------------------------------------------------------------------------
    # Fitting.

    def _activation(self, G: Generator | None = None) -> tuple[float, float]:
        act = G.mapping_activation if G is not None else MappingActivation()
        slope = float(act.slope if self.slope is None else self.slope)
        gain = float(act.gain if self.gain is None else self.gain)
        check_activation(slope, gain)
        return slope, gain

    def fit(self, ws: torch.Tensor) -> GaussianPrior:
        """Fit mean and covariance of v on raw mapping outputs (before truncation).

        Args:
            ws: ``[N, w_dim]`` or ``[N, num_ws, w_dim]``. When every layer of a W+ tensor is the same
                vector (a broadcast mapping output) each sample counts once; otherwise every W vector
                counts as a sample.

        Returns:
            self.

        Raises:
            ShapeError: wrong rank, fewer than 2 vectors, or non-finite values.
        """
        if not isinstance(ws, torch.Tensor) or ws.ndim not in (2, 3):
            shape = list(ws.shape) if isinstance(ws, torch.Tensor) else type(ws).__name__
            raise ShapeError(f"ws must be a tensor [N, w_dim] or [N, num_ws, w_dim], got {shape}")
        if ws.ndim == 3:
            ws = ws[:, 0] if torch.equal(ws, ws[:, :1].expand_as(ws)) else ws.reshape(-1, ws.shape[-1])
        check_finite(ws, "ws")
        slope, gain = self._activation()
        moments = Moments(ws.shape[1], torch.device("cpu"))
        for chunk in ws.detach().split(_STATS_CHUNK):  # bounded float64 temporaries
            moments.update(w_to_v64(chunk.to("cpu"), slope, gain))
        return self._finish(moments, slope, gain, {"sha256": "", "source": "", "architecture": "", "classes": None})

    @classmethod
    def from_generator(
        cls,
        G: Generator,
        n_samples: int = PRIOR_SAMPLES,
        *,
        batch_size: int = PRIOR_BATCH_SIZE,
        seed: int = 0,
        device: torch.device | str | None = None,
        progress: bool = True,
        classes: Sequence[int] | None = None,
        slope: float | None = None,
        gain: float | None = None,
        shard: tuple[int, int] | None = None,
    ) -> GaussianPrior:
        """Fit a prior by streaming ``n_samples`` latents through ``G``'s mapping network.

        Only float64 accumulators (a mean and a ``[w_dim, w_dim]`` scatter) are kept, never the samples.
        The result depends on ``seed`` and not on ``batch_size`` (up to float64 summation order).

        Conditional generators: the prior is *shared* by default: classes are drawn uniformly over all
        ``c_dim`` classes, so it models the marginal over classes (use it when the class is unknown,
        e.g. projecting a photo). ``classes=[k]`` fits a *per-class* prior, tighter around class k's
        latents (use it when the class is known; ``latentkit compress --class K`` does). Any other
        subset fits the mixture of those classes.

        Args:
            G: the generator.
            n_samples: how many z to draw (>= 2).
            batch_size: samples per mapping call; memory only.
            seed: seed of the CPU ``torch.Generator`` that draws z (and classes with ``seed + 1``).
            device: where the mapping and accumulation run (None: where ``G`` is).
            progress: show a tqdm bar on stderr.
            classes: class indices to draw uniformly from (conditional generators only).
            slope, gain: override the generator's ``mapping_activation``.
            shard: ``(rank, world_size)`` under torchrun: this rank maps the z blocks ``k % world_size ==
                rank`` of the same stream and the float64 moments of all ranks are merged in rank order, so
                every rank returns the one-process prior up to float64 rounding (needs the process group).

        Returns:
            A fitted :class:`GaussianPrior`.

        Raises:
            InputError: ``n_samples < 2``, bad ``classes``, activation or shard.
        """
        from tqdm.auto import tqdm

        from latentkit.distributed import check_shard
        from latentkit.latent.moments import merge_across_ranks
        from latentkit.latent.sampling import shard_size

        if int(n_samples) < 2:
            raise InputError(f"n_samples must be >= 2 to estimate a covariance, got {n_samples}")
        prior = cls(slope=slope, gain=gain)
        act_slope, act_gain = prior._activation(G)
        chosen = resolve_classes(G, classes)
        run_device = torch.device(device) if device is not None else G.w_avg.device
        acc_device = torch.device("cpu") if run_device.type == "mps" else run_device  # mps has no float64
        moments = Moments(G.w_dim, acc_device)
        rank, world = check_shard(shard)
        with tqdm(total=shard_size(n_samples, (rank, world)), desc="fitting prior", unit="z", disable=not progress,
                  leave=False) as bar:
            for w in iter_mapping(G, n_samples, batch_size=batch_size, seed=seed, classes=chosen, device=run_device,
                                  shard=(rank, world)):
                check_finite(w, "mapping output")
                for chunk in w.split(_STATS_CHUNK):  # bounded float64 temporaries
                    moments.update(w_to_v64(chunk.to(acc_device), act_slope, act_gain))
                bar.update(w.shape[0])
        moments = merge_across_ranks(moments, world)
        info = {
            "sha256": str(getattr(G, "sha256", "") or ""),
            "source": str(getattr(G, "source", "") or ""),
            "architecture": str(getattr(G, "architecture", "")),
            "classes": None if (chosen is None or len(chosen) == G.c_dim) else chosen,
        }
        return prior._finish(moments, act_slope, act_gain, info)

    def _finish(self, moments: Moments, slope: float, gain: float, info: dict[str, Any]) -> GaussianPrior:
        if moments.n < 2:
            raise ShapeError(f"need at least 2 W vectors to estimate a covariance, got {moments.n}")
        covariance = (moments.scatter() / (moments.n - 1)).cpu()
        self._set_state(moments.mean.cpu(), covariance, moments.n, slope, gain, info)
        if moments.n <= self.w_dim:
            warnings.warn(
                f"fitted {moments.n} W vectors in {self.w_dim} dimensions: the covariance is singular and "
                f"{self.n_floored_} eigenvalues were floored; fit on more than {self.w_dim} samples",
                stacklevel=3,
            )
        return self

    def _set_state(
        self, mean: torch.Tensor, covariance: torch.Tensor, n: int, slope: float, gain: float, info: dict[str, Any]
    ) -> None:
        evals, evecs = torch.linalg.eigh(covariance)  # ascending
        evals, evecs = evals.flip(0), evecs.flip(1)
        floor = covariance.shape[0] * torch.finfo(torch.float64).eps * max(float(evals[0]), 0.0)
        floor = floor if floor > 0 else torch.finfo(torch.float64).tiny
        low = evals < floor
        self.mean_ = mean
        self.covariance_ = covariance
        self.components_ = evecs.T.contiguous()
        self.explained_variance_ = torch.where(low, torch.full_like(evals, floor), evals)
        self.n_floored_ = int(low.sum())
        self.eigenvalue_floor_ = float(floor)
        self.n_samples_ = int(n)
        self.slope_ = float(slope)
        self.gain_ = float(gain)
        self.generator_ = dict(info)
        self._cache: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, ...]] = {}
        if self.n_floored_:
            logger.info("prior: %d of %d eigenvalues were below %.3g and were floored", self.n_floored_, len(evals), floor)

    # ---------------------------------------------------------------------------------------------
    # Transforms (differentiable torch, caller's device and dtype).

    def check_w(self, w: torch.Tensor, name: str) -> None:
        """Raise unless the prior is fitted and ``w`` is a tensor ``[..., w_dim]`` (``name`` in the message)."""
        self._require_fitted()
        if not isinstance(w, torch.Tensor) or w.ndim < 1 or w.shape[-1] != self.w_dim:
            shape = list(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
            raise ShapeError(
                f"{name} must be a tensor [..., {self.w_dim}] (the prior's w_dim), got {shape}; "
                "was the prior fitted on another generator?"
            )

    def colouring(self, like: torch.Tensor) -> torch.Tensor:
        """``[w_dim, w_dim]``, ``v = mean + u @ colouring`` (so ``du`` moves v by ``du @ colouring``), cast for ``like``."""
        self._require_fitted()
        return self._matrices(like)[2]

    def _matrices(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mean ``[w_dim]``, whitening ``[w_dim, w_dim]``, colouring ``[w_dim, w_dim]``) cast for ``like``."""
        dtype = like.dtype if like.is_floating_point() else torch.float32
        key = (like.device, dtype)
        cached = self._cache.get(key)
        if cached is None:
            root = self.explained_variance_.sqrt()
            whiten = self.components_.T / root  # u = (v - mean) @ whiten
            colour = root[:, None] * self.components_  # v = mean + u @ colour
            cached = tuple(t.to(device=like.device, dtype=dtype) for t in (self.mean_, whiten, colour))
            self._cache[key] = cached
        return cached  # type: ignore[return-value]

    def transform(self, w: torch.Tensor) -> torch.Tensor:
        """w -> v (undo the last activation), any shape ``[..., w_dim]``; differentiable."""
        self.check_w(w, "w")
        return w_to_v(w, self.slope_, self.gain_)

    def inverse_transform(self, v: torch.Tensor) -> torch.Tensor:
        """v -> w (apply the activation), any shape ``[..., w_dim]``; exact inverse of :meth:`transform`."""
        self.check_w(v, "v")
        return v_to_w(v, self.slope_, self.gain_)

    def coefficients(self, w: torch.Tensor) -> torch.Tensor:
        """Whitened PCA coefficients ``u_k = e_k . (v - mean) / sqrt(lambda_k)``.

        Args:
            w: ``[..., w_dim]`` (e.g. ``[N, num_ws, w_dim]``).

        Returns:
            u ``[..., w_dim]``, components by descending variance; standard normal under the prior.
        """
        self.check_w(w, "w")
        mean, whiten, _ = self._matrices(w)
        return (w_to_v(w, self.slope_, self.gain_) - mean) @ whiten

    def from_coefficients(self, u: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`coefficients`: ``u [..., w_dim]`` -> ``w [..., w_dim]``."""
        self.check_w(u, "u")
        mean, _, colour = self._matrices(u)
        return v_to_w(mean + u @ colour, self.slope_, self.gain_)

    def mahalanobis(self, w: torch.Tensor) -> torch.Tensor:
        """Squared Mahalanobis distance of each W vector's v to the mean.

        Args:
            w: ``[..., w_dim]``, e.g. ``[N, num_ws, w_dim]``.

        Returns:
            ``[...]`` (e.g. ``[N, num_ws]``); chi-square(w_dim) distributed if v is Gaussian. Differentiable.
        """
        return self.coefficients(w).square().sum(-1)

    def penalty(self, w: torch.Tensor) -> torch.Tensor:
        """The projector's prior term (a :class:`~latentkit.latent.prior_protocol.LatentPrior`): :meth:`mahalanobis`."""
        return self.mahalanobis(w)

    def radius_penalty(self, d2: torch.Tensor) -> torch.Tensor:
        """:meth:`penalty` of ``d2 = |u|^2`` (whitened coefficients): ``d2`` itself (the Student-t bends it)."""
        return d2

    def log_prob(self, w: torch.Tensor) -> torch.Tensor:
        """Log density of each W vector in W space (Gaussian on v plus the activation's log-Jacobian).

        Args:
            w: ``[..., w_dim]``.

        Returns:
            ``[...]`` log densities (nats).
        """
        d2 = self.mahalanobis(w)
        logdet = float(self.explained_variance_.log().sum())
        const = -0.5 * (self.w_dim * math.log(2 * math.pi) + logdet) - self.w_dim * math.log(self.gain_)
        log_jac = -math.log(self.slope_) * (w < 0).sum(-1).to(d2.dtype)  # |dv/dw| on the negative side
        return -0.5 * d2 + const + log_jac

    def score(self, ws: torch.Tensor) -> float:
        """Mean :meth:`log_prob` over all W vectors of ``ws`` (scikit-learn's ``score``)."""
        return float(self.log_prob(ws).mean())

    def sample(
        self, n: int, *, seed: int = 0, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """Draw ``w [n, w_dim]`` from the prior (v Gaussian, then the activation).

        Randomness only from ``seed`` (a CPU ``torch.Generator``), so the result is the same on every device.
        """
        self._require_fitted()
        if int(n) < 1:
            raise InputError(f"n must be >= 1, got {n}")
        u = torch.randn(int(n), self.w_dim, generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float64)
        w = self.from_coefficients(u)
        return w.to(device=device or "cpu", dtype=dtype)

    def metadata(self) -> dict[str, Any]:
        """The JSON metadata written by :meth:`save`."""
        self._require_fitted()
        return {
            "format": PRIOR_FORMAT,
            "format_version": PRIOR_FORMAT_VERSION,
            "w_dim": self.w_dim,
            "n_samples": self.n_samples_,
            "slope": self.slope_,
            "gain": self.gain_,
            "params": self.get_params(),
            "generator": self.generator_,
        }

    def summary(self) -> dict[str, Any]:
        """JSON-ready scalars: ``n_samples``, ``w_dim``, ``n_floored``, ``condition_number`` (largest over
        smallest eigenvalue after the floor), ``slope``, ``gain``."""
        self._require_fitted()
        ev = self.explained_variance_
        return {"n_samples": self.n_samples_, "w_dim": self.w_dim, "n_floored": self.n_floored_,
                "condition_number": float(ev[0] / ev[-1]), "slope": self.slope_, "gain": self.gain_}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the prior as ``.npz``: float64 ``mean``, ``covariance`` and a JSON ``metadata`` string
        (see :mod:`latentkit.latent.prior_file`). Written atomically."""
        from latentkit.latent.prior_file import write_prior_file

        meta = self.metadata()  # raises NotFittedError first
        return write_prior_file(path, self.mean_.numpy(), self.covariance_.numpy(), meta)

    @classmethod
    def load(cls, path: str | os.PathLike) -> GaussianPrior:
        """Read a prior written by :meth:`save` (``allow_pickle=False``; every field validated).

        Raises:
            InputError: missing or unreadable file, not a latentkit prior, a format version this release
                cannot read, or invalid contents (the message names the field).
        """
        from latentkit.latent.prior_file import read_prior_file

        mean, cov, meta = read_prior_file(path)
        params = meta["params"]
        prior = cls(slope=params.get("slope"), gain=params.get("gain"))
        prior._set_state(torch.from_numpy(mean), torch.from_numpy(cov), meta["n_samples"], meta["slope"],
                         meta["gain"], meta["generator"])
        return prior
