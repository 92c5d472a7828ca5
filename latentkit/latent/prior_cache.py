"""The per-generator cache of fitted priors: fitted once, then read back; an unreadable file is refitted.

Files live in ``latentkit.hub.cache_dir('priors')`` and are keyed by the generator (its checkpoint
sha256, else its source, else a hash of its parameters), the number of samples, the seed and the classes.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from latentkit.errors import LatentkitError
from latentkit.latent.prior import DEFAULT_CACHED_SAMPLES, PRIOR_FORMAT_VERSION, GaussianPrior
from latentkit.latent.sampling import resolve_classes

if TYPE_CHECKING:
    from latentkit.nets.generator import Generator

__all__ = ["cached_prior", "prior_cache_path", "DEFAULT_CACHED_SAMPLES"]

logger = logging.getLogger(__name__)


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
) -> GaussianPrior:
    """The prior of ``G`` from the cache, fitted and saved on first use.

    A cache file that cannot be read (truncated, from another version, for another ``w_dim``) is
    refitted with a warning, so a broken cache heals itself. Arguments as
    :meth:`GaussianPrior.from_generator`.

    Returns:
        A fitted :class:`~latentkit.latent.prior.GaussianPrior`.

    Example:
        >>> prior = cached_prior(G)            # 1e5 samples, fitted once per generator  # doctest: +SKIP
    """
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
    logger.info("prior: fitting %d samples (cached afterwards at %s)", n_samples, path)
    prior = GaussianPrior.from_generator(
        G, n_samples, batch_size=batch_size, seed=seed, device=device, progress=progress, classes=classes
    )
    prior.save(path)
    return prior
