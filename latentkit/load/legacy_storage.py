"""One tensor storage stored as a nested legacy ``torch.save`` stream (NVIDIA's ``_load_from_bytes`` payloads).

The stream is five small pickles (magic number, protocol, system info, the storage reference, the list of
storage keys) followed by the element count and the raw bytes. Each pickle is opcode-scanned first (no
calls at all: only ``torch.<Type>Storage`` globals and the persistent id), then read by an unpickler that
resolves nothing else. The storage is a view of the payload bytes (no copy); the caller clones what it uses.
"""

from __future__ import annotations

import io
import pickle
import struct
import warnings
from typing import Any

import torch

from latentkit.errors import CheckpointError
from latentkit.load.pickle_guard import DATA_OPCODES, scan_opcodes

__all__ = ["load_storage_from_bytes", "STORAGE_DTYPES"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

STORAGE_DTYPES = {
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
_INNER_OPCODES = DATA_OPCODES | {"GLOBAL", "STACK_GLOBAL", "BINPERSID"}


class _StorageType:
    __slots__ = ("name", "dtype")

    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype = STORAGE_DTYPES[name]


def _check_global(module: str, name: str) -> None:
    if module != "torch" or name not in STORAGE_DTYPES:
        raise CheckpointError(f"refused global inside a tensor storage: {module}.{name} is not allow-listed")


class _InnerUnpickler(pickle.Unpickler):
    """Reads the pickles of a legacy ``torch.save`` stream: only ``torch.<Type>Storage`` is resolvable."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file)
        self.storages: dict[str, tuple[torch.dtype, int]] = {}

    def find_class(self, module: str, name: str) -> Any:
        _check_global(module, name)
        return _StorageType(name)

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise CheckpointError(f"malformed storage reference in a tensor payload: {pid!r:.80}")
        _, storage_type, key, _location, numel = pid[:5]
        if not isinstance(key, str) or type(numel) is not int or numel < 0:
            raise CheckpointError("malformed storage reference in a tensor payload")
        # The location tag ('cpu', 'cuda:0', ...) is ignored: every storage is read onto the CPU.
        self.storages[key] = (storage_type.dtype, numel)
        return key


def load_storage_from_bytes(payload: Any) -> torch.Tensor:
    """Parse one legacy ``torch.save`` stream holding a single storage.

    Args:
        payload: the bytes NVIDIA's pickle hands to ``torch.storage._load_from_bytes``.

    Returns:
        The storage as a 1-D CPU tensor ``[numel]`` sharing memory with ``payload`` (read-only: clone it).

    Raises:
        CheckpointError: a call or global other than a storage type, a truncated or inconsistent payload.
    """
    if not isinstance(payload, bytes):
        raise CheckpointError("tensor payload must be bytes")
    stream = io.BytesIO(payload)
    unpickler = _InnerUnpickler(stream)
    values = []
    try:
        for _ in range(5):
            start = stream.tell()
            end = scan_opcodes(payload, start=start, name="tensor payload", allowed=_INNER_OPCODES,
                                       check_global=_check_global)
            values.append(unpickler.load())
            if stream.tell() != end:
                raise CheckpointError("tensor payload is malformed")
            if len(values) == 3:
                magic, protocol, sys_info = values
                if magic != _LEGACY_MAGIC or protocol != _LEGACY_PROTOCOL or not isinstance(sys_info, dict):
                    raise CheckpointError("tensor payload is not a legacy torch.save stream (bad magic number)")
                if not sys_info.get("little_endian", True):
                    raise CheckpointError("big-endian tensor payloads are not supported")
    except CheckpointError as err:
        if "refused global" in str(err) or "not a legacy" in str(err) or "big-endian" in str(err):
            raise
        raise CheckpointError(f"corrupt tensor payload: {err}") from None
    except Exception as err:  # malformed inner pickles: EOFError, UnpicklingError, ...
        raise CheckpointError(f"corrupt tensor payload: {type(err).__name__}: {err}") from err
    key, keys = values[3], values[4]
    if not isinstance(keys, list) or len(keys) != 1 or keys[0] != key or key not in unpickler.storages:
        raise CheckpointError("tensor payload must hold exactly one storage")
    dtype, numel = unpickler.storages[key]
    start = stream.tell()
    header = payload[start:start + 8]
    if len(header) != 8:
        raise CheckpointError("tensor payload is truncated (no element count)")
    (count,) = struct.unpack("<q", header)
    itemsize = torch.empty((), dtype=dtype).element_size()
    available = (len(payload) - start - 8) // itemsize
    if count != numel or numel > available:
        raise CheckpointError(f"tensor payload is truncated: expected {numel} elements of {dtype}, got {available}")
    if numel == 0:
        return torch.empty(0, dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "buffer is not writable": the caller clones
        return torch.frombuffer(payload, dtype=dtype, count=numel, offset=start + 8)
