"""The ``.npz`` + JSON metadata format of latentkit's data files (priors, directions, analyses, latents),
torch-free, and JSON read with bounds.

:func:`write_npz` stores named arrays and a JSON metadata string, atomically (:mod:`latentkit.files`).
:func:`read_npz` checks the zip directory before inflating anything: member count, duplicated names, each
member's size and the size its ``.npy`` header declares, object arrays, then the metadata's size, encoding
and nesting depth (:func:`loads_bounded`). Every problem is one :class:`~latentkit.errors.InputError` line
naming the file and the member. numpy is imported inside the functions, so importing this module is free.
"""

from __future__ import annotations

import json
import os
import re
import tokenize
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from latentkit.errors import InputError
from latentkit.files import atomic_path, os_error

if TYPE_CHECKING:
    import numpy as np

__all__ = ["MAX_JSON_BYTES", "MAX_JSON_DEPTH", "MAX_MEMBER_BYTES", "MAX_MEMBERS", "loads_bounded", "read_npz", "write_npz"]

MAX_MEMBERS = 64
"""Most members an ``.npz`` read by :func:`read_npz` may hold."""
MAX_MEMBER_BYTES = 1 << 30
"""Largest array (inflated) :func:`read_npz` reads by default (1 GiB)."""
MAX_JSON_BYTES = 16 << 20
"""Largest JSON text :func:`loads_bounded` parses by default (16 MiB)."""
MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays and objects :func:`loads_bounded` accepts by default."""

# --------------------------------------------------------------------------------------------------
# JSON with bounds.

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_BRACKET = re.compile(r"[\[\]{}]")


def _depth(text: str) -> int:
    depth = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub("", text)):
        depth += 1 if match.group() in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def loads_bounded(data: str | bytes, what: str, *, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads(data)`` after checking its size, its encoding (UTF-8) and its nesting depth.

    Args:
        data: the JSON text (bytes are decoded as strict UTF-8).
        what: names the source in errors, e.g. ``"prior.npz: the metadata"``.

    Raises:
        InputError: too large, not UTF-8, nested deeper than ``max_depth``, or not JSON; one line.
    """
    if len(data) > max_bytes:
        raise InputError(f"{what} is {len(data):,} bytes of JSON, more than the limit of {max_bytes:,}")
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise InputError(f"{what} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    depth = _depth(data)
    if depth > max_depth:
        raise InputError(f"{what} nests JSON {depth} levels deep, more than the limit of {max_depth}")
    try:
        return json.loads(data, parse_constant=_no_constant)
    except (ValueError, RecursionError) as err:
        raise InputError(f"{what} is not valid JSON ({str(err)[:120]})") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


# --------------------------------------------------------------------------------------------------
# npz + JSON metadata.


def write_npz(
    path: str | os.PathLike,
    arrays: Mapping[str, Any],
    metadata: Mapping[str, Any] | None = None,
    *,
    meta_key: str = "metadata",
    root: str | os.PathLike | None = None,
) -> Path:
    """Write named numpy arrays and (optionally) ``metadata`` as one JSON string member, atomically.

    Args:
        path: the ``.npz`` file.
        arrays: name -> array (anything ``np.asarray`` takes; no object arrays).
        metadata: a JSON-ready mapping, stored as the 0-d string array ``meta_key``; None: none.
        root: refuse a path leading out of this folder (see :func:`atomic_path`).

    Raises:
        InputError: a name clash with ``meta_key``, non-JSON metadata, or an OS error (one line).
    """
    import numpy as np

    payload: dict[str, Any] = {str(k): np.asarray(v) for k, v in arrays.items()}
    if metadata is not None:
        if meta_key in payload:
            raise InputError(f"an array may not be named {meta_key!r} (reserved for the metadata)")
        try:
            payload[meta_key] = np.array(json.dumps(dict(metadata), allow_nan=False))
        except (TypeError, ValueError) as err:
            raise InputError(f"cannot write {path}: its metadata is not JSON ({err})") from None
    bad = [k for k, v in payload.items() if v.dtype.hasobject]
    if bad:
        raise InputError(f"cannot write {path}: array {bad[0]!r} holds Python objects, not numbers")
    with atomic_path(path, root=root) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **payload)
    return Path(path)


def _member_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[tuple[int, ...], Any]:
    """(shape, dtype) from a member's ``.npy`` header, reading only the header."""
    import numpy as np

    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        reader = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if reader is None:
            raise ValueError(f"unsupported .npy format version {version}")
        shape, _, dtype = reader(member)
    return tuple(shape), dtype


def read_npz(
    path: str | os.PathLike,
    what: str,
    *,
    names: Sequence[str] | None = None,
    required: Sequence[str] = (),
    meta_key: str | None = "metadata",
    max_members: int = MAX_MEMBERS,
    max_member_bytes: int = MAX_MEMBER_BYTES,
    max_json_bytes: int = MAX_JSON_BYTES,
    max_depth: int = MAX_JSON_DEPTH,
    hint: str = "",
) -> tuple[dict[str, np.ndarray], Any]:
    """Read an ``.npz`` with every size checked before anything is inflated.

    Args:
        path: the file.
        what: what it should be, for messages (``"prior .npz"``).
        names: the arrays to read (others are left unread); None: every member.
        required: arrays that must be present.
        meta_key: the member holding a JSON string, returned parsed (bounded by ``max_json_bytes`` and
            ``max_depth``); None: no metadata.
        max_members, max_member_bytes: bounds on the zip directory and on each array read.
        hint: appended to messages (e.g. ``"; refit it with latentkit fit-prior"``).

    Returns:
        ``(arrays, metadata)``: name -> array (numbers only, never pickles), and the parsed metadata or None
        when the file has no ``meta_key``.

    Raises:
        InputError: missing, empty, not a zip, too many or duplicated members, a member too large or whose
            header disagrees with its size, a missing required array, an object array, bad metadata. One
            line naming the file and the member.
    """
    import zlib

    import numpy as np

    path = Path(path)

    def fail(problem: str) -> InputError:
        return InputError(f"cannot read {path} as a {what}: {problem}{hint}")

    if not path.is_file():
        raise InputError(f"{what} not found: {path}{hint}")
    try:
        size = path.stat().st_size
        if size == 0:
            raise fail("it is empty (0 bytes)")
        with open(path, "rb") as fh:
            head = fh.read(4)
        if not head.startswith(b"PK"):
            raise fail(f"it is not an .npz file (starts with {head!r})")
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            if len(infos) > max_members:
                raise fail(f"it has {len(infos)} members, more than the limit of {max_members}")
            seen: set[str] = set()
            for info in infos:
                if info.filename in seen:
                    raise fail(f"member {info.filename!r:.80} appears twice (a damaged or forged archive)")
                seen.add(info.filename)
            members = {info.filename[:-4]: info for info in infos if info.filename.endswith(".npy")}
            wanted = list(members) if names is None else [n for n in names if n in members]
            if meta_key is not None and meta_key in members and meta_key not in wanted:
                wanted.append(meta_key)
            missing = [n for n in required if n not in members]
            if missing:
                raise fail(f"it has no array {missing[0]!r} (it has {sorted(members)[:20]})")
            arrays: dict[str, np.ndarray] = {}
            for name in wanted:
                info = members[name]
                limit = max_json_bytes * 4 if name == meta_key else max_member_bytes  # a U string: 4 bytes a char
                if info.file_size > limit + 4096:
                    raise fail(f"array {name!r} inflates to {info.file_size:,} bytes, more than the limit of {limit:,}")
                shape, dtype = _member_header(archive, info)
                if dtype.hasobject:
                    raise fail(f"array {name!r} is an object array of Python objects (only numbers are read)")
                count = 1
                for dim in shape:
                    count *= int(dim)
                if count * dtype.itemsize > info.file_size:
                    raise fail(f"array {name!r} declares shape {list(shape)[:8]} ({count * dtype.itemsize:,} bytes), "
                               f"more than its {info.file_size:,} stored bytes")
                with archive.open(info) as member:
                    arrays[name] = np.lib.format.read_array(member, allow_pickle=False)
    except InputError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, KeyError, NotImplementedError, OverflowError,
            MemoryError, RuntimeError, SyntaxError, RecursionError, tokenize.TokenError) as err:  # header parsing
        raise fail(f"{type(err).__name__}: {str(err)[:160]}") from None
    except OSError as err:
        raise os_error(path, err, "read") from None
    meta = None
    if meta_key is not None and meta_key in arrays:
        raw = arrays.pop(meta_key)
        if raw.dtype.kind != "U" or raw.ndim != 0:
            raise fail(f"the {meta_key} must be one JSON string, got a {raw.dtype} array of shape {list(raw.shape)}")
        meta = loads_bounded(str(raw), f"{path}: the {meta_key}", max_bytes=max_json_bytes, max_depth=max_depth)
    return arrays, meta
