"""The public names of ``latentkit`` are the functions, even after their modules were imported."""

from __future__ import annotations

import importlib
import inspect

import latentkit


def test_public_functions_are_not_shadowed_by_their_modules():
    for name in ("compress", "project", "interpolate", "guide"):
        importlib.import_module(f"latentkit.{name}")  # what any internal import does
        value = getattr(latentkit, name)
        assert inspect.isfunction(value), f"latentkit.{name} is {value!r}"
    from latentkit import compress, interpolate

    assert compress.__module__ == "latentkit.compress" and inspect.isfunction(interpolate)


def test_every_public_name_resolves():
    for name in latentkit.__all__:
        assert getattr(latentkit, name) is not None
