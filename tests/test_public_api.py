"""The public names of ``latentkit``: each resolves lazily to what its module defines, also after the
modules were imported, and the names stay those the style guide fixes."""

from __future__ import annotations

import importlib
import inspect

import latentkit
from latentkit import _LAZY


def test_public_functions_are_not_shadowed_by_their_modules():
    for name in ("compress", "project", "interpolate", "guide"):
        importlib.import_module(_LAZY[name])  # what any internal import does
        value = getattr(latentkit, name)
        assert inspect.isfunction(value), f"latentkit.{name} is {value!r}"
    from latentkit import compress, interpolate

    assert compress.__module__ == "latentkit.latent.compress" and inspect.isfunction(interpolate)


def test_every_public_name_resolves_to_its_modules_object():
    for name, module in _LAZY.items():
        value = getattr(latentkit, name)
        assert value is getattr(importlib.import_module(module), name), name
        assert inspect.isfunction(value) or inspect.isclass(value), f"{name} is {value!r}"
    assert isinstance(latentkit.__version__, str) and set(_LAZY) <= set(latentkit.__all__)


def test_style_guide_names_are_public():
    fixed = {"load_generator", "GaussianPrior", "compress", "truncate", "project", "interpolate", "guide",
             "identity_similarity", "evaluate", "load_latents", "save_latents", "LatentkitError"}
    assert fixed <= set(latentkit.__all__)
