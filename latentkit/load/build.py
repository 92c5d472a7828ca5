"""Validated construction of a network from untrusted attributes: sizes checked, parameters never initialised.

Loaders read sizes (``z_dim``, resolutions, channel counts) and gains from the file, so each value is
checked here for type, sign and range before anything is built (:func:`as_int`, :func:`as_float`). The
network is then constructed on the ``meta`` device (:func:`build_on_meta`: no memory, no ``randn``), its
expected tensor shapes compared with the stored ones, and the stored tensors put in place
(:func:`assign_tensors`), after checking that every one is finite.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np
import torch

from latentkit.errors import CheckpointError

__all__ = ["as_int", "as_float", "as_bool", "build_on_meta", "assign_tensors", "MAX_SIZE"]

MAX_SIZE = 1 << 16
"""Largest size attribute accepted (latent dims, channels, resolutions): 65536."""

M = TypeVar("M", bound=torch.nn.Module)


def as_int(value: Any, what: str, *, lo: int = 0, hi: int = MAX_SIZE) -> int:
    """An integer attribute in ``[lo, hi]``; integral floats are accepted, nothing else (no str, no bool).

    Raises:
        CheckpointError: naming ``what``, the value and the range.
    """
    if isinstance(value, (np.integer, np.floating)) and np.ndim(value) == 0:
        value = value.item()
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if type(value) is not int:
        raise CheckpointError(f"{what} must be an integer, got {type(value).__name__} {value!r:.40}")
    if not lo <= value <= hi:
        raise CheckpointError(f"{what} is {value}, outside the supported range [{lo}, {hi}]; the file is corrupt or hostile")
    return value


def as_float(value: Any, what: str, *, lo: float = -math.inf, hi: float = math.inf) -> float:
    """A finite real attribute in ``[lo, hi]``.

    Raises:
        CheckpointError: not a real number, not finite, or out of range.
    """
    if isinstance(value, (np.integer, np.floating)) and np.ndim(value) == 0:
        value = value.item()
    if type(value) not in (int, float):
        raise CheckpointError(f"{what} must be a number, got {type(value).__name__} {value!r:.40}")
    value = float(value)
    if not math.isfinite(value) or not lo <= value <= hi:
        raise CheckpointError(f"{what} is {value}, it must be finite and in [{lo}, {hi}]; the file is corrupt or hostile")
    return value


def as_bool(value: Any, what: str) -> bool:
    """A boolean attribute (``bool``, numpy bool, or the integers 0/1)."""
    if isinstance(value, np.bool_):
        value = bool(value)
    if type(value) is bool:
        return value
    if type(value) is int and value in (0, 1):
        return bool(value)
    raise CheckpointError(f"{what} must be a boolean, got {type(value).__name__} {value!r:.40}")


def build_on_meta(factory: Callable[[], M], what: str) -> M:
    """Construct a network on the ``meta`` device: sizes only, no memory allocated, no initialisation.

    Raises:
        CheckpointError: the constructor refused the configuration (its message is kept).
    """
    try:
        with torch.device("meta"):
            return factory()
    except (ValueError, TypeError, IndexError, KeyError, ZeroDivisionError, OverflowError, RuntimeError) as err:
        raise CheckpointError(f"{what}: the stored configuration is not a valid network ({err})") from err


def assign_tensors(module: torch.nn.Module, state: Mapping[str, torch.Tensor], *, where: str) -> None:
    """Put stored tensors (float32, CPU) into a network built by :func:`build_on_meta`, strictly.

    Args:
        module: the network, parameters still on ``meta``.
        state: module key -> stored tensor, every parameter and persistent buffer exactly once.
        where: name used in messages (e.g. ``'G_ema'``).

    Raises:
        CheckpointError: a missing, unexpected, mis-shaped or non-finite tensor (named).
    """
    targets = module.state_dict()
    missing = [key for key in targets if key not in state]
    unexpected = [key for key in state if key not in targets]
    if missing or unexpected:
        raise CheckpointError(
            f"{where}: tensors do not match the network built from its configuration: missing "
            f"{missing[:5] or 'none'}{' ...' if len(missing) > 5 else ''}, unexpected "
            f"{unexpected[:5] or 'none'}{' ...' if len(unexpected) > 5 else ''}"
        )
    ready = {}
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(targets[key].shape):
            raise CheckpointError(
                f"{where}: tensor {key} has shape {list(tensor.shape)}, expected {list(targets[key].shape)} "
                "(the shape the stored configuration gives)"
            )
        value = tensor.detach().to(device="cpu", dtype=torch.float32).contiguous()
        if value.data_ptr() == tensor.data_ptr():
            value = value.clone()
        if not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{where}: tensor {key} holds NaN or infinite values; the file is corrupt")
        ready[key] = value
    module.load_state_dict(ready, strict=True, assign=True)
    for name, sub in module.named_modules():
        for attr, value in [*sub.named_parameters(recurse=False), *sub.named_buffers(recurse=False),
                            *vars(sub).items()]:
            if isinstance(value, torch.Tensor) and value.is_meta:
                raise CheckpointError(f"{where}: {name or 'network'}.{attr} has no stored value")
