"""The output folder of a batch projection: its manifest (one JSON line per finished image) and its lock."""

from __future__ import annotations

import json
import logging
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from latentkit.errors import InputError

__all__ = ["LOCK", "MANIFEST", "append_manifest", "folder_lock", "read_manifest"]

logger = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"
LOCK = ".latentkit-project.lock"


def read_manifest(outdir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The manifest's lines by input path (the last line wins); an unreadable line is skipped with a warning."""
    path = Path(outdir) / MANIFEST
    records: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return records
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            record = json.loads(line)
            records[str(record["input"])] = record
        except (json.JSONDecodeError, KeyError, TypeError):
            logger.warning("%s line %d is not a manifest record; ignored", path, number)
    return records


@contextmanager
def folder_lock(outdir: Path) -> Iterator[None]:
    """Hold ``outdir/.latentkit-project.lock``; refuse while another live process on this host holds it."""
    path = outdir / LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                holder = {}
            if holder.get("host") == me["host"] and not _alive(holder.get("pid")):
                logger.warning("removing the stale lock %s of process %s, which has ended", path, holder.get("pid"))
                path.unlink(missing_ok=True)
                continue
            raise InputError(
                f"another latentkit project (pid {holder.get('pid', '?')} on {holder.get('host', '?')}) is writing "
                f"to {outdir}; wait for it, choose another --outdir, or delete {path} if that run is gone"
            ) from None
        with os.fdopen(fd, "w") as fh:
            json.dump(me, fh)
        break
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def append_manifest(outdir: Path, line: dict[str, Any]) -> None:
    """One line, appended and flushed to disk (the lock makes this process the only writer)."""
    with open(outdir / MANIFEST, "a") as fh:
        fh.write(json.dumps(line) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
