"""A restricted unpickler for NVIDIA's original TensorFlow network pickles (StyleGAN2, StyleGAN2-ADA TF).

Those files hold ``dnnlib.tflib.network.Network`` objects (usually the tuple ``(G, D, Gs)``). NVIDIA's own
TensorFlow code rebuilds each one by executing the Python source stored in the pickle
(``build_module_src``); NVIDIA's PyTorch ``legacy.py`` unpickles them into a plain stub instead. This
module does the latter, as data:

* only an explicit allow-list of globals resolves (:data:`ALLOWED_GLOBALS`); anything else raises
  :class:`~latentkit.errors.CheckpointError` naming the refused global;
* each ``Network`` becomes a :class:`TFNetwork` whose state is validated field by field (version, name,
  static keyword arguments, components, variables); ``build_module_src`` is never executed, parsed or kept;
* variables must be numeric numpy arrays (no object dtypes) and every array is bounded by the file's size.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from latentkit.errors import CheckpointError
from latentkit.load.pickle_guard import CALL_OPCODES, DATA_OPCODES, lookup_global, scan_opcodes

__all__ = ["TFNetwork", "ALLOWED_GLOBALS", "TF_NETWORK_GLOBAL", "loads_tf_pickle", "read_tf_pickle",
           "is_tf_pickle_head"]

TF_NETWORK_GLOBAL = ("dnnlib.tflib.network", "Network")
"""The (module, name) under which NVIDIA's TensorFlow code pickles its networks."""

_NUMERIC_KINDS = "biuf"  # bool, signed, unsigned, float


class TFNetwork:
    """One ``dnnlib.tflib.network.Network`` read as data.

    Attributes:
        version: the pickle state version (2, 3 or 4; the converter needs 4).
        name: the network's name, e.g. ``'G_synthesis'``.
        static_kwargs: the build function's keyword arguments (numpy scalars become Python numbers).
        components: sub-networks by name (``'mapping'``, ``'synthesis'``), each a TFNetwork.
        variables: own variables in file order, TF name (e.g. ``'4x4/Conv/weight'``) -> numpy array.
    """

    _loaded = False  # NEWOBJ creates instances without __init__; BUILD (__setstate__) fills them

    def __init__(self) -> None:
        self.version = 0
        self.name = ""
        self.static_kwargs: dict[str, Any] = {}
        self.components: dict[str, TFNetwork] = {}
        self.variables: dict[str, np.ndarray] = {}
        self._loaded = False

    def __setstate__(self, state: Any) -> None:
        # Called by the unpickler's BUILD opcode. Nothing in `state` is executed: build_module_src and
        # build_func_name are dropped unread.
        if self._loaded:
            raise CheckpointError("a TensorFlow Network object is built twice (malformed pickle)")
        if not isinstance(state, dict):
            raise CheckpointError(f"TensorFlow Network state must be a dict, got {type(state).__name__}")
        version = state.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version not in (2, 3, 4):
            raise CheckpointError(f"TensorFlow Network state has version {version!r}; expected 2, 3 or 4")
        name = state.get("name")
        if not isinstance(name, str):
            raise CheckpointError("TensorFlow Network state has no string 'name'")
        kwargs = state.get("static_kwargs", {})
        if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
            raise CheckpointError(f"TensorFlow Network {name!r}: 'static_kwargs' must be a dict with string keys")
        components = state.get("components", {})
        if not isinstance(components, dict) or not all(
            isinstance(k, str) and isinstance(v, TFNetwork) for k, v in components.items()
        ):
            raise CheckpointError(f"TensorFlow Network {name!r}: 'components' must map names to Network objects")
        variables = state.get("variables", [])
        if not isinstance(variables, (list, tuple)):
            raise CheckpointError(f"TensorFlow Network {name!r}: 'variables' must be a list of (name, array)")
        own: dict[str, np.ndarray] = {}
        for item in variables:
            if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str)):
                raise CheckpointError(f"TensorFlow Network {name!r}: a variable entry is not a (name, array) pair")
            var_name, value = item
            if not isinstance(value, np.ndarray) or type(value) is not np.ndarray:
                raise CheckpointError(
                    f"TensorFlow Network {name!r}: variable {var_name!r} is a {type(value).__name__}, "
                    "expected a numpy array"
                )
            if value.dtype.hasobject or value.dtype.kind not in _NUMERIC_KINDS or value.dtype.fields:
                raise CheckpointError(
                    f"TensorFlow Network {name!r}: variable {var_name!r} has dtype {value.dtype}; only numeric "
                    "arrays are allowed in a checkpoint"
                )
            if var_name in own:
                raise CheckpointError(f"TensorFlow Network {name!r}: variable {var_name!r} appears twice")
            own[var_name] = value
        self.version, self.name = version, name
        self.static_kwargs = {k: _plain(v, f"{name}.static_kwargs[{k!r}]") for k, v in kwargs.items()}
        self.components = dict(components)
        self.variables = own
        self._loaded = True

    def __setitem__(self, key: Any, value: Any) -> None:
        # A stub written as a dict subclass (as legacy.py's own stub is) pickles its state as dict items
        # (SETITEMS) instead of BUILD: collect them; they are validated like a BUILD state when loading ends.
        if self._loaded:
            raise CheckpointError("a TensorFlow Network object gets items after its state (malformed pickle)")
        pending = self.__dict__.setdefault("_pending", {})
        if len(pending) >= 16:
            raise CheckpointError("a TensorFlow Network object has too many state entries (malformed pickle)")
        pending[key] = value

    def all_variables(self, prefix: str = "") -> dict[str, np.ndarray]:
        """Own and components' variables, components' names prefixed as ``'mapping/Dense0/weight'``."""
        out = {prefix + key: value for key, value in self.variables.items()}
        for comp_name, comp in self.components.items():
            out.update(comp.all_variables(prefix + comp_name + "/"))
        return out

    def __repr__(self) -> str:
        return f"TFNetwork({self.name!r}, components={list(self.components)}, variables={len(self.variables)})"


def _plain(value: Any, where: str) -> Any:
    """numpy scalars -> Python numbers, containers recursively; refuse anything that is not plain data."""
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v, where) for v in value) if type(value) in (list, tuple) else list(value)
    if isinstance(value, dict):
        return {k: _plain(v, where) for k, v in value.items()}
    if isinstance(value, np.ndarray) and not value.dtype.hasobject:
        return value
    raise CheckpointError(f"{where} holds a {type(value).__name__}; only plain data is allowed there")


class _EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict``: a plain dict."""


def _numpy_dtype(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise CheckpointError(f"numpy object dtype {dtype!r} is not allowed in a checkpoint")
    return dtype


def _numpy_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise CheckpointError(f"only numpy.ndarray can be reconstructed, got {subtype!r}")
    if not isinstance(dtype, (bytes, str)) or dtype not in (b"b", "b"):
        raise CheckpointError("malformed numpy array record")
    return np.ndarray.__new__(np.ndarray, (0,), np.uint8)


def _numpy_scalar(dtype: Any, data: Any = None) -> np.generic:
    if not isinstance(dtype, np.dtype) or dtype.hasobject or dtype.kind not in _NUMERIC_KINDS:
        raise CheckpointError(f"numpy scalar of dtype {dtype!r} is not allowed in a checkpoint")
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise CheckpointError("numpy scalar without its raw bytes is not allowed in a checkpoint")
    return np.frombuffer(data, dtype=dtype, count=1)[0].copy()


def _numpy_frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """numpy's protocol-5 array record: raw bytes, dtype, shape, order -> a copy of the array."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject or dtype.kind not in _NUMERIC_KINDS:
        raise CheckpointError(f"numpy array of dtype {dtype!r} is not allowed in a checkpoint")
    if isinstance(buffer, pickle.PickleBuffer):
        buffer = bytes(buffer.raw())
    if not isinstance(buffer, (bytes, bytearray)) or order not in ("C", "F"):
        raise CheckpointError("malformed numpy array record (protocol 5)")
    try:
        shape = tuple(int(n) for n in shape)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"malformed numpy array shape {shape!r}") from err
    if any(n < 0 for n in shape) or int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != len(buffer):
        raise CheckpointError(f"numpy array of shape {list(shape)} does not match its {len(buffer)} bytes")
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order).copy()


def _codecs_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    """``_codecs.encode``: how protocol-2 files store bytes (``encode(str, 'latin1')``); nothing else."""
    if not isinstance(text, str) or encoding != "latin1":
        raise CheckpointError("refused global _codecs.encode: only encode(str, 'latin1') is allowed")
    return text.encode("latin1")


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """``copyreg._reconstructor`` (protocol 0/1 files), limited to building a TFNetwork."""
    if cls is not TFNetwork or base is not object or state is not None:
        raise CheckpointError("refused global copyreg._reconstructor: it may only build a TensorFlow Network")
    return TFNetwork()


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    TF_NETWORK_GLOBAL: TFNetwork,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("collections", "OrderedDict"): OrderedDict,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _numpy_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _numpy_frombuffer,
    ("_codecs", "encode"): _codecs_encode,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
}
"""(module, name) -> safe stand-in: everything a TensorFlow network pickle may refer to."""


def _resolve(module: str, name: str) -> Any:
    return lookup_global(ALLOWED_GLOBALS, module, name, what="TensorFlow network pickles")


def _check_global(module: str, name: str) -> None:
    _resolve(module, name)


class _TFUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        return _resolve(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise CheckpointError("unexpected persistent id in a TensorFlow network pickle")


def is_tf_pickle_head(head: bytes) -> bool:
    """Whether the first bytes of a file (256 are enough) look like a TensorFlow network pickle."""
    return head[:1] == b"\x80" and TF_NETWORK_GLOBAL[0].encode() in head


def loads_tf_pickle(data: bytes, *, name: str = "<bytes>") -> TFNetwork:
    """Unpickle a TensorFlow network pickle with the allow-list; returns the generator to convert.

    The file may hold ``(G, D, Gs)`` (NVIDIA's snapshots: ``Gs``, the moving average, is returned) or a
    single Network.

    Raises:
        CheckpointError: a refused global, a malformed Network state, a non-numeric array, a truncated
            file, or a top-level object that is not one of the two layouts above.
    """
    if not data or data[:1] != b"\x80":
        raise CheckpointError(f"{name} is not a pickle file (no pickle protocol header)")
    # The same opcode pre-scan as every other pickle: no EXT codes, no INST/OBJ, bounded memo and stack,
    # and only allow-listed globals, before a single object is built.
    scan_opcodes(data, name=name, check_global=_check_global,
                 allowed=DATA_OPCODES | CALL_OPCODES | {"BYTEARRAY8"})  # protocol 5 numpy arrays, in band
    try:
        top = _TFUnpickler(io.BytesIO(data)).load()
    except CheckpointError as err:
        raise CheckpointError(f"{name}: {err}") from None
    except RecursionError as err:
        raise CheckpointError(f"{name}: pickle nesting too deep") from err
    except (EOFError, pickle.UnpicklingError, struct.error) as err:
        raise CheckpointError(f"{name} is truncated or not a valid pickle ({type(err).__name__}: {err})") from err
    except (TypeError, ValueError, AttributeError, IndexError, KeyError, MemoryError) as err:
        raise CheckpointError(f"{name} is malformed ({type(err).__name__}: {err})") from err
    if isinstance(top, tuple) and len(top) == 3 and all(isinstance(net, TFNetwork) for net in top):
        net = top[2]
    elif isinstance(top, TFNetwork):
        net = top
    else:
        raise CheckpointError(
            f"{name}: expected NVIDIA's TensorFlow snapshot (G, D, Gs) or a single Network, got "
            f"{type(top).__name__}"
        )
    _check_loaded(net, name)
    return net


def _check_loaded(net: TFNetwork, name: str, depth: int = 0) -> None:
    pending = net.__dict__.pop("_pending", None)
    if not net._loaded and pending is not None:
        net.__setstate__(pending)
    if not net._loaded:
        raise CheckpointError(f"{name}: a TensorFlow Network object has no state (malformed pickle)")
    if depth > 8:
        raise CheckpointError(f"{name}: TensorFlow Network components nest too deep")
    for comp in net.components.values():
        _check_loaded(comp, name, depth + 1)


def read_tf_pickle(path: str | os.PathLike) -> TFNetwork:
    """Read a TensorFlow network pickle as data (see :func:`loads_tf_pickle`).

    Raises:
        CheckpointError: the file is missing or refused (see :func:`loads_tf_pickle`).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    return loads_tf_pickle(path.read_bytes(), name=str(path))
