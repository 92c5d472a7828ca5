"""latentkit: the latent spaces of pretrained StyleGAN generators.

Public API (imported lazily, so ``import latentkit`` and ``latentkit --help`` stay fast)::

    from latentkit import load_generator, GaussianPrior, compress, truncate, project, interpolate
    from latentkit import guide, identity_similarity, evaluate, load_latents, save_latents, LatentkitError
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from latentkit.errors import (
    CheckpointError,
    InputError,
    LatentkitError,
    NotFittedError,
    ShapeError,
    WeightsUnavailableError,
)

if TYPE_CHECKING:  # the lazy names below, visible to type checkers and IDEs (diffusers' pattern)
    from latentkit.load import load_generator
    from latentkit.nets.generator import Generator
    from latentkit.nets.wrapped import wrap
    from latentkit.latent.sampling import z_from_seed
    from latentkit.latent.prior import GaussianPrior
    from latentkit.latent.compress import compress, truncate
    from latentkit.projection.project import project, ProjectionResult, ProjectionSettings
    from latentkit.latent.interpolate import interpolate
    from latentkit.latent.guide import guide
    from latentkit.latent.prior_cache import cached_prior
    from latentkit.latent.directions import Directions, pca_directions, prior_directions, w_pca_directions
    from latentkit.latent.boundaries import condition, fit_direction
    from latentkit.latent.edit import edit, edit_sweep
    from latentkit.metrics.direction_analysis import analyse_directions
    from latentkit.projection.batch import project_files
    from latentkit.metrics.identity import identity_similarity
    from latentkit.metrics.quality import evaluate
    from latentkit.io import load_image, load_latents, save_image, save_latents
    from latentkit.projection.tune import tune, TuneResult, TuneSettings
    from latentkit.projection.delta import GeneratorDelta

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
