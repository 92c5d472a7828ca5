"""Latent directions: the prior's principal components, PCA of W (GANSpace) and supervised boundaries.

A :class:`Directions` holds ``K`` unit vectors in one space, ``'v'`` (the mapping network's last
pre-activation, where :class:`~latentkit.latent.prior.GaussianPrior` is Gaussian) or ``'w'``, with the
standard deviation of latents along each of them, so that an edit of ``a`` moves a latent by ``a``
standard deviations (see :func:`latentkit.latent.edit.edit`).

- :func:`prior_directions`: the prior's eigenvectors of v, by descending variance. Moving along
  component ``k`` by ``a`` changes the prior's coefficient ``u_k`` by exactly ``a`` and no other.
- :func:`pca_directions`: PCA of latents in W (GANSpace's baseline, which uses 10^6 samples) or in v.
- :func:`latentkit.latent.boundaries.fit_direction`: supervised directions (InterFaceGAN), and
  :func:`~latentkit.latent.boundaries.condition` (conditional editing).

Directions are float64 CPU tensors; they save to ``.npz`` with JSON metadata (:meth:`Directions.save`).
"""

from __future__ import annotations

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

__all__ = ["Directions", "prior_directions", "pca_directions", "w_pca_directions", "check_single", "as_vectors",
           "DIRECTIONS_FORMAT_VERSION", "SPACES"]

DIRECTIONS_FORMAT = "latentkit-directions"
DIRECTIONS_FORMAT_VERSION = 1
SPACES = ("v", "w")


@dataclass(frozen=True, eq=False)
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
        if isinstance(index, (int, np.integer)) or (isinstance(index, torch.Tensor) and index.ndim == 0):
            index = int(index)
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
        from latentkit.datafiles import write_npz

        arrays = {"vectors": self.vectors.numpy(), "sigmas": self.sigmas.numpy(), "covariance": self.covariance.numpy()}
        return write_npz(path, arrays, self.metadata())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Directions:
        """Read a file written by :meth:`save` (``allow_pickle=False``).

        Raises:
            InputError: missing file, not a latentkit directions file, or an unknown format version.
        """
        from latentkit.datafiles import read_npz

        arrays, meta = read_npz(path, "latentkit directions .npz", names=("vectors", "sigmas", "covariance"),
                                hint="; write one with `latentkit directions`")
        return cls(**_checked_fields(Path(path), arrays, meta))


def _checked_fields(path: Path, arrays: dict[str, np.ndarray], meta: Any) -> dict[str, Any]:
    """The keyword arguments of :class:`Directions` from a file's arrays and metadata, each field checked."""
    def fail(what: str) -> InputError:
        return InputError(f"{path}: {what}; write the file again with `latentkit directions`")

    if not isinstance(meta, dict) or meta.get("format") != DIRECTIONS_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise InputError(f"{path} is not a latentkit directions file (format {found!r:.80})")
    if meta.get("format_version") != DIRECTIONS_FORMAT_VERSION:
        raise InputError(f"{path} has directions format version {meta.get('format_version')!r:.40}, this latentkit "
                         f"reads version {DIRECTIONS_FORMAT_VERSION}")
    tensors = {}
    for key, ndim in (("vectors", 2), ("sigmas", 1), ("covariance", 2)):
        if key not in arrays:
            raise fail(f"array {key!r} is missing (it has {sorted(arrays)[:20]})")
        array = arrays[key]
        if array.dtype.kind not in "fiu" or array.ndim != ndim or not np.isfinite(array).all():
            raise fail(f"array {key!r} must hold finite real numbers with {ndim} dimensions, got {array.dtype} "
                       f"{list(array.shape)[:4]}")
        tensors[key] = torch.from_numpy(array.astype(np.float64))
    if len(tensors["vectors"]) == 0 or not bool((tensors["vectors"].norm(dim=1) > 0).all()):
        raise fail("the directions must be one or more non-zero vectors")
    if meta.get("space") not in SPACES:
        raise fail(f"metadata field 'space' must be one of {SPACES}, got {meta.get('space')!r:.40}")
    numbers = {}
    for key in ("slope", "gain"):
        value = meta.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or (key == "gain" and value <= 0):
            raise fail(f"metadata field {key!r} must be a finite number{' > 0' if key == 'gain' else ''}, got {value!r:.40}")
        numbers[key] = float(value)
    names, method, info = meta.get("names", []), meta.get("method", ""), meta.get("info", {})
    if not isinstance(names, list) or not all(isinstance(n, str) and len(n) <= 200 for n in names):
        raise fail("metadata field 'names' must be a list of short strings")
    if not isinstance(method, str) or not isinstance(info, dict):
        raise fail("metadata fields 'method' (a string) and 'info' (an object) have the wrong types")
    return {**tensors, "space": meta["space"], **numbers, "names": tuple(names), "method": method, "info": info}


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
    info = {"generator": dict(prior.generator_), "n_samples": int(prior.n_samples_),
            "explained_variance_ratio": (evals[:k] / evals.sum()).tolist()}
    return Directions(evecs[:k].clone(), evals[:k].sqrt(), covariance, space="v", slope=prior.slope_,
                      gain=prior.gain_, names=tuple(f"pc{i}" for i in range(k)), method="prior-pca", info=info)


def as_vectors(ws: torch.Tensor, name: str = "ws") -> torch.Tensor:
    """Latents as float64 CPU vectors: ``[N, w_dim]`` or ``[N, num_ws, w_dim]`` -> float64 ``[N, w_dim]`` (W+ rows averaged per latent)."""
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
    x = as_vectors(ws, "ws")
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


def check_single(direction: Directions, name: str = "direction") -> None:
    """Raise :class:`InputError` unless ``direction`` is a :class:`Directions` holding exactly one direction."""
    if not isinstance(direction, Directions):
        raise InputError(f"{name} must be a Directions (e.g. prior_directions(prior)[k]), got {type(direction).__name__}")
    if len(direction) != 1:
        raise InputError(f"{name} must hold exactly one direction, it holds {len(direction)}: select one with dirs[k]")
