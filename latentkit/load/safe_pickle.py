"""A restricted unpickler for NVIDIA-style network pickles (stylegan2-ada-pytorch, stylegan3, StyleGAN-XL).

Checkpoints are untrusted input. NVIDIA's own loader rebuilds every network object by executing the
Python source stored inside the pickle. This module reads the same files as *data*:

* only an explicit allow-list of globals can be resolved; anything else raises
  :class:`~latentkit.errors.CheckpointError` naming the refused global;
* each persistence record (class name, constructor arguments, parameters, buffers, stored source) becomes
  a :class:`ModuleRecord`; its source text is never looked at, let alone executed;
* tensor storages, which NVIDIA's files store as nested legacy ``torch.save`` streams handed to
  ``torch.storage._load_from_bytes`` (a function that calls ``torch.load(weights_only=False)``), are
  parsed here by a second, even smaller unpickler that knows only the ``torch.<Type>Storage`` classes;
* numpy scalars and arrays are accepted only for non-object dtypes.
"""

from __future__ import annotations

import _compat_pickle
import io
import logging
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentkit.errors import CheckpointError

__all__ = ["ModuleRecord", "read_network_pickle", "loads_network_pickle"]

logger = logging.getLogger(__name__)

_MISSING = object()
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# torch.<Type>Storage -> dtype of the raw bytes that follow a legacy stream
_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "UntypedStorage": torch.uint8,
}

# Plain (non-persistent) torch modules that may appear inside a network object. They are never
# instantiated: their __dict__ becomes a ModuleRecord like any persistence record.
_PLAIN_MODULES = {
    ("torch.nn.modules.sparse", "Embedding"),
    ("torch.nn.modules.linear", "Linear"),
    ("torch.nn.modules.linear", "Identity"),
    ("torch.nn.modules.container", "ModuleList"),
    ("torch.nn.modules.container", "ModuleDict"),
    ("torch.nn.modules.container", "Sequential"),
}

_NUMPY_UMATH_MODULES = ("numpy.core._multiarray_umath", "numpy._core._multiarray_umath")


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

    # NEWOBJ + BUILD path used for plain torch modules (see _plain_module_class).
    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise CheckpointError(f"plain module {self.class_name!r} has a non-dict state ({type(state).__name__})")
        self.state = state

    @property
    def init_args(self) -> tuple:
        """Positional constructor arguments (persistence records only)."""
        return tuple(_plain(self.state.get("_init_args", ())))

    @property
    def init_kwargs(self) -> dict[str, Any]:
        """Keyword constructor arguments, nested ``EasyDict`` turned into ``dict``."""
        return _plain(dict(self.state.get("_init_kwargs", {})))

    @property
    def parameters(self) -> dict[str, torch.Tensor]:
        """Own parameters, name -> tensor (``None`` entries dropped)."""
        return {k: v for k, v in self.state.get("_parameters", {}).items() if v is not None}

    @property
    def buffers(self) -> dict[str, torch.Tensor]:
        """Own persistent buffers (``None`` and non-persistent entries dropped)."""
        skip = set(self.state.get("_non_persistent_buffers_set", ()) or ())
        return {k: v for k, v in self.state.get("_buffers", {}).items() if v is not None and k not in skip}

    @property
    def children(self) -> dict[str, ModuleRecord]:
        """Child modules in insertion order (``None`` entries dropped)."""
        return {k: v for k, v in self.state.get("_modules", {}).items() if v is not None}

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
        return _plain(self.state[name])

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


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars; dict subclasses -> dict; recursively through containers."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict) and not isinstance(value, OrderedDict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return value


class _EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict``: a plain dict (attribute access is not needed)."""


def _plain_module_class(qualified: str) -> type:
    return type("PlainModuleRecord", (ModuleRecord,), {"class_name": qualified})


# ---------------------------------------------------------------------------------------------------
# Safe stand-ins for the allow-listed globals.


def _reconstruct_persistent_obj(meta: Any) -> ModuleRecord:
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise CheckpointError(
            "unsupported persistence record: expected a dict with type 'class', "
            f"got {type(meta).__name__} {meta.get('type') if isinstance(meta, dict) else ''!r}"
        )
    class_name = meta.get("class_name")
    state = meta.get("state")
    if not isinstance(class_name, str) or not isinstance(state, dict):
        raise CheckpointError("malformed persistence record: 'class_name' must be str and 'state' a dict")
    # meta['module_src'] is deliberately ignored: it is never executed or even parsed.
    return ModuleRecord(class_name=class_name, state=state)


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None, *state: Any) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise CheckpointError(f"a parameter must wrap a tensor, got {type(data).__name__}")
    return data


def _rebuild_tensor_v2(storage: Any, storage_offset: Any, size: Any, stride: Any, *rest: Any) -> torch.Tensor:
    if not isinstance(storage, torch.Tensor) or storage.ndim != 1:
        raise CheckpointError(f"a tensor must be built on a storage, got {type(storage).__name__}")
    try:
        size = tuple(int(s) for s in size)
        stride = tuple(int(s) for s in stride)
        offset = int(storage_offset)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"malformed tensor record (size {size!r}, stride {stride!r})") from err
    if len(size) != len(stride) or offset < 0 or any(s < 0 for s in size) or any(s < 0 for s in stride):
        raise CheckpointError(f"malformed tensor record (size {size}, stride {stride}, offset {offset})")
    extent = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1 if all(size) else 0
    if extent > storage.numel():
        raise CheckpointError(
            f"tensor of size {list(size)} (stride {list(stride)}, offset {offset}) reaches past its "
            f"storage of {storage.numel()} elements"
        )
    return torch.as_strided(storage, size, stride, offset).clone()


def _numpy_dtype(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise CheckpointError(f"numpy object dtype {dtype!r} is not allowed in a checkpoint")
    return dtype


def _numpy_scalar(dtype: Any, data: Any = None) -> np.generic:
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise CheckpointError(f"numpy scalar of dtype {dtype!r} is not allowed in a checkpoint")
    if not isinstance(data, bytes):
        raise CheckpointError("numpy scalar without raw bytes is not allowed in a checkpoint")
    return np.frombuffer(data, dtype=dtype, count=1)[0].copy()


def _numpy_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise CheckpointError(f"only numpy.ndarray can be reconstructed, got {subtype!r}")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


class _NumpyUmath:
    """What dill's ``_import_module('numpy.core._multiarray_umath')`` may return: two functions only."""

    scalar = staticmethod(_numpy_scalar)
    _reconstruct = staticmethod(_numpy_reconstruct)


def _dill_import_module(name: Any, safe: bool = False) -> type:
    if name not in _NUMPY_UMATH_MODULES:
        raise CheckpointError(f"refused global: dill._dill._import_module({name!r}) is not allow-listed")
    return _NumpyUmath


def _dill_get_attr(obj: Any, name: Any) -> Callable:
    if obj is not _NumpyUmath or name not in ("scalar", "_reconstruct"):
        raise CheckpointError(f"refused global: dill._dill._get_attr(..., {name!r}) is not allow-listed")
    return getattr(_NumpyUmath, name)


# ---------------------------------------------------------------------------------------------------
# The nested legacy torch.save stream of one storage.


class _StorageType:
    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


class _InnerUnpickler(pickle.Unpickler):
    """Reads the pickles of a legacy ``torch.save`` stream: only ``torch.<Type>Storage`` is resolvable."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file)
        self.storages: dict[str, tuple[torch.dtype, int]] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise CheckpointError(f"refused global inside a tensor storage: {module}.{name} is not allow-listed")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise CheckpointError(f"malformed storage reference in a tensor payload: {pid!r:.80}")
        _, storage_type, key, _location, numel = pid[:5]
        if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise CheckpointError("malformed storage reference in a tensor payload")
        # The location tag ('cpu', 'cuda:0', ...) is ignored: every storage is read onto the CPU.
        self.storages[key] = (storage_type.dtype, numel)
        return key


def _load_storage_from_bytes(payload: Any) -> torch.Tensor:
    """Parse one legacy ``torch.save`` stream holding a single storage; returns it as a 1-D tensor."""
    if not isinstance(payload, (bytes, bytearray)):
        raise CheckpointError("tensor payload must be bytes")
    stream = io.BytesIO(payload)
    try:
        unpickler = _InnerUnpickler(stream)
        magic = unpickler.load()
        protocol = unpickler.load()
        sys_info = unpickler.load()
        if magic != _LEGACY_MAGIC or protocol != _LEGACY_PROTOCOL or not isinstance(sys_info, dict):
            raise CheckpointError("tensor payload is not a legacy torch.save stream (bad magic number)")
        if not sys_info.get("little_endian", True):
            raise CheckpointError("big-endian tensor payloads are not supported")
        key = unpickler.load()
        keys = unpickler.load()
    except CheckpointError:
        raise
    except Exception as err:  # malformed inner pickles: EOFError, UnpicklingError, ...
        raise CheckpointError(f"corrupt tensor payload: {err}") from err
    if not isinstance(keys, list) or len(keys) != 1 or keys[0] != key or key not in unpickler.storages:
        raise CheckpointError("tensor payload must hold exactly one storage")
    dtype, numel = unpickler.storages[key]
    header = stream.read(8)
    if len(header) != 8:
        raise CheckpointError("tensor payload is truncated (no element count)")
    (count,) = struct.unpack("<q", header)
    itemsize = torch.empty((), dtype=dtype).element_size()
    raw = stream.read(count * itemsize) if 0 <= count <= len(payload) else b""
    if count != numel or len(raw) != numel * itemsize:
        raise CheckpointError(f"tensor payload is truncated: expected {numel} elements of {dtype}, got {len(raw) // max(itemsize, 1)}")
    if numel == 0:
        return torch.empty(0, dtype=dtype)
    return torch.frombuffer(bytearray(raw), dtype=dtype)


# ---------------------------------------------------------------------------------------------------
# The outer unpickler.

_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("collections", "OrderedDict"): OrderedDict,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("dill._dill", "_import_module"): _dill_import_module,
    ("dill._dill", "_get_attr"): _dill_get_attr,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        # Python 2 spellings (protocol 0-2 files: __builtin__, copy_reg), mapped as pickle's own find_class does
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        allowed = _ALLOWED.get((module, name))
        if allowed is not None:
            return allowed
        if (module, name) in _PLAIN_MODULES:
            return _plain_module_class(f"{module}.{name}")
        raise CheckpointError(
            f"refused global {module}.{name}: it is not on latentkit's allow-list for network pickles "
            "(the file may be malicious, or a format latentkit does not know)"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise CheckpointError("unexpected persistent id in a network pickle (is this a torch.save file? use a .pt loader)")


def loads_network_pickle(data: bytes, *, name: str = "<bytes>") -> Any:
    """Unpickle ``data`` with the restricted allow-list (see :func:`read_network_pickle`)."""
    if data[:4] == b"PK\x03\x04":
        raise CheckpointError(
            f"{name} is a zip archive (a torch.save checkpoint such as rosinality's .pt), not a network pickle"
        )
    if not data or data[:1] != b"\x80":
        raise CheckpointError(f"{name} is not a pickle file (no pickle protocol header)")
    try:
        return _RestrictedUnpickler(io.BytesIO(data)).load()
    except CheckpointError as err:
        raise CheckpointError(f"{name}: {err}") from None
    except RecursionError as err:
        raise CheckpointError(f"{name}: pickle nesting too deep") from err
    except (EOFError, pickle.UnpicklingError, struct.error) as err:
        raise CheckpointError(f"{name} is truncated or not a valid pickle ({type(err).__name__}: {err})") from err
    except (TypeError, ValueError, AttributeError, IndexError, KeyError, MemoryError) as err:
        raise CheckpointError(f"{name} is malformed ({type(err).__name__}: {err})") from err


def read_network_pickle(path: str | os.PathLike) -> Any:
    """Read an NVIDIA-style network pickle as data, never executing anything from it.

    Args:
        path: a ``.pkl`` written by stylegan2-ada-pytorch, stylegan3 or StyleGAN-XL.

    Returns:
        The top-level object (normally a dict with ``'G'``, ``'D'``, ``'G_ema'``, ...); every network
        object in it is a :class:`ModuleRecord`, every tensor a CPU ``torch.Tensor``.

    Raises:
        CheckpointError: the file is missing, truncated, not a pickle, or refers to a global outside the
            allow-list (the message names it).

    Example:
        >>> data = read_network_pickle("network-snapshot.pkl")  # doctest: +SKIP
        >>> data["G_ema"].init_kwargs["z_dim"]  # doctest: +SKIP
        512
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is a zip archive (a torch.save checkpoint such as rosinality's .pt), not a network pickle")
    return loads_network_pickle(path.read_bytes(), name=str(path))
