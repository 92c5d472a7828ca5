"""Checks on an untrusted ``torch.save`` file that run before ``torch.load`` and right after it.

* zip format: every member must be stored uncompressed (``torch.save`` never compresses), so the bytes
  torch reads can never exceed the file's size (a deflated member is a zip bomb: 3 MB -> 3.6 GB);
* legacy format: the element counts its storages claim (the persistent ids of the main pickle, read with
  :func:`pickletools.genops`, which executes nothing) must fit in the file;
* after loading: :func:`check_tensor_budget` refuses tensors whose views claim more elements than the file
  holds (a stride-0 view of one float can claim gigabytes) before anything is materialised.
"""

from __future__ import annotations

import io
import pickletools
import zipfile
from collections.abc import Iterable
from pathlib import Path

import torch

from latentkit.errors import CheckpointError
from latentkit.load.pickle_guard import LoadBudget

__all__ = ["check_torch_file", "check_tensor_budget"]

_MAX_MEMBERS = 100_000
_SLACK = 16 << 20


def _check_zip(path: Path, size: int) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable zip archive ({err})") from err
    if len(infos) > _MAX_MEMBERS:
        raise CheckpointError(f"{path}: {len(infos):,} zip members; refused as hostile")
    total = 0
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED:
            raise CheckpointError(
                f"{path}: zip member {info.filename!r} is compressed; torch.save never compresses, so this "
                "is not a checkpoint torch wrote (possibly a zip bomb)"
            )
        total += info.file_size
    if total > size:
        raise CheckpointError(f"{path}: zip members claim {total:,} bytes, more than the file's {size:,}")


def _check_legacy(path: Path, data: bytes) -> None:
    """Sum the element counts of the storages a legacy file declares; 8 bytes each bounds every dtype."""
    stream = io.BytesIO(data)
    claimed = 0
    try:
        for _ in range(4):  # magic, protocol, sys_info, then the main pickle with the storage ids
            last_int = None
            for op, arg, _pos in pickletools.genops(stream):
                if isinstance(arg, int) and not isinstance(arg, bool) and op.name not in (
                        "BINPUT", "LONG_BINPUT", "PUT", "MEMOIZE", "PROTO", "FRAME"):
                    last_int = arg
                if op.name in ("GET", "BINGET", "LONG_BINGET"):
                    last_int = None  # a memo reference is not a literal count
                if op.name in ("BINPERSID", "PERSID"):
                    if last_int is None or last_int < 0:
                        raise CheckpointError(f"{path}: a storage of this legacy file has no literal element count")
                    claimed += last_int
                    last_int = None
                if op.name == "STOP":
                    break
    except CheckpointError:
        raise
    except (ValueError, TypeError, UnicodeDecodeError, OverflowError) as err:
        raise CheckpointError(f"{path}: not a readable torch.save checkpoint (truncated or corrupted?): {err}") from err
    if claimed * 8 > 2 * len(data) + _SLACK:
        raise CheckpointError(
            f"{path}: its storages claim {claimed:,} elements, more than the file's {len(data):,} bytes can hold; "
            "the file is corrupt or hostile"
        )


def check_torch_file(path: Path) -> None:
    """Refuse a ``torch.save`` file whose container could make ``torch.load`` allocate beyond its size.

    Raises:
        CheckpointError: naming the compressed member or the claimed size.
    """
    size = path.stat().st_size
    if zipfile.is_zipfile(path):
        _check_zip(path, size)
    else:
        _check_legacy(path, path.read_bytes())


def check_tensor_budget(tensors: Iterable[torch.Tensor], *, path: Path) -> None:
    """Refuse tensors whose sizes (as float32) add up to more than twice the file (views, stride-0 tricks).

    Raises:
        CheckpointError: naming the file and the total claimed.
    """
    budget = LoadBudget(path.stat().st_size, name=str(path))
    for tensor in tensors:
        budget.charge(tensor.numel() * 4, f"a tensor of shape {list(tensor.shape)}")
