"""NVIDIA-family network pickles (stylegan2-ada-pytorch, stylegan3, StyleGAN-XL) -> latentkit generators.

The pickle is read as data by :mod:`latentkit.load.safe_pickle`; nothing in it is executed. The
architecture is read off the record tree of ``G_ema`` (never off the file name):

* StyleGAN-XL: the mapping network has an ``embed_proj`` child (class embedding projection);
* StyleGAN3 (configs T and R): the synthesis network has an ``input`` child with a ``freqs`` buffer;
* StyleGAN2 otherwise (both the ADA and the stylegan3-repo implementation).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from latentkit.errors import CheckpointError

if TYPE_CHECKING:
    from latentkit.load.safe_pickle import ModuleRecord
    from latentkit.nets.generator import Generator

__all__ = ["load_nvidia_pickle", "detect_architecture", "ARCHITECTURES"]

logger = logging.getLogger(__name__)

ARCHITECTURES = ("stylegan2", "stylegan3", "stylegan-xl")


def _children(record: Any) -> dict:
    children = getattr(record, "children", None)
    return children if isinstance(children, dict) else {}


def detect_architecture(g_ema: ModuleRecord) -> str:
    """Architecture family of a ``G_ema`` record: ``'stylegan2'``, ``'stylegan3'`` or ``'stylegan-xl'``.

    Args:
        g_ema: the generator record from :func:`~latentkit.load.safe_pickle.read_network_pickle`.

    Raises:
        CheckpointError: if the record has no ``mapping`` and ``synthesis`` networks.
    """
    children = _children(g_ema)
    mapping, synthesis = children.get("mapping"), children.get("synthesis")
    if mapping is None or synthesis is None:
        name = getattr(g_ema, "class_name", type(g_ema).__name__)
        raise CheckpointError(
            f"'G_ema' ({name}) is not a StyleGAN generator: expected children 'mapping' and 'synthesis', "
            f"found {sorted(children) or 'none'}"
        )
    if "embed_proj" in _children(mapping):
        return "stylegan-xl"
    first = _children(synthesis).get("input")
    if first is not None and "freqs" in (getattr(first, "buffers", None) or {}):
        return "stylegan3"
    return "stylegan2"


def load_nvidia_pickle(path: str | os.PathLike) -> Generator:
    """Load the ``G_ema`` network of an NVIDIA-family pickle without executing anything from the file.

    Args:
        path: a ``.pkl`` written by stylegan2-ada-pytorch, stylegan3 or StyleGAN-XL.

    Returns:
        A latentkit :class:`~latentkit.nets.generator.Generator` on the CPU in float32.

    Raises:
        CheckpointError: the file is not such a pickle, refers to a global outside the allow-list, is
            truncated, or has no ``G_ema``.
    """
    from latentkit.load.safe_pickle import read_network_pickle

    path = Path(path)
    data = read_network_pickle(path)
    if not isinstance(data, dict):
        raise CheckpointError(
            f"{path}: expected a network pickle holding a dict with 'G_ema', got a {type(data).__name__}"
        )
    if data.get("G_ema") is None:
        keys = ", ".join(repr(k) for k in data) or "none"
        raise CheckpointError(
            f"{path} has no generator 'G_ema' (keys found: {keys}); pass a network snapshot written by "
            f"stylegan2-ada-pytorch, stylegan3 or StyleGAN-XL"
        )
    g_ema = data["G_ema"]
    family = detect_architecture(g_ema)
    logger.debug("%s: G_ema is %s", path, family)
    if family == "stylegan-xl":
        from latentkit.load.nvidia_stylegan3 import build_stylegan_xl

        return build_stylegan_xl(g_ema)
    if family == "stylegan3":
        from latentkit.load.nvidia_stylegan3 import build_stylegan3

        return build_stylegan3(g_ema)
    from latentkit.load.nvidia_stylegan2 import build_stylegan2

    return build_stylegan2(g_ema)
