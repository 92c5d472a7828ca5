"""A restricted unpickler for NVIDIA-style network pickles (stylegan2-ada-pytorch, stylegan3, StyleGAN-XL).

Checkpoints are untrusted input. NVIDIA's own loader rebuilds every network object by executing the
Python source stored inside the pickle. This module reads the same files as *data*, and can produce
nothing but plain Python data, float/int/bool CPU tensors, non-object numpy arrays and scalars, and
:class:`~latentkit.load.records.ModuleRecord` objects:

* before anything is unpickled, :func:`~latentkit.load.pickle_guard.scan_opcodes` refuses EXT opcodes,
  persistent ids, INST/OBJ and any other opcode outside a small set, and out-of-range memo indices;
* only an explicit allow-list of globals can be resolved, and each resolves to a frozen stand-in (never the
  real class or function): REDUCE and NEWOBJ accept only those stand-ins, BUILD only our own record types,
  APPEND/SETITEM only real lists, dicts and sets; anything else raises
  :class:`~latentkit.errors.CheckpointError` naming what was refused;
* each persistence record becomes a ``ModuleRecord``; its source text is never looked at;
* tensor storages, stored as nested legacy ``torch.save`` streams for ``torch.storage._load_from_bytes``
  (which would call ``torch.load(weights_only=False)``), are parsed by :mod:`latentkit.load.legacy_storage`;
* numpy arrays are rebuilt from their raw bytes for numeric dtypes only: no object array by any route;
* every tensor or array is charged to one :class:`~latentkit.load.pickle_guard.LoadBudget` before it is
  allocated, and the object graph's depth is bounded and cycles are refused.
"""

from __future__ import annotations

import io
import logging
import math
import os
import pickle
import re
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentkit.errors import CheckpointError
from latentkit.load.legacy_storage import load_storage_from_bytes
from latentkit.load.pickle_guard import LoadBudget, check_tree, lookup_global, scan_opcodes
from latentkit.load.pickle_standins import (
    ArrayStandIn,
    DTypeStandIn,
    EasyDictStandIn,
    Global,
    check_sizes,
)
from latentkit.load.records import ModuleRecord

__all__ = ["ModuleRecord", "read_network_pickle", "loads_network_pickle"]

logger = logging.getLogger(__name__)

_TENSOR_DTYPES = {torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.uint8, torch.int8,
                  torch.int16, torch.int32, torch.int64, torch.bool}
_DTYPE_TEXT = re.compile(r"[<>|=]?(b1|[iu][1248]|f[248]|\?)")

_PLAIN_MODULES = {
    ("torch.nn.modules.sparse", "Embedding"),
    ("torch.nn.modules.linear", "Linear"),
    ("torch.nn.modules.linear", "Identity"),
    ("torch.nn.modules.container", "ModuleList"),
    ("torch.nn.modules.container", "ModuleDict"),
    ("torch.nn.modules.container", "Sequential"),
}
_NUMPY_UMATH_MODULES = ("numpy.core._multiarray_umath", "numpy._core._multiarray_umath")


# ---------------------------------------------------------------------------------------------------
# The allow-listed functions. Each takes the load's budget first.


def _reconstruct_persistent_obj(budget: LoadBudget, meta: Any) -> ModuleRecord:
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise CheckpointError(
            "unsupported persistence record: expected a dict with type 'class', "
            f"got {type(meta).__name__} {meta.get('type') if isinstance(meta, dict) else ''!r:.40}"
        )
    class_name, state = meta.get("class_name"), meta.get("state")
    if not isinstance(class_name, str) or not isinstance(state, dict):
        raise CheckpointError("malformed persistence record: 'class_name' must be str and 'state' a dict")
    # meta['module_src'] is deliberately ignored: it is never executed or even parsed.
    return ModuleRecord(class_name=class_name, state=state)


def _rebuild_parameter(budget: LoadBudget, data: Any, *rest: Any) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise CheckpointError(f"a parameter must wrap a tensor, got {type(data).__name__}")
    return data


def _rebuild_tensor_v2(budget: LoadBudget, storage: Any, offset: Any, size: Any, stride: Any, *rest: Any) -> torch.Tensor:
    if not isinstance(storage, torch.Tensor) or storage.ndim != 1 or storage.dtype not in _TENSOR_DTYPES:
        raise CheckpointError(f"a tensor must be built on a storage, got {type(storage).__name__}")
    size, stride = check_sizes(size, "tensor size"), check_sizes(stride, "tensor stride")
    if type(offset) is not int or offset < 0 or len(size) != len(stride):
        raise CheckpointError(f"malformed tensor record (size {list(size)}, stride {list(stride)}, offset {offset!r:.20})")
    numel = math.prod(size)
    extent = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1 if numel else 0
    if extent > storage.numel():
        raise CheckpointError(
            f"tensor of size {list(size)} (stride {list(stride)}, offset {offset}) reaches past its "
            f"storage of {storage.numel()} elements"
        )
    budget.charge(numel * storage.element_size(), f"a tensor of size {list(size)}")
    return torch.as_strided(storage, size, stride, offset).clone()


def _numpy_dtype(budget: LoadBudget, spec: Any, align: Any = False, copy: Any = False) -> DTypeStandIn:
    if not isinstance(spec, str) or not _DTYPE_TEXT.fullmatch(spec):
        raise CheckpointError(f"numpy dtype {spec!r:.40} is not allowed in a checkpoint (only numeric dtypes)")
    return DTypeStandIn(np.dtype(spec))


def _numpy_scalar(budget: LoadBudget, dtype: Any, data: Any = None) -> np.generic:
    if not isinstance(dtype, DTypeStandIn) or not isinstance(data, bytes) or len(data) != dtype.dtype.itemsize:
        raise CheckpointError("numpy scalars must have a plain numeric dtype and their raw bytes")
    return np.frombuffer(data, dtype=dtype.dtype, count=1)[0].copy()


def _numpy_reconstruct(budget: LoadBudget, subtype: Any, shape: Any, dtype: Any) -> ArrayStandIn:
    if subtype is not _NDARRAY:
        raise CheckpointError(f"only numpy.ndarray can be reconstructed, got {subtype!r:.60}")
    return ArrayStandIn(budget)


def _dill_import_module(budget: LoadBudget, name: Any, safe: Any = False) -> Global:
    if name not in _NUMPY_UMATH_MODULES:
        raise CheckpointError(f"refused global: dill._dill._import_module({name!r:.60}) is not allow-listed")
    return _NUMPY_UMATH


def _dill_get_attr(budget: LoadBudget, obj: Any, name: Any) -> Global:
    if obj is not _NUMPY_UMATH or name not in ("scalar", "_reconstruct"):
        raise CheckpointError(f"refused global: dill._dill._get_attr(..., {name!r:.60}) is not allow-listed")
    return _ALLOWED[("numpy.core.multiarray", name)]


def _record_new(qualified: str) -> Callable:
    return lambda budget, *args: ModuleRecord(class_name=qualified, state={})


def _data(factory: Callable) -> Callable:
    return lambda budget, *args: factory(*args)


_NDARRAY = Global("numpy.ndarray")  # a marker for _reconstruct; never called
_NUMPY_UMATH = Global("numpy.core._multiarray_umath")  # what dill's _import_module may return
_ALLOWED: dict[tuple[str, str], Global] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): Global("persistence record", _reconstruct_persistent_obj),
    ("torch._utils", "_rebuild_parameter"): Global("parameter", _rebuild_parameter),
    ("torch._utils", "_rebuild_parameter_with_state"): Global("parameter", _rebuild_parameter),
    ("torch._utils", "_rebuild_tensor_v2"): Global("tensor", _rebuild_tensor_v2),
    ("torch.storage", "_load_from_bytes"): Global("storage", lambda budget, payload: load_storage_from_bytes(payload)),
    ("collections", "OrderedDict"): Global("OrderedDict", _data(OrderedDict), _data(lambda *a: OrderedDict())),
    ("dnnlib.util", "EasyDict"): Global("EasyDict", _data(EasyDictStandIn), _data(lambda *a: EasyDictStandIn())),
    ("builtins", "set"): Global("set", _data(set)),
    ("builtins", "frozenset"): Global("frozenset", _data(frozenset)),
    ("numpy", "dtype"): Global("numpy.dtype", _numpy_dtype),
    ("numpy", "ndarray"): _NDARRAY,
    ("dill._dill", "_import_module"): Global("dill import", _dill_import_module),
    ("dill._dill", "_get_attr"): Global("dill getattr", _dill_get_attr),
}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_module, "scalar")] = Global("numpy scalar", _numpy_scalar)
    _ALLOWED[(_module, "_reconstruct")] = Global("numpy array", _numpy_reconstruct)
for _key in _PLAIN_MODULES:
    _ALLOWED[_key] = Global(".".join(_key), None, _record_new(".".join(_key)))
_BUILDABLE = (ModuleRecord, DTypeStandIn, ArrayStandIn)


def _lookup(module: str, name: str) -> Global:
    return lookup_global(_ALLOWED, module, name, what="network pickles")


class _RestrictedUnpickler(pickle._Unpickler):
    """The pure-Python unpickler with every object-building opcode replaced by a checked one."""

    dispatch: dict = {}

    def __init__(self, file: io.BytesIO, budget: LoadBudget) -> None:
        super().__init__(file)
        self.budget = budget

    def find_class(self, module: str, name: str) -> Any:
        if not isinstance(module, str) or not isinstance(name, str):
            raise CheckpointError("malformed global reference")
        return _lookup(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise CheckpointError("unexpected persistent id in a network pickle (is this a torch.save file? use a .pt loader)")

    def _reduce(self) -> None:
        args = self.stack.pop()
        func = self.stack[-1]
        if not isinstance(func, Global) or func.call is None or not isinstance(args, tuple):
            raise CheckpointError(f"the pickle calls {func!r:.60}, which is not an allow-listed function")
        self.stack[-1] = func.call(self.budget, *args)

    def _newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        if not isinstance(cls, Global) or cls.new is None or not isinstance(args, tuple):
            raise CheckpointError(f"the pickle instantiates {cls!r:.60}, which is not an allow-listed class")
        self.append(cls.new(self.budget, *args))

    def _build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if type(inst) not in _BUILDABLE:
            raise CheckpointError(f"the pickle sets the state of {type(inst).__name__!r}, which is not allowed")
        inst.__setstate__(state)

    def _target(self, kinds: tuple) -> Any:
        target = self.stack[-1]
        if type(target) not in kinds:
            raise CheckpointError(f"the pickle adds items to a {type(target).__name__}, which is not a container")
        return target

    def _append(self) -> None:
        value = self.stack.pop()
        self._target((list,)).append(value)

    def _appends(self) -> None:
        items = self.pop_mark()
        self._target((list,)).extend(items)

    def _setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self._target((dict, OrderedDict, EasyDictStandIn))[key] = value

    def _setitems(self) -> None:
        items = self.pop_mark()
        target = self._target((dict, OrderedDict, EasyDictStandIn))
        for i in range(0, len(items) - 1, 2):
            target[items[i]] = items[i + 1]

    def _additems(self) -> None:
        items = self.pop_mark()
        self._target((set,)).update(items)


def _refuse(unpickler: Any) -> None:
    raise CheckpointError("pickle opcode outside latentkit's allowed set")


_RestrictedUnpickler.dispatch = {code: _refuse for code in range(256)}
_SAFE_OPS = {"PROTO", "FRAME", "STOP", "MARK", "POP", "POP_MARK", "DUP", "NONE", "NEWTRUE", "NEWFALSE", "INT",
             "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT", "STRING", "BINSTRING",
             "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "BINBYTES",
             "SHORT_BINBYTES", "BINBYTES8", "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "EMPTY_LIST",
             "LIST", "EMPTY_DICT", "DICT", "EMPTY_SET", "FROZENSET", "PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE",
             "GET", "BINGET", "LONG_BINGET", "GLOBAL", "STACK_GLOBAL"}
for _name in _SAFE_OPS:
    _code = getattr(pickle, _name)[0]
    _RestrictedUnpickler.dispatch[_code] = pickle._Unpickler.dispatch[_code]
for _name, _method in (("REDUCE", "_reduce"), ("NEWOBJ", "_newobj"), ("BUILD", "_build"), ("APPEND", "_append"),
                       ("APPENDS", "_appends"), ("SETITEM", "_setitem"), ("SETITEMS", "_setitems"),
                       ("ADDITEMS", "_additems")):
    _RestrictedUnpickler.dispatch[getattr(pickle, _name)[0]] = getattr(_RestrictedUnpickler, _method)


def _members(node: Any) -> Any:
    """Members of an unpickled object for the depth/cycle check; refuses types the loader cannot produce."""
    if isinstance(node, dict):
        return [*node.keys(), *node.values()]
    if isinstance(node, (list, tuple, set, frozenset)):
        return node
    if type(node) is ModuleRecord:
        return [node.state]
    if isinstance(node, (torch.Tensor, np.generic, DTypeStandIn, ArrayStandIn, Global)):
        return None
    raise CheckpointError(f"the pickle produced a {type(node).__name__}, which a checkpoint cannot hold")


def _finish(obj: Any, memo: dict[int, Any]) -> Any:
    """Stand-ins -> numpy objects, in place through containers; refuses globals left as data."""
    if isinstance(obj, (str, bytes, int, float, complex, type(None), torch.Tensor, np.generic)):
        return obj
    if id(obj) in memo:
        return memo[id(obj)]
    if isinstance(obj, ArrayStandIn):
        if obj.array is None:
            raise CheckpointError("a numpy array without its data (no BUILD)")
        out: Any = obj.array
    elif isinstance(obj, DTypeStandIn):
        out = obj.dtype
    elif isinstance(obj, Global):
        raise CheckpointError(f"the pickle holds {obj!r} as data, which a checkpoint cannot hold")
    elif isinstance(obj, dict):
        for key, value in obj.items():
            obj[key] = _finish(value, memo)
        out = obj
    elif isinstance(obj, list):
        obj[:] = [_finish(v, memo) for v in obj]
        out = obj
    elif isinstance(obj, ModuleRecord):
        _finish(obj.state, memo)
        out = obj
    else:  # tuple, set, frozenset (their members are hashable, so never stand-in arrays)
        out = type(obj)(_finish(v, memo) for v in obj)
    memo[id(obj)] = out
    return out


def loads_network_pickle(data: bytes, *, name: str = "<bytes>") -> Any:
    """Unpickle ``data`` with the restricted allow-list (see :func:`read_network_pickle`)."""
    if data[:4] == b"PK\x03\x04":
        raise CheckpointError(
            f"{name} is a zip archive (a torch.save checkpoint such as rosinality's .pt), not a network pickle"
        )
    if not data or data[:1] != b"\x80":
        raise CheckpointError(f"{name} is not a pickle file (no pickle protocol header)")
    try:
        scan_opcodes(data, name=name, check_global=_lookup)
        budget = LoadBudget(len(data), name=name)
        obj = _RestrictedUnpickler(io.BytesIO(data), budget).load()
        check_tree(obj, name=name, children=_members)
        return _finish(obj, {})
    except CheckpointError as err:
        raise CheckpointError(str(err) if str(err).startswith(name) else f"{name}: {err}") from None
    except RecursionError as err:
        raise CheckpointError(f"{name}: pickle nesting too deep") from err
    except (EOFError, pickle.UnpicklingError) as err:
        raise CheckpointError(f"{name} is truncated or not a valid pickle ({type(err).__name__}: {err})") from err
    except (TypeError, ValueError, AttributeError, IndexError, KeyError, MemoryError, OverflowError,
            RuntimeError) as err:
        raise CheckpointError(f"{name} is malformed ({type(err).__name__}: {err})") from err


def read_network_pickle(path: str | os.PathLike) -> Any:
    """Read an NVIDIA-style network pickle as data, never executing anything from it.

    Args:
        path: a ``.pkl`` written by stylegan2-ada-pytorch, stylegan3 or StyleGAN-XL.

    Returns:
        The top-level object (normally a dict with ``'G'``, ``'D'``, ``'G_ema'``, ...); every network
        object in it is a :class:`ModuleRecord`, every tensor a CPU ``torch.Tensor``.

    Raises:
        CheckpointError: the file is missing, truncated, not a pickle, refers to a global or uses an opcode
            outside the allow-list (the message names it), or claims more memory than its size allows.

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
