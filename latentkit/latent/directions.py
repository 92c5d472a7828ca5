"""Latent directions: the prior's principal components, PCA of W (GANSpace) and supervised boundaries.

A :class:`Directions` holds ``K`` unit vectors in one space, ``'v'`` (the mapping network's last
pre-activation, where :class:`~latentkit.latent.prior.GaussianPrior` is Gaussian) or ``'w'``, with the
standard deviation of latents along each of them, so that an edit of ``a`` moves a latent by ``a``
standard deviations (see :func:`latentkit.latent.edit.edit`).

- :func:`prior_directions`: the prior's eigenvectors of v, by descending variance. Moving along
  component ``k`` by ``a`` changes the prior's coefficient ``u_k`` by exactly ``a`` and no other.
- :func:`pca_directions`: PCA of latents in W (GANSpace's baseline, which uses 10^6 samples) or in v.
- :func:`fit_direction`: the unit normal of a linear classifier's boundary between labelled latents
  (InterFaceGAN), and :func:`condition`, which projects other directions out of it (conditional editing).

Directions are float64 CPU tensors; they save to ``.npz`` with JSON metadata (:meth:`Directions.save`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from latentkit.errors import InputError, ShapeError
from latentkit.latent.prior import w_to_v

if TYPE_CHECKING:
    from latentkit.latent.prior import GaussianPrior
    from latentkit.nets.generator import Generator

__all__ = ["Directions", "prior_directions", "pca_directions", "w_pca_directions", "fit_direction", "condition", "check_single",
           "DIRECTIONS_FORMAT_VERSION", "SPACES"]

DIRECTIONS_FORMAT = "latentkit-directions"
DIRECTIONS_FORMAT_VERSION = 1
SPACES = ("v", "w")


@dataclass(frozen=True)
class Directions:
    """``K`` unit directions in one latent space, with the spread of latents along each.

    Attributes:
        vectors: ``[K, w_dim]`` float64, unit rows.
        sigmas: ``[K]`` float64, standard deviation of latents along each row (in ``space``), > 0.
        covariance: ``[w_dim, w_dim]`` float64 covariance of the latents in ``space``; gives the standard
            deviation of any new direction (see :func:`condition`).
        space: ``'v'`` or ``'w'``.
        slope, gain: the mapping's last activation ``w = gain * leaky_relu(v, slope)`` (to edit in v).
        names: one name per direction.
        method: how they were found (``'prior-pca'``, ``'w-pca'``, ``'v-pca'``, ``'linear-svm'``, ...).
        info: JSON-ready metadata (generator, sample counts, classifier accuracy, ...).

    ``dirs[k]`` (an int) is a one-direction :class:`Directions`; ``dirs[[0, 2]]`` or ``dirs[0:3]`` a subset.
    """

    vectors: torch.Tensor
    sigmas: torch.Tensor
    covariance: torch.Tensor
    space: str = "v"
    slope: float = 0.2
    gain: float = math.sqrt(2)
    names: tuple[str, ...] = ()
    method: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.space not in SPACES:
            raise InputError(f"space must be one of {SPACES}, got {self.space!r}")
        if self.vectors.ndim != 2 or self.sigmas.shape != (self.vectors.shape[0],):
            raise ShapeError(f"vectors must be [K, w_dim] and sigmas [K], got {list(self.vectors.shape)} and "
                             f"{list(self.sigmas.shape)}")
        dim = self.vectors.shape[1]
        if self.covariance.shape != (dim, dim):
            raise ShapeError(f"covariance must be [{dim}, {dim}], got {list(self.covariance.shape)}")
        if not bool(torch.isfinite(self.vectors).all() and (self.sigmas > 0).all()):
            raise InputError("directions must be finite with standard deviations > 0")
        names = tuple(self.names) or tuple(f"{self.method or 'direction'}-{k}" for k in range(len(self)))
        if len(names) != len(self):
            raise InputError(f"{len(names)} names for {len(self)} directions")
        object.__setattr__(self, "names", names)

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def w_dim(self) -> int:
        """Dimension of the latent vectors."""
        return int(self.vectors.shape[1])

    def __getitem__(self, index: int | slice | Sequence[int]) -> Directions:
        if isinstance(index, int):
            if not -len(self) <= index < len(self):
                raise InputError(f"direction index {index} is out of range: there are {len(self)} (0-based)")
            rows = [index % len(self)]
        elif isinstance(index, slice):
            rows = list(range(len(self)))[index]
        else:
            rows = [int(i) for i in index]
            bad = [i for i in rows if not 0 <= i < len(self)]
            if bad:
                raise InputError(f"direction indices {bad} are out of range: there are {len(self)} (0-based)")
        return replace(self, vectors=self.vectors[rows], sigmas=self.sigmas[rows],
                       names=tuple(self.names[i] for i in rows))

    def std(self, vector: torch.Tensor) -> float:
        """Standard deviation of latents along ``vector [w_dim]`` (normalised first): ``sqrt(d^T C d)``."""
        d = vector.detach().to(torch.float64).cpu()
        d = d / d.norm()
        return float(torch.sqrt(torch.clamp(d @ self.covariance @ d, min=0.0)))

    def latents_in_space(self, ws: torch.Tensor) -> torch.Tensor:
        """``ws [..., w_dim]`` expressed in this space (``w_to_v`` for ``'v'``, unchanged for ``'w'``)."""
        return w_to_v(ws, self.slope, self.gain) if self.space == "v" else ws

    def project(self, ws: torch.Tensor) -> torch.Tensor:
        """Coordinates of latents along each direction, in its standard deviations.

        Args:
            ws: W latents ``[..., w_dim]``.

        Returns:
            ``[..., K]``: ``d_k . x / sigma_k`` with ``x`` the latent in this space (not centred, so
            differences of it are what an edit changes).
        """
        x = self.latents_in_space(ws)
        return x @ (self.vectors.T / self.sigmas).to(device=x.device, dtype=x.dtype)

    # ---------------------------------------------------------------------------------------------
    # Files.

    def metadata(self) -> dict[str, Any]:
        """The JSON metadata written by :meth:`save`."""
        return {"format": DIRECTIONS_FORMAT, "format_version": DIRECTIONS_FORMAT_VERSION, "space": self.space,
                "slope": self.slope, "gain": self.gain, "names": list(self.names), "method": self.method,
                "w_dim": self.w_dim, "info": self.info}

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``.npz`` arrays ``vectors``, ``sigmas``, ``covariance`` and a JSON ``metadata`` string (atomically)."""
        from latentkit.io import atomic_path

        path = Path(path)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, vectors=self.vectors.numpy(), sigmas=self.sigmas.numpy(),
                         covariance=self.covariance.numpy(), metadata=np.array(json.dumps(self.metadata())))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Directions:
        """Read a file written by :meth:`save` (``allow_pickle=False``).

        Raises:
            InputError: missing file, not a latentkit directions file, or an unknown format version.
        """
        path = Path(path)
        if not path.is_file():
            raise InputError(f"directions file not found: {path} (write one with `latentkit directions`)")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
            meta = json.loads(str(arrays["metadata"]))
        except (OSError, ValueError, KeyError, AttributeError) as err:
            raise InputError(f"cannot read {path} as a latentkit directions .npz: {err}") from None
        if meta.get("format") != DIRECTIONS_FORMAT:
            raise InputError(f"{path} is not a latentkit directions file (format {meta.get('format')!r})")
        if meta.get("format_version") != DIRECTIONS_FORMAT_VERSION:
            raise InputError(f"{path} has directions format version {meta.get('format_version')}, this latentkit "
                             f"reads version {DIRECTIONS_FORMAT_VERSION}")
        try:
            tensors = {k: torch.from_numpy(arrays[k].astype(np.float64)) for k in ("vectors", "sigmas", "covariance")}
        except KeyError as err:
            raise InputError(f"{path}: missing array {err}") from None
        return cls(**tensors, space=meta["space"], slope=float(meta["slope"]), gain=float(meta["gain"]),
                   names=tuple(meta.get("names", ())), method=str(meta.get("method", "")), info=meta.get("info", {}))


# --------------------------------------------------------------------------------------------------
# Finding directions.


def _count(n_components: int | None, dim: int) -> int:
    k = dim if n_components is None else int(n_components)
    if not 1 <= k <= dim:
        raise InputError(f"n_components must be between 1 and w_dim = {dim}, got {n_components}")
    return k


def prior_directions(prior: GaussianPrior, *, n_components: int | None = None) -> Directions:
    """The prior's principal axes of v, by descending variance (0-based, as :meth:`GaussianPrior.coefficients`).

    Args:
        prior: a fitted prior.
        n_components: how many (None: all ``w_dim``).

    Returns:
        :class:`Directions` in ``'v'`` with ``sigmas = sqrt(explained_variance_)``: an edit of ``a`` along
        component ``k`` changes ``prior.coefficients(w)[..., k]`` by ``a`` and no other coefficient.
    """
    k = _count(n_components, prior.w_dim)
    evecs, evals = prior.components_.to(torch.float64), prior.explained_variance_.to(torch.float64)
    covariance = (evecs.T * evals) @ evecs
    info = {"generator": dict(getattr(prior, "generator_", {})), "n_samples": int(getattr(prior, "n_samples_", 0)),
            "explained_variance_ratio": (evals[:k] / evals.sum()).tolist()}
    return Directions(evecs[:k].clone(), evals[:k].sqrt(), covariance, space="v", slope=prior.slope_,
                      gain=prior.gain_, names=tuple(f"pc{i}" for i in range(k)), method="prior-pca", info=info)


def _as_vectors(ws: torch.Tensor, name: str) -> torch.Tensor:
    """``[N, w_dim]`` or ``[N, num_ws, w_dim]`` -> float64 ``[N, w_dim]`` (W+ rows averaged per latent)."""
    if not isinstance(ws, torch.Tensor) or ws.ndim not in (2, 3):
        shape = list(ws.shape) if isinstance(ws, torch.Tensor) else type(ws).__name__
        raise ShapeError(f"{name} must be a tensor [N, w_dim] or [N, num_ws, w_dim], got {shape}")
    x = ws.detach().to("cpu", torch.float64)
    x = x.mean(1) if x.ndim == 3 else x
    if not bool(torch.isfinite(x).all()):
        raise InputError(f"{name} holds NaN or inf")
    return x


def pca_directions(
    ws: torch.Tensor,
    *,
    n_components: int | None = None,
    space: str = "w",
    slope: float = 0.2,
    gain: float = math.sqrt(2),
) -> Directions:
    """PCA of latents: GANSpace's directions with ``space='w'`` (it uses 10^6 mapping outputs).

    Args:
        ws: W latents ``[N, w_dim]`` (or ``[N, num_ws, w_dim]``, rows averaged), N >= 2.
        n_components: how many (None: all).
        space: ``'w'`` (GANSpace) or ``'v'`` (then it estimates what :func:`prior_directions` gives exactly).
        slope, gain: the activation to undo for ``space='v'``.

    Returns:
        :class:`Directions` by descending variance; each sign is fixed so the largest entry is positive.
    """
    if space not in SPACES:
        raise InputError(f"space must be one of {SPACES}, got {space!r}")
    x = _as_vectors(ws, "ws")
    if x.shape[0] < 2:
        raise ShapeError(f"need at least 2 latents for a PCA, got {x.shape[0]}")
    x = w_to_v(x, slope, gain) if space == "v" else x
    covariance = torch.cov(x.T).reshape(x.shape[1], x.shape[1])
    evals, evecs = torch.linalg.eigh(covariance)
    evals, evecs = evals.flip(0), evecs.flip(1).T  # descending, one per row
    k = _count(n_components, x.shape[1])
    evecs = evecs[:k] * evecs[:k].gather(1, evecs[:k].abs().argmax(1, keepdim=True)).sign()
    floor = x.shape[1] * torch.finfo(torch.float64).eps * max(float(evals[0]), torch.finfo(torch.float64).tiny)
    info = {"n_samples": int(x.shape[0]), "explained_variance_ratio": (evals[:k] / evals.sum()).tolist()}
    return Directions(evecs.contiguous(), evals[:k].clamp(min=floor).sqrt(), covariance, space=space, slope=slope,
                      gain=gain, names=tuple(f"{space}pc{i}" for i in range(k)), method=f"{space}-pca", info=info)


def w_pca_directions(
    G: Generator,
    n_samples: int = 100_000,
    *,
    n_components: int | None = None,
    seed: int = 0,
    batch_size: int = 10_000,
) -> Directions:
    """GANSpace's directions of a generator: :func:`pca_directions` of ``n_samples`` mapping outputs in W.

    Args:
        G: the generator (its mapping network runs).
        n_samples: mapping outputs to draw (GANSpace uses 10^6), >= 2.
        n_components: how many (None: all).
        seed: seed of the z stream (see :func:`~latentkit.latent.sampling.iter_mapping`).
        batch_size: samples per mapping call (memory only).
    """
    from latentkit.latent.sampling import sample_w

    if int(n_samples) < 2:
        raise InputError(f"n_samples must be >= 2 for a PCA, got {n_samples}")
    w = sample_w(G, int(n_samples), seed=seed, batch_size=batch_size)
    act = G.mapping_activation
    dirs = pca_directions(w, n_components=n_components, space="w", slope=float(act.slope), gain=float(act.gain))
    generator = {"sha256": str(getattr(G, "sha256", "") or ""), "source": str(getattr(G, "source", "") or "")}
    return replace(dirs, info={**dirs.info, "generator": generator, "seed": int(seed)})


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
    x = _as_vectors(ws, "ws")
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


def check_single(direction: Directions, name: str = "direction") -> None:
    """Raise :class:`InputError` unless ``direction`` is a :class:`Directions` holding exactly one direction."""
    if not isinstance(direction, Directions):
        raise InputError(f"{name} must be a Directions (e.g. prior_directions(prior)[k]), got {type(direction).__name__}")
    if len(direction) != 1:
        raise InputError(f"{name} must hold exactly one direction, it holds {len(direction)}: select one with dirs[k]")
