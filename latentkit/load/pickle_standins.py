"""Frozen stand-ins that the restricted unpickler puts where a pickle names a class or function.

None of them is the real object: an allow-listed global becomes a :class:`Global` (immutable, callable only
through the unpickler's checked REDUCE/NEWOBJ), numpy dtypes and arrays are built in :class:`DTypeStandIn`
and :class:`ArrayStandIn` from their raw bytes (numeric dtypes only, size charged to the load's budget).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from latentkit.errors import CheckpointError
from latentkit.load.pickle_guard import LoadBudget

__all__ = ["Global", "DTypeStandIn", "ArrayStandIn", "EasyDictStandIn", "check_sizes"]

_MAX_NDIM = 32


class _EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict``: a plain dict. Instances only; the class never reaches a pickle."""


class Global:
    """What an allow-listed global resolves to: callable (REDUCE) and/or constructible (NEWOBJ), immutable."""

    __slots__ = ("label", "call", "new")

    def __init__(self, label: str, call: Callable | None = None, new: Callable | None = None) -> None:
        object.__setattr__(self, "label", label)
        object.__setattr__(self, "call", call)
        object.__setattr__(self, "new", new)

    def __setattr__(self, key: str, value: Any) -> None:
        raise CheckpointError(f"the pickle tried to modify the allow-listed global {self.label}")

    def __repr__(self) -> str:
        return f"<allow-listed {self.label}>"


class DTypeStandIn:
    """A numpy dtype under construction (``numpy.dtype(str)`` then BUILD with its byte order)."""

    __slots__ = ("dtype",)

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = dtype

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) in (8, 9) and state[0] in (3, 4)
                and state[1] in ("<", ">", "|", "=") and state[2:5] == (None, None, None)):
            raise CheckpointError(f"unsupported numpy dtype state {state!r:.80} (only plain numeric dtypes)")
        if state[1] in "<>":
            self.dtype = self.dtype.newbyteorder(state[1])


class ArrayStandIn:
    """A numpy array under construction (``_reconstruct`` then BUILD with shape, dtype and raw bytes)."""

    __slots__ = ("array", "budget")

    def __init__(self, budget: LoadBudget) -> None:
        self.array: np.ndarray | None = None
        self.budget = budget

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 5:
            state = state[1:]
        if not (isinstance(state, tuple) and len(state) == 4):
            raise CheckpointError("malformed numpy array state")
        shape, dtype, fortran, raw = state
        if not isinstance(dtype, DTypeStandIn) or not isinstance(raw, (bytes, bytearray)):
            raise CheckpointError("numpy arrays must have a plain numeric dtype and raw bytes (no object arrays)")
        shape = check_sizes(shape, "numpy array shape")
        nbytes = math.prod(shape) * dtype.dtype.itemsize
        if nbytes != len(raw):
            raise CheckpointError(f"numpy array of shape {list(shape)} needs {nbytes:,} bytes, the file has {len(raw):,}")
        self.budget.charge(nbytes, f"a numpy array of shape {list(shape)}")
        flat = np.frombuffer(raw, dtype=dtype.dtype)
        self.array = flat.reshape(shape, order="F" if fortran else "C").copy()


def check_sizes(values: Any, what: str) -> tuple[int, ...]:
    if not isinstance(values, (tuple, list)) or len(values) > _MAX_NDIM:
        raise CheckpointError(f"malformed {what} {values!r:.80}")
    if not all(type(v) is int and v >= 0 for v in values):
        raise CheckpointError(f"malformed {what} {values!r:.80}: sizes must be non-negative integers")
    return tuple(values)



EasyDictStandIn = _EasyDict
