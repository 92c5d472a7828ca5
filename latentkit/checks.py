"""Validation helpers for public boundaries: shapes (:class:`~latentkit.errors.ShapeError`) and values (:class:`~latentkit.errors.InputError`),
with messages naming the argument, the expected and the received value; never ``assert``."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from latentkit.errors import InputError, ShapeError

__all__ = ["check_shape", "check_finite", "check_image"]


def _format(shape: Sequence[int | str | None]) -> str:
    return "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"


def check_shape(x: torch.Tensor, shape: Sequence[int | str | None], name: str) -> dict[str, int]:
    """Check that ``x`` matches ``shape``.

    Args:
        x: tensor to check.
        shape: one entry per dimension: an int (exact size), a str (a named size that must be equal
            wherever the same name appears, returned in the dict) or None (any size).
        name: the argument name used in the error message.

    Returns:
        The sizes bound to each named dimension, e.g. ``{"N": 4}``.

    Raises:
        ShapeError: if the rank or a size differs, or ``x`` is not a tensor.

    Example:
        >>> check_shape(torch.zeros(4, 8), ["N", 8], "w")
        {'N': 4}
    """
    if not isinstance(x, torch.Tensor):
        raise ShapeError(f"{name} must be a torch.Tensor of shape {_format(shape)}, got {type(x).__name__}")
    if x.ndim != len(shape):
        raise ShapeError(
            f"{name} must have shape {_format(shape)} ({len(shape)} dims), got {list(x.shape)}"
        )
    bound: dict[str, int] = {}
    for size, want in zip(x.shape, shape):
        if want is None:
            continue
        if isinstance(want, str):
            if bound.setdefault(want, size) != size:
                raise ShapeError(
                    f"{name} must have shape {_format(shape)} with equal '{want}' sizes, got {list(x.shape)}"
                )
        elif size != want:
            raise ShapeError(f"{name} must have shape {_format(shape)}, got {list(x.shape)}")
    return bound


def check_finite(x: torch.Tensor, name: str) -> None:
    """Raise :class:`InputError` if ``x`` holds NaN or infinite values."""
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise InputError(f"{name} holds {bad} non-finite values (NaN or inf)")


def check_image(img: torch.Tensor, name: str, *, channels: int | None = None) -> int:
    """Check a float image batch ``[N, C, H, W]`` and return N.

    Raises:
        ShapeError: if ``img`` is not a 4-D floating tensor with ``channels`` channels.
    """
    sizes = check_shape(img, ["N", channels, None, None], name)
    if not img.is_floating_point():
        raise ShapeError(f"{name} must be a float tensor in [-1, 1], got dtype {img.dtype}")
    return sizes["N"]
