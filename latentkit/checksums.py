"""sha256 bookkeeping of downloaded weights: ``sha256.json`` beside the files, never reset silently.

Each cache folder's ``sha256.json`` maps a file name to ``{"sha256", "url", "recorded"}``, written on the
file's first arrival (trust on first use where the registry publishes no hash). A record that cannot be
read is a :class:`~latentkit.errors.CheckpointError`: resetting it would silently drop the only check the
other files have, and the next write would lose every other record.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import re
from pathlib import Path

from latentkit.errors import CheckpointError
from latentkit.datafiles import loads_bounded
from latentkit.files import atomic_write_text

__all__ = ["file_sha256", "read_records", "write_record", "verify_cached", "RECORD_NAME"]

logger = logging.getLogger(__name__)

RECORD_NAME = "sha256.json"
_CHUNK = 1 << 20
_HEX = re.compile(r"[0-9a-f]{64}")


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_records(folder: Path) -> dict[str, dict]:
    """The sha256 records of ``folder`` (``{}`` when it has no ``sha256.json``).

    Raises:
        CheckpointError: the record file is unreadable, not JSON, or not ``{name: {"sha256": <64 hex>, ...}}``;
            the message names it and says how to recover.
    """
    path = Path(folder) / RECORD_NAME
    if not path.exists():
        return {}
    try:
        if path.is_dir():
            raise ValueError("it is a folder, not a file")
        records = loads_bounded(path.read_bytes(), str(path))
    except (OSError, ValueError) as err:
        records, problem = None, f"{type(err).__name__}: {err}"
    else:
        problem = "" if isinstance(records, dict) else f"a JSON {type(records).__name__}, not an object"
        for name, entry in (records.items() if isinstance(records, dict) else ()):
            if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str) or not _HEX.fullmatch(entry["sha256"]):
                problem = f"the entry for {name!r:.60} has no valid sha256"
                break
    if problem:
        raise CheckpointError(
            f"{path} is corrupt ({problem}); latentkit will not reset it, since it is what verifies the files "
            f"beside it. Restore it, or delete it together with the files in {path.parent} to download them afresh"
        )
    return records


def write_record(path: Path, sha256: str, url: str) -> None:
    """Record ``sha256`` of ``path`` in its folder's ``sha256.json`` (atomically; other records kept)."""
    records = read_records(path.parent)
    records[path.name] = {
        "sha256": sha256,
        "url": url,
        "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_text(path.parent / RECORD_NAME, json.dumps(records, indent=1, sort_keys=True))


def verify_cached(path: Path, *, expected: str, url: str) -> str:
    """Check a cached file against the registry sha256 and the record; record it if it is new.

    Raises:
        CheckpointError: a mismatch (naming both hashes and the fix) or a corrupt record file.
    """
    actual = file_sha256(path)
    recorded = read_records(path.parent).get(path.name, {}).get("sha256", "")
    for want, what in ((expected, "the registry"), (recorded, f"{path.parent / RECORD_NAME} (first download)")):
        if want and not actual.startswith(want):  # the registry may give a prefix (torch hub's file names)
            raise CheckpointError(
                f"{path} has sha256 {actual}, but {what} says {want}: the file is corrupted or was replaced. "
                f"Delete it and run again to download it afresh from {url}"
            )
    if not recorded:
        logger.info("recording sha256 %s of %s", actual, path)
        write_record(path, actual, url)
    return actual
