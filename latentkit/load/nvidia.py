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
    _check_records(g_ema, "G_ema")
    if "embed_proj" in _children(mapping):
        return "stylegan-xl"
    first = _children(synthesis).get("input")
    if first is not None and "freqs" in (getattr(first, "buffers", None) or {}):
        return "stylegan3"
    return "stylegan2"


# The classes of NVIDIA's generators (stylegan2-ada-pytorch, stylegan3, StyleGAN-XL); torch's own modules
# inside them arrive with qualified names, already allow-listed by the unpickler.
NETWORK_CLASSES = frozenset({
    "Generator", "SuperresGenerator", "MappingNetwork", "SynthesisNetwork", "SynthesisBlock", "SynthesisLayer",
    "SynthesisInput", "ToRGBLayer", "FullyConnectedLayer", "Conv2dLayer",
})


def _check_records(record: Any, where: str, depth: int = 0) -> None:
    """Every record under ``G_ema`` must be a generator class (or an allow-listed torch module) and name a
    known activation: a record claiming another class (a callable's name) is refused, not loaded."""
    from latentkit.nets.ops import ACTIVATIONS

    name = getattr(record, "class_name", "")
    if not isinstance(name, str) or ("." not in name and name not in NETWORK_CLASSES) or depth > 32:
        raise CheckpointError(f"{where} is a {name!r:.60}, which is not a class of a StyleGAN generator "
                              f"(expected one of {sorted(NETWORK_CLASSES)})")
    kwargs = getattr(record, "init_kwargs", {}) if "." not in name else {}
    for act in (record.attr("activation", None) if "." not in name else None, kwargs.get("activation")):
        if act is not None and (not isinstance(act, str) or act not in ACTIVATIONS):
            raise CheckpointError(f"{where}.activation is {act!r:.40}, not one of {sorted(ACTIVATIONS)}")
    for child, value in _children(record).items():
        _check_records(value, f"{where}.{child}", depth + 1)


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
