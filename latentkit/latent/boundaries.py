"""Supervised directions (InterFaceGAN): the unit normal of a linear SVM between labelled latents, and
conditional editing, which projects other directions out of one.

Both return :class:`~latentkit.latent.directions.Directions`, so they save, load and edit like the
prior's principal components.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from latentkit.errors import InputError, ShapeError
from latentkit.latent.directions import SPACES, Directions, as_vectors, check_single
from latentkit.latent.prior import w_to_v

__all__ = ["fit_direction", "condition"]


def fit_direction(
    ws: torch.Tensor,
    labels: torch.Tensor | np.ndarray | Sequence[float],
    *,
    space: str = "v",
    slope: float = 0.2,
    gain: float = math.sqrt(2),
    ratio: float = 0.5,
    C: float = 1.0,
    name: str = "attribute",
) -> Directions:
    """The unit normal of a linear SVM's boundary between labelled latents (InterFaceGAN).

    Binary labels (two distinct values) are used as they are; any other scores keep the top and
    bottom ``ratio / 2`` of the latents as positives and negatives (InterFaceGAN keeps 2% each of 500k).
    Features are standardised for the solver and the normal is mapped back to the latent coordinates,
    so it is the boundary's normal in ``space`` itself. It points towards the larger label.

    Args:
        ws: W latents ``[N, w_dim]`` (or ``[N, num_ws, w_dim]``, rows averaged).
        labels: ``[N]`` binary labels or real scores.
        space: where to fit: ``'v'`` (default) or ``'w'`` (InterFaceGAN's).
        slope, gain: the activation to undo for ``space='v'``.
        ratio: share of scored latents kept (0 < ratio <= 1); ignored for binary labels.
        C: the SVM's regularisation (scikit-learn's ``LinearSVC(C=...)``).
        name: the direction's name.

    Returns:
        A one-direction :class:`Directions`; its sigma is the standard deviation of all ``ws`` along it,
        and ``info`` holds the training accuracy and the counts.

    Raises:
        ShapeError: ``labels`` is not ``[N]``. InputError: one class only, bad ``ratio`` or ``space``.
    """
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    if space not in SPACES:
        raise InputError(f"space must be one of {SPACES}, got {space!r}")
    x = as_vectors(ws, "ws")
    x = w_to_v(x, slope, gain) if space == "v" else x
    y = np.asarray(labels.detach().cpu() if isinstance(labels, torch.Tensor) else labels, dtype=np.float64)
    if y.shape != (x.shape[0],):
        raise ShapeError(f"labels must be [N] = [{x.shape[0]}] (one per latent), got {list(y.shape)}")
    values = np.unique(y)
    if len(values) < 2:
        raise InputError(f"labels hold one value only ({values.tolist()}): need two classes to fit a boundary")
    if len(values) == 2:
        keep, target = np.arange(len(y)), (y == values[1]).astype(int)
    else:
        if not 0 < ratio <= 1:
            raise InputError(f"ratio must be in (0, 1], got {ratio}")
        half = max(1, int(len(y) * ratio / 2))
        order = np.argsort(y, kind="stable")
        keep = np.concatenate([order[:half], order[-half:]])
        target = np.r_[np.zeros(half, int), np.ones(half, int)]
    features = x.numpy()[keep]
    scaler = StandardScaler().fit(features)
    svm = LinearSVC(C=C, max_iter=100_000, tol=1e-6).fit(scaler.transform(features), target)
    normal = torch.from_numpy(svm.coef_[0] / np.where(scaler.scale_ > 0, scaler.scale_, 1.0))
    if not bool(torch.isfinite(normal).all()) or float(normal.norm()) == 0:
        raise InputError("the classifier found no boundary (zero normal): are the labels related to the latents?")
    normal = normal / normal.norm()
    covariance = torch.cov(x.T).reshape(x.shape[1], x.shape[1])
    sigma = float((x @ normal).std())
    info = {"n_samples": int(x.shape[0]), "n_used": int(len(keep)), "C": float(C),
            "train_accuracy": float(svm.score(scaler.transform(features), target))}
    return Directions(normal[None], torch.tensor([sigma], dtype=torch.float64), covariance, space=space, slope=slope,
                      gain=gain, names=(name,), method="linear-svm", info=info)


def condition(direction: Directions, others: Directions | Sequence[Directions]) -> Directions:
    """Project ``others`` out of ``direction`` (InterFaceGAN's conditional manipulation).

    The result is the unit vector along the part of ``direction`` orthogonal to every direction of
    ``others``, so an edit along it leaves each latent's coordinate along ``others`` unchanged. Its
    sigma is the standard deviation of ``direction``'s latents along the new vector.

    Args:
        direction: one direction.
        others: directions in the same space (one :class:`Directions` or a list of them).

    Returns:
        A one-direction :class:`Directions`, named ``'<name>|<other>...'``.

    Raises:
        InputError: different spaces or dimensions, or ``direction`` lies in the span of ``others``.
    """
    check_single(direction, "direction")
    group = [others] if isinstance(others, Directions) else list(others)
    for other in group:
        if other.space != direction.space or other.w_dim != direction.w_dim:
            raise InputError(f"cannot condition a {direction.space}-space direction ({direction.w_dim}-dim) on a "
                             f"{other.space}-space one ({other.w_dim}-dim): fit them in the same space")
    basis = torch.cat([o.vectors for o in group]).T  # [w_dim, M]
    q, r = torch.linalg.qr(basis)
    q = q[:, r.diagonal().abs() > basis.shape[0] * torch.finfo(torch.float64).eps * float(r.abs().max())]
    d = direction.vectors[0]
    residual = d - q @ (q.T @ d)
    if float(residual.norm()) <= 1e3 * torch.finfo(torch.float64).eps:
        raise InputError(f"direction {direction.names[0]!r} lies in the span of the directions it is conditioned on")
    vector = residual / residual.norm()
    sigma = torch.tensor([direction.std(vector)], dtype=torch.float64)
    name = "|".join([direction.names[0], *(n for o in group for n in o.names)])
    return replace(direction, vectors=vector[None], sigmas=sigma, names=(name,), method=direction.method + "+conditioned")
