"""The data form of a pickled network object: :class:`ModuleRecord`, and :func:`plain` for its attributes."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from latentkit.errors import CheckpointError

__all__ = ["ModuleRecord", "plain"]

_MISSING = object()


@dataclass(eq=False)
class ModuleRecord:
    """One pickled network object, as data.

    Attributes:
        class_name: the class the object had, e.g. ``'Generator'``, ``'SynthesisLayer'``; for plain torch
            modules the qualified name, e.g. ``'torch.nn.modules.sparse.Embedding'``.
        state: the module's ``__dict__``: ``_parameters``, ``_buffers``, ``_modules`` (children are
            ModuleRecords), plain attributes, ``_init_args`` / ``_init_kwargs`` for persistence records.
    """

    class_name: str = ""
    state: dict[str, Any] = field(default_factory=dict)

    # BUILD of a plain torch module (NEWOBJ + BUILD); the unpickler calls it on instances only.
    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise CheckpointError(f"plain module {self.class_name!r} has a non-dict state ({type(state).__name__})")
        self.state = state

    def _table(self, key: str) -> dict:
        value = self.state.get(key, {})
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise CheckpointError(f"network object {self.class_name!r}: {key} is a {type(value).__name__}, not a dict")
        return value

    @property
    def init_args(self) -> tuple:
        """Positional constructor arguments (persistence records only)."""
        args = plain(self.state.get("_init_args", ()))
        if not isinstance(args, (tuple, list)):
            raise CheckpointError(f"network object {self.class_name!r}: _init_args is not a tuple")
        return tuple(args)

    @property
    def init_kwargs(self) -> dict[str, Any]:
        """Keyword constructor arguments, nested ``EasyDict`` turned into ``dict``."""
        return plain(dict(self._table("_init_kwargs")))

    @property
    def parameters(self) -> dict[str, torch.Tensor]:
        """Own parameters, name -> tensor (``None`` entries dropped)."""
        return self._tensors("_parameters")

    @property
    def buffers(self) -> dict[str, torch.Tensor]:
        """Own persistent buffers (``None`` and non-persistent entries dropped)."""
        skip = self.state.get("_non_persistent_buffers_set", ()) or ()
        if not isinstance(skip, (set, frozenset, list, tuple)):
            raise CheckpointError(f"network object {self.class_name!r}: _non_persistent_buffers_set is not a set")
        return {k: v for k, v in self._tensors("_buffers").items() if k not in skip}

    def _tensors(self, key: str) -> dict[str, torch.Tensor]:
        out = {}
        for name, value in self._table(key).items():
            if value is None:
                continue
            if not isinstance(name, str) or not isinstance(value, torch.Tensor):
                raise CheckpointError(
                    f"network object {self.class_name!r}: {key}[{name!r:.40}] is a {type(value).__name__}, not a tensor"
                )
            out[name] = value
        return out

    @property
    def children(self) -> dict[str, ModuleRecord]:
        """Child modules in insertion order (``None`` entries dropped)."""
        out = {}
        for name, value in self._table("_modules").items():
            if value is None:
                continue
            if not isinstance(name, str) or not isinstance(value, ModuleRecord):
                raise CheckpointError(
                    f"network object {self.class_name!r}: child {name!r:.40} is a {type(value).__name__}, not a module"
                )
            out[name] = value
        return out

    def __getitem__(self, dotted: str) -> ModuleRecord:
        """The descendant at a dotted path, e.g. ``record['synthesis.b4.conv1']``.

        Raises:
            CheckpointError: if a path component does not exist.
        """
        node = self
        for part in dotted.split("."):
            children = node.children
            if part not in children:
                raise CheckpointError(
                    f"network object {node.class_name!r} has no child {part!r} (path {dotted!r}); "
                    f"children: {sorted(children)}"
                )
            node = children[part]
        return node

    def __contains__(self, dotted: str) -> bool:
        try:
            self[dotted]
        except CheckpointError:
            return False
        return True

    def attr(self, name: str, default: Any = _MISSING) -> Any:
        """A plain attribute of the object; numpy scalars become Python numbers.

        Raises:
            CheckpointError: if the attribute is absent and no default was given.
        """
        if name not in self.state:
            if default is _MISSING:
                raise CheckpointError(f"network object {self.class_name!r} has no attribute {name!r}")
            return default
        return plain(self.state[name])

    def state_dict(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Parameters and buffers of the whole subtree, with dotted keys in ``Module.state_dict()`` order."""
        out: dict[str, torch.Tensor] = {}
        for name, tensor in self.parameters.items():
            out[prefix + name] = tensor
        for name, tensor in self.buffers.items():
            out[prefix + name] = tensor
        for name, child in self.children.items():
            out.update(child.state_dict(prefix + name + "."))
        return out

    def __repr__(self) -> str:
        return f"ModuleRecord({self.class_name!r}, children={list(self.children)})"


def plain(value: Any) -> Any:
    """numpy scalars -> Python scalars; dict subclasses -> dict; recursively through containers.

    The unpickler has already bounded the nesting depth and refused cycles, so the recursion is bounded.
    """
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict) and not isinstance(value, OrderedDict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    return value
