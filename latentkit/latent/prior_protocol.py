"""The written contract of a prior: what projection, run fingerprints and the radius prior call on one.

Three classes play the role: :class:`~latentkit.latent.prior.GaussianPrior` (the Gaussianized W),
:class:`~latentkit.latent.radius.StudentTRadius` (the same mean and covariance, a Student-t radius) and
:class:`~latentkit.latent.pn_prior.PNPrior` (II2S's P_N space). Callers annotate with these protocols
instead of ``Any``; ``isinstance`` checks them at public boundaries (a fitted prior has every member; an
unfitted one lacks its fitted state, so the check fails for it).

* :class:`LatentPrior`: ``penalty(w)``, the projector's prior term, and the fitted ``mean_`` and ``w_dim``
  that run fingerprints hash.
* :class:`WhitenedPrior`: a :class:`LatentPrior` with whitened coefficients u (``coefficients`` and its
  inverse ``from_coefficients``) and the penalty as a function of ``|u|^2`` (``radius_penalty``), which
  ``parametrization='prior'`` and ``start='prior_mean'`` of projection need.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

__all__ = ["LatentPrior", "WhitenedPrior"]


@runtime_checkable
class LatentPrior(Protocol):
    """A fitted prior over W vectors that projection can use as its prior term."""

    @property
    def w_dim(self) -> int:
        """Dimension of W."""
        ...

    @property
    def mean_(self) -> torch.Tensor:
        """The fitted mean ``[w_dim]`` (float64 CPU); run fingerprints hash it."""
        ...

    def penalty(self, w: torch.Tensor) -> torch.Tensor:
        """The prior term of W vectors, ``[..., w_dim] -> [...]``, differentiable: twice the negative log
        density up to a constant (the Gaussian's squared Mahalanobis distance)."""
        ...


@runtime_checkable
class WhitenedPrior(LatentPrior, Protocol):
    """A :class:`LatentPrior` with whitened coefficients u, standard normal under its Gaussian part."""

    def coefficients(self, w: torch.Tensor) -> torch.Tensor:
        """``w [..., w_dim] -> u [..., w_dim]``."""
        ...

    def from_coefficients(self, u: torch.Tensor) -> torch.Tensor:
        """``u [..., w_dim] -> w [..., w_dim]``, the inverse of :meth:`coefficients`."""
        ...

    def radius_penalty(self, d2: torch.Tensor) -> torch.Tensor:
        """:meth:`penalty` as a function of ``d2 = |u|^2`` ``[...]`` (the identity for a Gaussian)."""
        ...
