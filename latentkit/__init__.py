"""latentkit: the latent spaces of pretrained StyleGAN generators.

Public API (imported lazily, so ``import latentkit`` and ``latentkit --help`` stay fast)::

    from latentkit import load_generator, GaussianPrior, compress, truncate, project, interpolate
    from latentkit import guide, identity_similarity, evaluate, load_latents, save_latents, LatentkitError
"""

from __future__ import annotations

import importlib
import sys
import types
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
    "z_from_seed": "latentkit.sampling",
    "GaussianPrior": "latentkit.prior",
    "compress": "latentkit.compress",
    "truncate": "latentkit.compress",
    "project": "latentkit.project",
    "ProjectionSettings": "latentkit.project",
    "ProjectionResult": "latentkit.project",
    "interpolate": "latentkit.interpolate",
    "guide": "latentkit.guide",
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


class _Package(types.ModuleType):
    """The package object. Importing a submodule normally binds it as an attribute of its package, which
    would make ``from latentkit import compress`` return the module ``latentkit.compress`` instead of the
    function it defines; for those names the function stays the public attribute."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _LAZY.get(name) == f"{__name__}.{name}":
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'latentkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
