"""File mechanics, torch-free: atomic writes that stay inside their folder, OS errors as one line, and the
``.npz`` + JSON metadata format read back with bounds.

* :func:`atomic_path` yields a temporary name beside the target; on success the file is flushed to disk and
  renamed over the target, so a crash, a full disk or a kill leaves the old file or the new one, never half
  of one. Files get the mode the umask gives (``0666 & ~umask``), as ``open`` would.
* With ``root=``, a write whose path leads out of ``root`` through a symlink (a symlinked sub-folder, or the
  file itself) is refused: output folders are untrusted.
* Every ``OSError`` on the write path (disk full, read-only file system, name too long, permission denied,
  a file where a folder should be, a symlink loop) becomes one :class:`~latentkit.errors.InputError` line
  naming the path.

The ``.npz`` + JSON format read back with bounds lives in :mod:`latentkit.datafiles`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from latentkit.errors import InputError, LatentkitError

__all__ = [
    "append_line",
    "atomic_path",
    "atomic_write_text",
    "check_inside",
    "file_mode",
    "os_error",
    "replace_file",
]

_HINTS = {
    errno.ENOSPC: "the disk is full; free space and run again (finished work is kept)",
    errno.EDQUOT: "the disk quota is exceeded; free space and run again (finished work is kept)",
    errno.EROFS: "the file system is read-only; choose a writable folder",
    errno.ENAMETOOLONG: "the name is too long for the file system; choose a shorter path",
    errno.EACCES: "permission denied; choose a folder you can write to",
    errno.EPERM: "operation not permitted; choose a folder you can write to",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
    errno.EISDIR: "it is a folder; pass a file path",
    errno.ELOOP: "the path is a symlink loop or a symlink where none is allowed",
    errno.EEXIST: "a file is in the way of a folder; choose another path",
}


def os_error(path: str | os.PathLike, err: OSError, action: str = "write") -> InputError:
    """One line for an ``OSError`` on ``path``: what failed, the system's reason and what to do."""
    code = err.errno or 0
    reason = _HINTS.get(code) or (err.strerror or str(err) or type(err).__name__)
    name = errno.errorcode.get(code, "")
    return InputError(f"cannot {action} {os.fspath(path)}: {reason}{f' ({name})' if name else ''}")


def _umask() -> int:
    """The process's umask, read from ``/proc`` (thread-safe), else by setting and restoring it."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            found = re.search(r"^Umask:\s*([0-7]+)", fh.read(), re.M)
        if found:
            return int(found.group(1), 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a new file gets from ``open``: ``0o666`` less the process's umask."""
    return 0o666 & ~_umask()


def check_inside(path: str | os.PathLike, root: str | os.PathLike) -> Path:
    """``path``, after checking that it stays inside ``root`` when every symlink on it is followed.

    Raises:
        InputError: ``path`` (or a folder on it) is a symlink leading out of ``root``, or a symlink loop.
    """
    path, root = Path(path), Path(root)
    try:
        real_root = root.resolve()
        real = path.resolve()
    except (OSError, RuntimeError) as err:  # RuntimeError: a symlink loop (Python < 3.13)
        raise InputError(f"cannot write {path}: {err if isinstance(err, OSError) else 'a symlink loop'}") from None
    if real != real_root and real_root not in real.parents:
        raise InputError(
            f"refusing to write {path}: it is (or lies in) a symlink leading out of {root} (to {real}); "
            "remove the symlink or choose another output folder"
        )
    return path


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise InputError(
            f"cannot write {path}: a parent of it is an existing file, not a folder ({exc.filename}); "
            "choose another output path"
        ) from None
    except OSError as err:
        raise os_error(path, err) from None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, root: str | os.PathLike | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error, flush it to disk, give it
    the umask's mode and rename it to ``path``; on any error delete it.

    Args:
        path: the file to write.
        root: if given, ``path`` must stay inside this folder (symlinks followed), else InputError.

    Raises:
        InputError: ``path`` is a folder, leads out of ``root``, or an OS error (one line naming the path).

    Example:
        >>> with atomic_path("out.npz") as tmp:  # doctest: +SKIP
        ...     np.savez(tmp, w=np.zeros(3))
    """
    path = Path(path)
    if root is not None:
        check_inside(path, root)
    try:
        is_dir = path.is_dir()
    except OSError as err:  # a name too long, a symlink loop, no permission to look
        raise os_error(path, err) from None
    if is_dir:
        raise InputError(f"cannot write {path}: it is an existing folder; pass a file path")
    _make_parent(path)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name[:80]}.", suffix=".tmp" + path.suffix[:16], dir=path.parent)
        os.close(fd)
    except OSError as err:
        raise os_error(path, err) from None
    tmp = Path(tmp_name)
    try:
        try:
            yield tmp
            replace_file(tmp, path)
        except LatentkitError:
            raise
        except OSError as err:
            raise os_error(path, err) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def replace_file(source: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Move a finished file ``source`` (on the same file system) to ``path`` atomically: flushed to disk,
    given the umask's mode, renamed. Returns ``path``.

    Raises:
        InputError: an OS error, one line naming ``path``.
    """
    try:
        fd = os.open(source, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.fchmod(fd, file_mode())
        finally:
            os.close(fd)
        os.replace(source, path)
    except OSError as err:
        raise os_error(path, err) from None
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, *, root: str | os.PathLike | None = None) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_path`); returns the path."""
    with atomic_path(path, root=root) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def append_line(path: str | os.PathLike, line: str, *, root: str | os.PathLike | None = None) -> None:
    """Append ``line`` and a newline to ``path`` and flush it to disk; never through a symlink.

    Raises:
        InputError: ``path`` is a symlink, leads out of ``root``, or an OS error (one line naming the path).
    """
    path = Path(path)
    if root is not None:
        check_inside(path.parent, root)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise InputError(f"refusing to append to {path}: it is a symlink; remove it") from None
        raise os_error(path, err) from None
    try:
        os.write(fd, (line + "\n").encode("utf-8"))
        os.fsync(fd)
    except OSError as err:
        raise os_error(path, err) from None
    finally:
        os.close(fd)
