"""latentkit: the latent spaces of pretrained StyleGAN generators.

Public API (imported lazily, so ``import latentkit`` and ``latentkit --help`` stay fast)::

    from latentkit import load_generator, GaussianPrior, compress, truncate, project, interpolate
    from latentkit import guide, identity_similarity, evaluate, load_latents, save_latents, LatentkitError
"""

from __future__ import annotations

import importlib
from typing import Any

from latentkit.errors import (
    CheckpointError,
    InputError,
    LatentkitError,
    NotFittedError,
    ShapeError,
    WeightsUnavailableError,
)

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "load_generator": "latentkit.load",
    "Generator": "latentkit.nets.generator",
    "wrap": "latentkit.nets.wrapped",
    "z_from_seed": "latentkit.latent.sampling",
    "GaussianPrior": "latentkit.latent.prior",
    "compress": "latentkit.latent.compress",
    "truncate": "latentkit.latent.compress",
    "project": "latentkit.projection.project",
    "ProjectionSettings": "latentkit.projection.project",
    "ProjectionResult": "latentkit.projection.project",
    "interpolate": "latentkit.latent.interpolate",
    "guide": "latentkit.latent.guide",
    "cached_prior": "latentkit.latent.prior_cache",
    "Directions": "latentkit.latent.directions",
    "prior_directions": "latentkit.latent.directions",
    "pca_directions": "latentkit.latent.directions",
    "w_pca_directions": "latentkit.latent.directions",
    "fit_direction": "latentkit.latent.boundaries",
    "condition": "latentkit.latent.boundaries",
    "edit": "latentkit.latent.edit",
    "edit_sweep": "latentkit.latent.edit",
    "analyse_directions": "latentkit.metrics.direction_analysis",
    "project_files": "latentkit.projection.batch",
    "tune": "latentkit.projection.tune",
    "TuneSettings": "latentkit.projection.tune",
    "TuneResult": "latentkit.projection.tune",
    "GeneratorDelta": "latentkit.projection.delta",
    "identity_similarity": "latentkit.metrics.identity",
    "evaluate": "latentkit.metrics.quality",
    "load_latents": "latentkit.io",
    "save_latents": "latentkit.io",
    "load_image": "latentkit.io",
    "save_image": "latentkit.io",
}

__all__ = [
    "__version__",
    "LatentkitError",
    "ShapeError",
    "InputError",
    "CheckpointError",
    "NotFittedError",
    "WeightsUnavailableError",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'latentkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
