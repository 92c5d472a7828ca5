"""The output folder of a batch projection: its manifest (one JSON line per finished image) and its lock.

Under torchrun rank R appends to ``manifest.rank<R>.jsonl`` while rank 0 holds the lock;
:func:`merge_manifests` folds those files into ``manifest.jsonl`` (at the end of the job, or at the start of
the next run when a job died), and :func:`read_manifest` reads both until then.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from latentkit.errors import InputError

__all__ = ["LOCK", "MANIFEST", "append_manifest", "folder_lock", "merge_manifests", "rank_manifest", "read_manifest"]

logger = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"
LOCK = ".latentkit-project.lock"


def rank_manifest(rank: int) -> str:
    """``'manifest.rank<R>.jsonl'``: the file rank R of a torchrun job appends to."""
    return f"manifest.rank{int(rank)}.jsonl"


def _rank_files(outdir: Path) -> list[Path]:
    """The per-rank manifests in ``outdir``, by rank."""
    found = [(p, p.name[len("manifest.rank"):-len(".jsonl")]) for p in outdir.glob("manifest.rank*.jsonl")]
    return [p for p, r in sorted(((p, r) for p, r in found if r.isdigit()), key=lambda pr: int(pr[1]))]


def _lines(path: Path) -> list[dict[str, Any]]:
    out = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            record = json.loads(line)
            str(record["input"])
            out.append(record)
        except (json.JSONDecodeError, KeyError, TypeError):
            logger.warning("%s line %d is not a manifest record; ignored", path, number)
    return out


def read_manifest(outdir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The lines of ``manifest.jsonl`` then of the per-rank files not merged yet, by input path (the last
    line wins); an unreadable line is skipped with a warning."""
    outdir = Path(outdir)
    records: dict[str, dict[str, Any]] = {}
    for path in [outdir / MANIFEST, *_rank_files(outdir)]:
        if path.is_file():
            records.update((str(r["input"]), r) for r in _lines(path))
    return records


def merge_manifests(outdir: Path, order: list[str] | None = None) -> int:
    """Fold the per-rank manifests into ``manifest.jsonl`` and delete them; returns how many lines moved.

    The merged file keeps one line per input (the last written wins, as :func:`read_manifest` reads it):
    the old lines first, then the new ones in ``order`` (input paths; others after, by rank). It is
    written to a temporary file and renamed, so a crash leaves the old manifest or the new one, and the
    per-rank files are deleted only after. Call it holding the folder's lock.
    """
    ranks = _rank_files(outdir)
    if not ranks:
        return 0
    main = outdir / MANIFEST
    old = _lines(main) if main.is_file() else []
    new = [r for path in ranks for r in _lines(path)]
    position = {str(p): i for i, p in enumerate(order or [])}
    new.sort(key=lambda r: position.get(str(r["input"]), len(position)))  # stable: by rank after the known ones
    latest = {str(r["input"]): i for i, r in enumerate(old + new)}
    kept = [r for i, r in enumerate(old + new) if latest[str(r["input"])] == i]
    tmp = outdir / f".{MANIFEST}.merging"
    with open(tmp, "w") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in kept)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, main)
    for path in ranks:
        path.unlink(missing_ok=True)
    logger.info("merged %d lines of %d per-rank manifests into %s", len(new), len(ranks), main)
    return len(new)


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


def append_manifest(outdir: Path, line: dict[str, Any], *, name: str = MANIFEST) -> None:
    """One line, appended to ``outdir/name`` and flushed to disk (the lock makes this process the only writer)."""
    with open(outdir / name, "a") as fh:
        fh.write(json.dumps(line) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
