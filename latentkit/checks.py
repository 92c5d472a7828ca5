"""Validation helpers for public boundaries: shapes (:class:`~latentkit.errors.ShapeError`) and values (:class:`~latentkit.errors.InputError`),
with messages naming the argument, the expected and the received value; never ``assert``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from latentkit.errors import InputError, ShapeError

__all__ = ["check_shape", "check_finite", "check_image", "check_number", "check_count", "check_render",
           "MAX_RENDER_BYTES", "PLOT_SUFFIXES", "check_plot_path"]

PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")
"""Figure formats the ``plot`` methods write (chosen by suffix; none: PNG)."""

MAX_RENDER_BYTES = 8 << 30
"""Most float32 image memory one render call may hold (8 GiB): ``images * channels * height * width * 4``."""
_ANNOUNCE_IMAGES = 256  # renders of this many images or more log an estimate first


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
    """Raise :class:`InputError` if ``x`` is complex or holds NaN or infinite values."""
    if x.is_complex():
        raise InputError(f"{name} is complex ({x.dtype}); latents and images must be real")
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


def check_number(value: Any, name: str, *, lo: float = -math.inf, hi: float = math.inf, lo_open: bool = False) -> float:
    """A finite real option value in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``), as float.

    Raises:
        InputError: not a real number (bool and str refused), NaN or inf, or out of range; one line naming it.

    Example:
        >>> check_number(0.5, "prior_weight", lo=0)
        0.5
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise InputError(f"{name} must be a number, got {type(value).__name__} {value!r:.40}")
    number = float(value)
    if not math.isfinite(number):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    if number < lo or (lo_open and number == lo) or number > hi:
        low = f"({lo}" if lo_open else f"[{lo}"
        raise InputError(f"{name} must be in {low}, {hi}], got {value!r}")
    return number


def check_count(value: Any, name: str, *, lo: int = 0, limit: int) -> int:
    """An integer option value in ``[lo, limit]`` (a count of seeds, samples, steps ...).

    Raises:
        InputError: not an integer, or outside the range (the message gives the number and the limit).
    """
    if isinstance(value, bool) or not isinstance(value, int) and not (isinstance(value, float) and value.is_integer()):
        raise InputError(f"{name} must be an integer, got {type(value).__name__} {value!r:.40}")
    count = int(value)
    if not lo <= count <= limit:
        raise InputError(f"{name} is {count:,}, it must be in [{lo:,}, {limit:,}]")
    return count


def check_render(count: int, G: Any, what: str, *, max_bytes: int = MAX_RENDER_BYTES) -> None:
    """Refuse a render of ``count`` images by ``G`` whose float32 result would pass ``max_bytes``; log an
    estimate line (images, resolution, memory) before a long one.

    Raises:
        InputError: naming the count, the memory it needs and the limit.
    """
    res, channels = int(getattr(G, "img_resolution", 0) or 0), int(getattr(G, "img_channels", 3) or 3)
    need = int(count) * channels * res * res * 4
    if need > max_bytes:
        raise InputError(f"{what} renders {count:,} images of {res}x{res}, {need / 2**30:,.1f} GiB in memory, more "
                         f"than the limit of {max_bytes / 2**30:,.0f} GiB; render fewer (fewer latents, steps or amounts)")
    if count >= _ANNOUNCE_IMAGES:
        import logging

        logging.getLogger(__name__).warning("%s: rendering %d images of %dx%d (about %.2f GiB in memory)", what,
                                            count, res, res, need / 2**30)


def check_plot_path(path: Any) -> str:
    """The matplotlib format of a figure path (``'png'`` when it has no suffix), checked before any slow work.

    Raises:
        InputError: an unknown suffix, naming the ones accepted.
    """
    import os.path

    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix and suffix not in PLOT_SUFFIXES:
        raise InputError(f"cannot write a figure as {os.fspath(path)!r}: unknown suffix {suffix!r}; use one of "
                         f"{', '.join(PLOT_SUFFIXES)}")
    return suffix.lstrip(".") or "png"
