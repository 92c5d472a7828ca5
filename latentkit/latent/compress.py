"""Log-compression of extreme PCA components (the Gaussianized-W alternative to truncation) and
NVIDIA's truncation trick as the baseline.

Compression works per W vector (each layer of W+) in the whitened PCA coordinates of a fitted
:class:`~latentkit.latent.prior.GaussianPrior`: ``u_k = e_k . (v - mean) / sqrt(lambda_k)``. Coefficients with
``|u_k| <= tau`` are left alone; larger ones become ``sign(u_k) * (tau + log(1 + |u_k| - tau))``. The map
is continuous with slope 1 at tau, monotone, and never increases ``|u_k|``, so typical latents keep
their detail while outliers are pulled in. Truncation instead shrinks every latent toward ``w_avg``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from latentkit.checks import check_finite, check_shape
from latentkit.errors import InputError, ShapeError
from latentkit.latent.settings import DEFAULT_PSI, DEFAULT_TAU

if TYPE_CHECKING:
    from latentkit.latent.prior import GaussianPrior

__all__ = ["compress", "truncate", "compress_coefficients", "DEFAULT_TAU", "DEFAULT_PSI"]


def compress_coefficients(u: torch.Tensor, tau: float = DEFAULT_TAU) -> torch.Tensor:
    """The scalar compression map, elementwise: ``u`` where ``|u| <= tau``, else
    ``sign(u) * (tau + log(1 + |u| - tau))``. Any shape; differentiable."""
    _check_tau(tau)
    mag = u.abs()
    squashed = tau + torch.log1p((mag - tau).clamp_min(0))
    return torch.where(mag > tau, torch.sign(u) * squashed, u)


def _check_tau(tau: float) -> None:
    if not (isinstance(tau, (int, float)) and math.isfinite(tau) and tau > 0):
        raise InputError(f"tau must be a finite number > 0 (in standard deviations), got {tau!r}")


def compress(ws: torch.Tensor, prior: GaussianPrior, *, tau: float = DEFAULT_TAU) -> torch.Tensor:
    """Log-compress the PCA coefficients of v beyond ``tau`` standard deviations, per W vector.

    W vectors with no coefficient beyond ``tau`` are returned bit-for-bit unchanged; in the others
    only the compressed components move (to float precision).

    Args:
        ws: latents in W, ``[N, num_ws, w_dim]`` or ``[N, w_dim]`` (any ``[..., w_dim]``), on any device.
        prior: a fitted :class:`~latentkit.latent.prior.GaussianPrior` of the same generator.
        tau: threshold in standard deviations (> 0).

    Returns:
        Compressed latents in W, same shape, dtype and device as ``ws``.

    Raises:
        InputError: ``tau`` not a positive finite number.
        ShapeError: last dimension differs from the prior's ``w_dim``, or ``ws`` holds NaN, inf or complex values.
        NotFittedError: the prior is not fitted.

    Example:
        >>> ws_c = compress(ws, prior, tau=3.0)   # doctest: +SKIP
    """
    _check_tau(tau)
    check_finite(ws, "ws")  # NaN/inf or complex latents would be rendered as garbage
    u = prior.coefficients(ws)  # [..., w_dim]
    u_c = compress_coefficients(u, tau)
    moved = (u.abs() > tau).any(-1, keepdim=True)  # [..., 1]
    v = prior.transform(ws) + (u_c - u) @ prior.colouring(u)  # only the compressed components change
    return torch.where(moved, prior.inverse_transform(v), ws)


def truncate(
    ws: torch.Tensor,
    w_avg: torch.Tensor,
    psi: float = DEFAULT_PSI,
    *,
    cutoff: int | None = None,
) -> torch.Tensor:
    """NVIDIA's truncation trick: ``w_avg + psi * (w - w_avg)`` on the first ``cutoff`` layers.

    Computed as ``w_avg.lerp(ws, psi)``, exactly as NVIDIA's mapping network does, so
    ``truncate(G.mapping(z, c), G.class_average(c), psi)`` equals ``G.mapping(z, c, truncation_psi=psi)``.

    Args:
        ws: ``[N, num_ws, w_dim]``.
        w_avg: ``[w_dim]`` (shared centre) or ``[N, w_dim]`` (one per sample, e.g. per class).
        psi: 1 leaves ``ws`` unchanged, 0 returns ``w_avg``.
        cutoff: truncate only layers ``[0, cutoff)``; None truncates all.

    Returns:
        New tensor ``[N, num_ws, w_dim]``.

    Raises:
        ShapeError: shapes that do not match.
        InputError: ``cutoff`` outside ``[0, num_ws]`` or ``psi`` not finite.
    """
    sizes = check_shape(ws, ["N", "num_ws", "w_dim"], "ws")
    if not isinstance(w_avg, torch.Tensor) or w_avg.ndim not in (1, 2):
        raise ShapeError(f"w_avg must be a tensor [w_dim] or [N, w_dim], got {getattr(w_avg, 'shape', type(w_avg))}")
    if w_avg.ndim == 1:
        check_shape(w_avg, [sizes["w_dim"]], "w_avg")
        centre = w_avg.reshape(1, 1, -1)
    else:
        check_shape(w_avg, [sizes["N"], sizes["w_dim"]], "w_avg")
        centre = w_avg.unsqueeze(1)  # [N, 1, w_dim]
    if not math.isfinite(float(psi)):
        raise InputError(f"psi must be a finite number, got {psi}")
    num_ws = sizes["num_ws"]
    cutoff = num_ws if cutoff is None else int(cutoff)
    if not 0 <= cutoff <= num_ws:
        raise InputError(f"cutoff must be in [0, {num_ws}] (num_ws) or None, got {cutoff}")
    out = ws.clone()
    centre = centre.to(device=ws.device, dtype=ws.dtype)
    out[:, :cutoff] = centre.lerp(ws[:, :cutoff], float(psi))
    return out
