"""The prior's file format: an ``.npz`` with float64 ``mean`` ``[w_dim]``, ``covariance`` ``[w_dim, w_dim]``
and a JSON ``metadata`` string (format name and version, ``n_samples``, the activation inverted, the
generator it was fitted on). Read with ``allow_pickle=False``; every field is validated, so a damaged or
hostile file is an :class:`~latentkit.errors.InputError` naming the field, never a crash.

One metadata field is optional: ``radius``, written by :meth:`~latentkit.latent.radius.StudentTRadius.save`,
``{"model": "student-t", "nu": float > 2, "n_fit": int >= 8, "seed": int >= 0 or null}`` (the fitted degrees
of freedom of the covariance-matched Student-t, how many held-out W vectors they were fitted on, and the
seed of those vectors' z stream). Files without it are Gaussian priors, as before; readers that do not know
the field ignore it, so the format version stays 1.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from latentkit.datafiles import read_npz, write_npz
from latentkit.errors import InputError
from latentkit.latent.settings import RADIUS_MODEL

__all__ = ["MIN_RADIUS_SAMPLES", "PRIOR_FORMAT", "PRIOR_FORMAT_VERSION", "RADIUS_MODEL", "check_nu", "read_prior_file",
           "write_prior_file"]

PRIOR_FORMAT = "latentkit-gaussian-prior"
PRIOR_FORMAT_VERSION = 1
MAX_W_DIM = 65_536  # a covariance of this size is 32 GiB in float64: no real generator comes close
MIN_RADIUS_SAMPLES = 8  # fewest W vectors nu may be fitted on


def check_nu(nu: Any, name: str = "nu") -> float:
    """``nu`` as a float if it is a finite real number > 2 (the t's covariance exists only then), else InputError."""
    if isinstance(nu, bool) or not isinstance(nu, (int, float, np.integer, np.floating)) or not math.isfinite(nu) or nu <= 2:
        raise InputError(f"{name} must be a finite number > 2 (the Student-t's covariance exists only for nu > 2), "
                         f"got {nu!r}")
    return float(nu)


def write_prior_file(path: str | os.PathLike, mean: np.ndarray, covariance: np.ndarray, metadata: dict[str, Any]) -> Path:
    """Write ``mean``, ``covariance`` and ``metadata`` (JSON) atomically; returns the path."""
    return write_npz(path, {"mean": mean, "covariance": covariance}, metadata)


def _fail(path: Path, what: str) -> InputError:
    return InputError(f"{path}: {what}; refit it with `latentkit fit-prior`")


def _number(meta: dict[str, Any], key: str, path: Path, *, positive: bool = True) -> float:
    value = meta.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or (positive and value <= 0):
        raise _fail(path, f"the prior's metadata field {key!r} must be a finite {'positive ' if positive else ''}number, got {value!r}")
    return float(value)


def read_prior_file(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Read and validate a prior file: ``(mean [w_dim] float64, covariance [w_dim, w_dim] float64, metadata)``.

    The returned metadata always holds ``n_samples`` (int >= 2), ``slope``, ``gain`` (positive floats),
    ``params`` (dict), ``generator`` (dict) and ``radius`` (the validated optional field, or None).

    Raises:
        InputError: missing or unreadable file, not a latentkit prior, another format version, or any field
            of the wrong type, shape or value.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"prior file not found: {path} (write one with `latentkit fit-prior`)")
    arrays, meta = read_npz(path, "prior .npz", names=("mean", "covariance"), hint="; write one with `latentkit fit-prior`")
    if meta is None:
        raise InputError(f"{path} is not a latentkit prior: it has no 'metadata' (arrays: {sorted(arrays)})")
    if not isinstance(meta, dict):
        raise _fail(path, f"the prior's metadata must be a JSON object, got {type(meta).__name__}")
    if meta.get("format") != PRIOR_FORMAT:
        raise InputError(f"{path} is not a latentkit prior (format {meta.get('format')!r}, expected {PRIOR_FORMAT!r})")
    if meta.get("format_version") != PRIOR_FORMAT_VERSION:
        raise InputError(
            f"{path} has prior format version {meta.get('format_version')}, this latentkit reads version "
            f"{PRIOR_FORMAT_VERSION}: refit it with `latentkit fit-prior`"
        )
    mean, cov = arrays.get("mean"), arrays.get("covariance")
    if mean is None or cov is None or mean.dtype.kind != "f" or cov.dtype.kind != "f":
        raise _fail(path, "expected float arrays 'mean' [w_dim] and 'covariance' [w_dim, w_dim]")
    if mean.ndim != 1 or not 1 <= mean.shape[0] <= MAX_W_DIM or cov.shape != (mean.shape[0], mean.shape[0]):
        raise _fail(path, f"expected 'mean' [w_dim] (w_dim >= 1) and 'covariance' [w_dim, w_dim], got {list(mean.shape)} and {list(cov.shape)}")
    if not (np.isfinite(mean).all() and np.isfinite(cov).all()):
        raise _fail(path, "the prior's mean or covariance holds NaN or inf")
    # A covariance is symmetric positive semi-definite; rounding may make its smallest eigenvalues slightly
    # negative, by at most about w_dim * eps * the largest one (Weyl's bound for the storage rounding).
    cov64 = cov.astype(np.float64)
    eigenvalues = np.linalg.eigvalsh((cov64 + cov64.T) / 2)
    tolerance = mean.shape[0] * np.finfo(cov.dtype).eps * float(np.abs(eigenvalues).max())
    asymmetric = float(np.abs(cov64 - cov64.T).max()) > tolerance
    if asymmetric or eigenvalues.max() <= 0 or eigenvalues.min() < -tolerance:
        raise _fail(path, f"the prior's covariance is not a covariance (smallest eigenvalue {eigenvalues.min():.3g}, "
                          f"largest {eigenvalues.max():.3g}{', not symmetric' if asymmetric else ''})")
    n = meta.get("n_samples")
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise _fail(path, f"the prior's metadata field 'n_samples' must be an integer >= 2, got {n!r}")
    params, generator = meta.get("params", {}), meta.get("generator", {})
    if not isinstance(params, dict) or not isinstance(generator, dict):
        raise _fail(path, "the prior's metadata fields 'params' and 'generator' must be JSON objects")
    clean = {**meta, "n_samples": n, "slope": _number(meta, "slope", path), "gain": _number(meta, "gain", path),
             "params": params, "generator": generator, "radius": _radius(meta.get("radius"), path)}
    return mean.astype(np.float64), cov.astype(np.float64), clean


def _radius(value: Any, path: Path) -> dict[str, Any] | None:
    """The optional ``radius`` field, validated (None when the file has none)."""
    if value is None:
        return None
    expected = (f"an object {{'model': {RADIUS_MODEL!r}, 'nu': > 2, 'n_fit': integer >= {MIN_RADIUS_SAMPLES}, "
                "'seed': integer >= 0 or null}")
    if not isinstance(value, dict) or value.get("model") != RADIUS_MODEL:
        raise _fail(path, f"the prior's metadata field 'radius' must be {expected}, got {value!r:.200}")
    try:
        nu = check_nu(value.get("nu"), "the prior's metadata field radius.nu")
    except InputError as err:
        raise _fail(path, str(err)) from None
    n_fit, seed = value.get("n_fit"), value.get("seed")
    if isinstance(n_fit, bool) or not isinstance(n_fit, int) or n_fit < MIN_RADIUS_SAMPLES:
        raise _fail(path, f"the prior's metadata field radius.n_fit must be an integer >= {MIN_RADIUS_SAMPLES}, got {n_fit!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise _fail(path, f"the prior's metadata field radius.seed must be an integer >= 0 or null, got {seed!r}")
    return {"model": RADIUS_MODEL, "nu": nu, "n_fit": n_fit, "seed": seed}
