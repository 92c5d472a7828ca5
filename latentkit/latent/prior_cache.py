"""The per-generator cache of fitted priors: fitted once, then read back; an unreadable file is refitted.

Files live in ``latentkit.hub.cache_dir('priors')`` and are keyed by the generator (its checkpoint
sha256, else its source, else a hash of its parameters), the number of samples, the seed and the classes.
With ``radius="student-t"`` the Student-t's nu is fitted once on held-out samples (seed + 3) and stored in
the same file's optional ``radius`` field (:mod:`latentkit.latent.prior_file`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from latentkit.errors import InputError, LatentkitError
from latentkit.latent.prior import DEFAULT_CACHED_SAMPLES, PRIOR_FORMAT_VERSION, GaussianPrior
from latentkit.latent.radius import DEFAULT_NU_SAMPLES, NU_SEED_OFFSET, RADIUS_MODELS, StudentTRadius, fit_student_t
from latentkit.latent.sampling import resolve_classes

if TYPE_CHECKING:
    from latentkit.nets.generator import Generator

__all__ = ["cached_prior", "load_prior_for", "prior_cache_path", "shipped_prior_dir", "DEFAULT_CACHED_SAMPLES",
           "SHIPPED_PRIORS"]

logger = logging.getLogger(__name__)

SHIPPED_PRIORS: dict[str, str] = {
    "sha-e5d10e2be7df63f0_n100000_s0_v1.npz": "f61970d6bdbd127db557ecc59e0243d322ecda03b9e915c1867a7a526ba9bd5f",
}
"""Prior files shipped in ``latentkit/data/priors`` (cache file name -> sha256), read instead of fitting on
first use: the default offline network's, made by ``benchmarks/make_shipped_prior.py`` (the same 100 000
samples and seed as a fit here, stored as float32)."""


def shipped_prior_dir() -> Path:
    """The folder of the prior files shipped with latentkit."""
    return Path(__file__).resolve().parents[1] / "data" / "priors"


def _shipped_prior(path: Path) -> GaussianPrior | None:
    """The shipped prior named like the cache file ``path``, if there is one and its sha256 is the recorded one."""
    from latentkit.hub import file_sha256

    expected = SHIPPED_PRIORS.get(path.name)
    shipped = shipped_prior_dir() / path.name
    if expected is None or not shipped.is_file():
        return None
    if file_sha256(shipped) != expected:
        logger.warning("prior: the shipped file %s does not match its recorded sha256; fitting instead", shipped)
        return None
    prior = GaussianPrior.load(shipped)
    logger.info("prior: using the prior shipped with latentkit for this network (%d samples, z seed 0; %s)",
                prior.n_samples_, shipped)
    return prior


def _generator_key(G: Generator) -> str:
    if getattr(G, "sha256", ""):
        return "sha-" + G.sha256[:16]
    if getattr(G, "source", ""):
        return "src-" + hashlib.sha256(str(G.source).encode()).hexdigest()[:16]
    digest = hashlib.sha256()
    for name, tensor in sorted(G.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return "par-" + digest.hexdigest()[:16]


def prior_cache_path(
    G: Generator, *, n_samples: int = DEFAULT_CACHED_SAMPLES, seed: int = 0, classes: Sequence[int] | None = None
) -> Path:
    """Where :func:`cached_prior` keeps the prior of ``G`` for these settings (the file may not exist yet)."""
    from latentkit.hub import cache_dir

    chosen = resolve_classes(G, classes)
    cls_part = "" if chosen is None or len(chosen) == G.c_dim else "_c" + "-".join(map(str, chosen))
    name = f"{_generator_key(G)}_n{int(n_samples)}_s{int(seed)}{cls_part}_v{PRIOR_FORMAT_VERSION}.npz"
    return cache_dir("priors") / name


def cached_prior(
    G: Generator,
    *,
    n_samples: int = DEFAULT_CACHED_SAMPLES,
    seed: int = 0,
    classes: Sequence[int] | None = None,
    batch_size: int = 10_000,
    device: torch.device | str | None = None,
    progress: bool = True,
    radius: str = "gaussian",
) -> GaussianPrior | StudentTRadius:
    """The prior of ``G`` from the cache, fitted and saved on first use.

    A cache file that cannot be read (truncated, from another version, for another ``w_dim``) is
    refitted with a warning, so a broken cache heals itself. Arguments as
    :meth:`GaussianPrior.from_generator`, and:

    Args:
        radius: ``'gaussian'`` (the Gaussian prior) or ``'student-t'``: the covariance-matched Student-t
            around it (:class:`~latentkit.latent.radius.StudentTRadius`), whose nu is fitted on 20 000
            held-out samples (z seed ``seed + 3``) on first use and kept in the same cache file.

    Returns:
        A fitted :class:`~latentkit.latent.prior.GaussianPrior`, or a
        :class:`~latentkit.latent.radius.StudentTRadius` for ``radius='student-t'``.

    Raises:
        InputError: ``radius`` not one of ``'gaussian'``, ``'student-t'``.

    Example:
        >>> prior = cached_prior(G)            # 1e5 samples, fitted once per generator  # doctest: +SKIP
        >>> t = cached_prior(G, radius="student-t")      # the same prior with a fitted nu  # doctest: +SKIP
    """
    if radius not in RADIUS_MODELS:
        raise InputError(f"radius must be one of {', '.join(map(repr, RADIUS_MODELS))}, got {radius!r}")
    prior = _cached_gaussian(G, n_samples, seed, classes, batch_size, device, progress)
    if radius == "gaussian":
        return prior
    return _cached_nu(G, prior, prior_cache_path(G, n_samples=n_samples, seed=seed, classes=classes),
                      seed + NU_SEED_OFFSET, batch_size, device)


def _cached_nu(G: Generator, prior: GaussianPrior, path: Path, seed: int, batch_size: int,
               device: torch.device | str | None) -> StudentTRadius:
    """The t around ``prior`` with the nu stored in its cache file ``path``, fitted and stored when missing."""
    try:
        model = StudentTRadius.load(path)
    except (LatentkitError, OSError, ValueError):
        model = None
    if model is not None and (model.n_fit_, model.fit_seed_, model.w_dim) == (DEFAULT_NU_SAMPLES, seed, G.w_dim):
        logger.info("prior: using the cached Student-t nu = %.4g, %s", model.nu_, path)
        return StudentTRadius.from_nu(prior, model.nu_, n_fit=model.n_fit_, seed=model.fit_seed_)
    logger.info("prior: fitting the Student-t nu on %d held-out samples (seed %d; cached in %s)",
                DEFAULT_NU_SAMPLES, seed, path)
    model = fit_student_t(prior, G, seed=seed, batch_size=batch_size, device=device)
    model.save(path)
    return model


def _cached_gaussian(G, n_samples, seed, classes, batch_size, device, progress) -> GaussianPrior:
    path = prior_cache_path(G, n_samples=n_samples, seed=seed, classes=classes)
    if path.is_file():
        try:
            prior = GaussianPrior.load(path)
        except (LatentkitError, OSError, ValueError) as err:
            logger.warning("prior: the cached file %s cannot be read (%s); fitting it again", path, err)
        else:
            if prior.w_dim == G.w_dim:
                logger.info("prior: using the cached fit of %d samples, %s", prior.n_samples_, path)
                return prior
            logger.warning("prior: the cached file %s has w_dim %d, not %d; fitting it again", path, prior.w_dim, G.w_dim)
    shipped = _shipped_prior(path)
    if shipped is not None and shipped.w_dim == G.w_dim:
        return shipped
    logger.info("prior: fitting this network's Gaussian prior once, on %d mapped samples (cached afterwards at %s)",
                n_samples, path)
    prior = GaussianPrior.from_generator(
        G, n_samples, batch_size=batch_size, seed=seed, device=device, progress=progress, classes=classes
    )
    prior.save(path)
    return prior


def load_prior_for(G: Generator, path: str | os.PathLike) -> GaussianPrior:
    """The Gaussian prior file ``path``, checked against the generator it will be used with.

    Raises:
        InputError: an unreadable or invalid prior file, or one of another ``w_dim`` than ``G``.

    Warns:
        UserWarning: the file records another checkpoint's sha256 than ``G``'s (same shape, other weights).
    """
    prior = GaussianPrior.load(path)
    if prior.w_dim != G.w_dim:
        raise InputError(f"prior {path} has w_dim {prior.w_dim}, the network has {G.w_dim}: fit one for this network "
                         "with `latentkit fit-prior` or GaussianPrior.from_generator(G)")
    sha = prior.generator_.get("sha256")
    if sha and G.sha256 and sha != G.sha256:
        warnings.warn(f"prior {path} was fitted on another checkpoint (sha256 differs)", stacklevel=2)
    return prior
