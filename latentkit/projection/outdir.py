"""The output folder of a batch projection: its manifest (one JSON line per finished image) and its lock.

Under torchrun rank R appends to ``manifest.rank<R>.jsonl`` while rank 0 holds the lock;
:func:`merge_manifests` folds those files into ``manifest.jsonl`` (at the end of the job, or at the start of
the next run when a job died), and :func:`read_manifest` reads both until then.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import socket
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from latentkit.datafiles import loads_bounded
from latentkit.errors import InputError
from latentkit.files import append_line, atomic_write_text, os_error

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


MAX_LINE_BYTES = 1 << 20  # a manifest line holds one image's record: far below this
MAX_LINE_DEPTH = 8


def _lines(path: Path) -> list[dict[str, Any]]:
    """The valid records of one manifest file; a line that is not one (not UTF-8, not JSON, too long or deep,
    a field of the wrong type) is skipped with a warning, so its image is redone."""
    out = []
    try:
        data = _read_inside(path)
    except InputError as err:
        raise InputError(f"{err}; the manifest of {path.parent} cannot be read") from None
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            record = loads_bounded(line, f"{path} line {number}", max_bytes=MAX_LINE_BYTES, max_depth=MAX_LINE_DEPTH)
            problem = _record_problem(record)
        except InputError as err:
            problem = str(err)
        if problem:
            logger.warning("%s line %d is not a manifest record (%.200s); ignored", path, number, problem)
        else:
            out.append(record)
    return out


def _record_problem(record: Any) -> str:
    """'' if ``record`` is a manifest line (an ``input`` string; every other known field, where present, of
    its type: strings, finite numbers, an object of numbers, an integer class), else what is wrong."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    if not isinstance(record.get("input"), str):
        return "field 'input' is not a string"
    for key in ("folder", "fingerprint"):
        if record.get(key) is not None and not isinstance(record[key], str):
            return f"field {key!r} is not a string"
    for key in ("final_loss", "psnr", "lpips", "seconds"):
        value = record.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
            return f"field {key!r} is not a finite number"
    terms, klass = record.get("final_terms", {}), record.get("class")
    if not isinstance(terms, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in terms.values()):
        return "field 'final_terms' is not an object of numbers"
    if klass is not None and (isinstance(klass, bool) or not isinstance(klass, int)):
        return "field 'class' is not an integer"
    return ""


def _read_inside(path: Path, limit: int = 1 << 30) -> bytes:
    """The bytes of ``path``, refusing a symlink and a file over ``limit`` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise InputError(f"refusing to read {path}: it is a symlink; remove it") from None
        raise os_error(path, err, "read") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise InputError(f"cannot read {path}: it is not a regular file; remove it")
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise InputError(f"cannot read {path}: it is larger than {limit:,} bytes")
    return data


def read_manifest(outdir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The lines of ``manifest.jsonl`` then of the per-rank files not merged yet, by input path (the last
    line wins); an unreadable line is skipped with a warning."""
    outdir = Path(outdir)
    records: dict[str, dict[str, Any]] = {}
    for path in [outdir / MANIFEST, *_rank_files(outdir)]:
        if path.is_file() or path.is_symlink():
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
    old = _lines(main) if main.is_file() or main.is_symlink() else []
    new = [r for path in ranks for r in _lines(path)]
    position = {str(p): i for i, p in enumerate(order or [])}
    new.sort(key=lambda r: position.get(str(r["input"]), len(position)))  # stable: by rank after the known ones
    latest = {str(r["input"]): i for i, r in enumerate(old + new)}
    kept = [r for i, r in enumerate(old + new) if latest[str(r["input"])] == i]
    atomic_write_text(main, "".join(json.dumps(r) + "\n" for r in kept), root=outdir)
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
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o666)
        except FileExistsError:
            holder = _lock_holder(path)
            if holder is not None and holder["host"] == me["host"] and not _alive(holder["pid"]):
                logger.warning("removing the stale lock %s of process %s, which has ended", path, holder["pid"])
                path.unlink(missing_ok=True)
                continue
            who = f"pid {holder['pid']} on {holder['host']}" if holder else "an unknown process (the lock file is not a valid lock)"
            raise InputError(
                f"another latentkit project ({who}) is writing to {outdir}; wait for it, choose another --outdir, "
                f"or delete {path} if that run is gone"
            ) from None
        except OSError as err:
            raise os_error(path, err, "create the lock") from None
        with os.fdopen(fd, "w") as fh:
            json.dump(me, fh)
        break
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


_MAX_PID = 1 << 22  # Linux's largest pid_max


def _lock_holder(path: Path) -> dict[str, Any] | None:
    """``{"pid": int, "host": str}`` of a lock file, or None when it is not a valid lock (never taken over)."""
    try:
        holder = loads_bounded(_read_inside(path, 4096), str(path), max_depth=2)
    except InputError:
        return None
    pid, host = (holder.get("pid"), holder.get("host")) if isinstance(holder, dict) else (None, None)
    if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid <= _MAX_PID or not isinstance(host, str):
        return None
    return {"pid": pid, "host": host}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def append_manifest(outdir: Path, line: dict[str, Any], *, name: str = MANIFEST) -> None:
    """One line, appended to ``outdir/name`` and flushed to disk (the lock makes this process the only writer)."""
    append_line(outdir / name, json.dumps(line, allow_nan=False), root=outdir)
