"""The P_N space of II2S (Zhu et al. 2020) as a prior object that :func:`~latentkit.projection.project.project` accepts.

II2S regularises W+ projection with ``lambda * mean(PCA_whiten(leaky_relu(w, 5))^2)`` (lambda 0.001, the
mean over every layer and dimension): undo the mapping's last leaky ReLU with slope 5 (no gain), subtract
the mean, rotate onto the principal axes and divide each axis by its standard deviation (a diagonal
variance in the PCA basis). The projector sums a prior's penalty over dimensions and layers, so II2S's
lambda is ``prior_weight=pn_weight(G.num_ws, G.w_dim)`` (lambda / (num_ws * w_dim)). Pass it as ``prior=``
with ``ProjectionSettings(parametrization="w", start="w_avg", prior_weight=pn_weight(G.num_ws, G.w_dim))``.

Up to a constant factor in v (the mapping's gain) this is the squared Mahalanobis distance of
:class:`~latentkit.latent.prior.GaussianPrior`; the difference in the II2S recipe is the weight, the
parametrization (Adam on w, not on whitened coefficients) and the start (the mean w).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from latentkit.errors import NotFittedError, ShapeError
from latentkit.latent.moments import Moments

if TYPE_CHECKING:
    from latentkit.nets.generator import Generator

__all__ = ["PN_LAMBDA", "PN_SLOPE", "PNPrior", "pn_weight"]

PN_LAMBDA = 1e-3
"""II2S's weight of the P_N term."""
PN_SLOPE = 5.0
"""II2S's inverse leaky-ReLU slope (``leaky_relu(w, 5)`` undoes the mapping's slope 0.2)."""


def pn_weight(num_ws: int, w_dim: int, lam: float = PN_LAMBDA) -> float:
    """The projector's ``prior_weight`` that applies II2S's weight ``lam``.

    II2S adds ``lam * P_N(w).pow(2).mean()`` (the mean over the ``num_ws`` layers and ``w_dim`` dimensions);
    the projector adds ``prior_weight`` times :meth:`PNPrior.penalty` summed over the layers (a sum over the
    dimensions), so the same term needs ``lam / (num_ws * w_dim)``: 1.09e-7 for 18 x 512 at lambda 1e-3.
    """
    return lam / (num_ws * w_dim)


class PNPrior:
    """PCA-whitened ``leaky_relu(w, 5)``; ``mahalanobis(w [..., w_dim]) -> [...]`` is differentiable and is
    its :meth:`penalty` (a :class:`~latentkit.latent.prior_protocol.LatentPrior`; not a whitened one: it has
    no ``from_coefficients``, so project it with ``parametrization='w'``).

    Args:
        slope: the negative slope applied to w (II2S: 5).
        floor: smallest variance kept, relative to the largest (guards a singular covariance).
    """

    def __init__(self, *, slope: float = PN_SLOPE, floor: float = 1e-12) -> None:
        self.slope = slope
        self.floor = floor

    def __repr__(self) -> str:
        return f"PNPrior(slope={self.slope}, floor={self.floor})"

    def fit(self, ws: torch.Tensor) -> PNPrior:
        """Fit on W vectors ``[N, w_dim]`` (or ``[N, num_ws, w_dim]``, every vector used), float64 statistics.

        Returns:
            self.

        Raises:
            ShapeError: fewer than 2 vectors or a rank other than 2 or 3.
        """
        if not isinstance(ws, torch.Tensor) or ws.ndim not in (2, 3):
            raise ShapeError(f"ws must be [N, w_dim] or [N, num_ws, w_dim], got {getattr(ws, 'shape', type(ws))}")
        x = torch.nn.functional.leaky_relu(ws.detach().reshape(-1, ws.shape[-1]).to("cpu", torch.float64), self.slope)
        if x.shape[0] < 2:
            raise ShapeError(f"fitting P_N needs at least 2 W vectors, got {x.shape[0]}")
        moments = Moments(x.shape[1], torch.device("cpu"))
        moments.update(x)
        return self._finish(moments)

    def _finish(self, moments: Moments) -> PNPrior:
        """Set the fitted state from float64 moments (:class:`~latentkit.latent.moments.Moments`)."""
        self.mean_ = moments.mean.cpu()
        var, comp = torch.linalg.eigh(moments.scatter().cpu() / (moments.n - 1))  # ascending
        var = var.flip(0).clamp_min(float(var.max()) * self.floor)
        self.explained_variance_ = var
        self.components_ = comp.flip(1).T  # [w_dim, w_dim], rows = axes
        self.n_samples_ = int(moments.n)
        self._cache: dict = {}
        return self

    @classmethod
    def from_generator(cls, G: Generator, n_samples: int = 100_000, *, seed: int = 0, **kwargs: float) -> PNPrior:
        """Fit on ``n_samples`` mapping outputs of ``G`` (seeded like :func:`~latentkit.latent.sampling.sample_w`),
        streamed: only float64 moments are held, never the samples."""
        from latentkit.latent.sampling import iter_mapping

        prior = cls(**kwargs)
        moments = Moments(G.w_dim, torch.device("cpu"))
        for w in iter_mapping(G, n_samples, seed=seed):  # streamed: float64 moments only, never all samples
            moments.update(torch.nn.functional.leaky_relu(w.to("cpu", torch.float64), prior.slope))
        if moments.n < 2:
            raise ShapeError(f"fitting P_N needs at least 2 W vectors, got {moments.n}")
        return prior._finish(moments)

    @property
    def w_dim(self) -> int:
        """Dimension of W."""
        if not hasattr(self, "mean_"):
            raise NotFittedError("PNPrior is not fitted: call fit(ws) or PNPrior.from_generator(G) first")
        return int(self.mean_.numel())

    def coefficients(self, w: torch.Tensor) -> torch.Tensor:
        """Whitened PCA coordinates ``[..., w_dim]`` of ``leaky_relu(w, slope)``."""
        if w.shape[-1] != self.w_dim:
            raise ShapeError(f"w must end in w_dim={self.w_dim}, got {list(w.shape)}")
        key = (w.device, w.dtype)
        if key not in self._cache:
            whiten = self.components_.T / self.explained_variance_.sqrt()
            self._cache[key] = (self.mean_.to(w.device, w.dtype), whiten.to(w.device, w.dtype))
        mean, whiten = self._cache[key]
        return (torch.nn.functional.leaky_relu(w, self.slope) - mean) @ whiten

    def mahalanobis(self, w: torch.Tensor) -> torch.Tensor:
        """``|P_N(w)|^2`` per W vector: ``[..., w_dim] -> [...]``; differentiable."""
        return self.coefficients(w).square().sum(-1)

    def penalty(self, w: torch.Tensor) -> torch.Tensor:
        """The projector's prior term (:class:`~latentkit.latent.prior_protocol.LatentPrior`): :meth:`mahalanobis`."""
        return self.mahalanobis(w)
