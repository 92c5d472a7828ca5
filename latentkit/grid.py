"""Labelled image grids: row labels on the left, column labels on top, tiles of bounded size.

Every grid the command line writes goes through :func:`save_labelled_grid`, so they all look the same
and stay a reasonable size (tiles of at most 256 px by default, area-downscaled).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from latentkit.errors import InputError, ShapeError

__all__ = ["DEFAULT_TILE", "labelled_grid", "save_labelled_grid"]

DEFAULT_TILE = 256
_PAD = 4


def _tile(img: torch.Tensor, size: int) -> np.ndarray:
    """``[C, H, W]`` in [-1, 1] -> uint8 ``[size', size', 3]`` (downscaled by area when larger than ``size``)."""
    from PIL import Image

    arr = ((img.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    h, w = arr.shape[:2]
    if max(h, w) > size:
        scale = size / max(h, w)
        arr = np.asarray(Image.fromarray(arr).resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BOX))
    return arr


def labelled_grid(images: torch.Tensor, *, cols: Sequence[str], rows: Sequence[str] = (), title: str = "",
                  tile: int = DEFAULT_TILE):
    """A PIL image: ``images [R * C, 3, H, W]`` (row-major, in [-1, 1]) laid out R x C with labels.

    Args:
        images: ``[R * C, C, H, W]`` in [-1, 1], row-major.
        cols: one label per column (drawn above).
        rows: one label per row (drawn on the left); empty: no label column, ``R = N / len(cols)``.
        title: a line above the column labels.
        tile: the largest side of each image; larger images are area-downscaled, never upscaled.

    Raises:
        ShapeError: ``images`` is not ``len(rows) * len(cols)`` images.
        InputError: ``tile`` below 8 px.
    """
    from PIL import Image, ImageDraw, ImageFont

    if not rows and isinstance(images, torch.Tensor) and cols and images.shape[0] % len(cols) == 0:
        rows = [""] * (images.shape[0] // len(cols))
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[0] != len(rows) * len(cols):
        shape = list(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ShapeError(f"images must be [{len(rows)} * {len(cols)}, C, H, W] (rows x columns), got {shape}")
    if int(tile) < 8:
        raise InputError(f"tile must be at least 8 px, got {tile}")
    tiles = [_tile(img, int(tile)) for img in images]
    th, tw = tiles[0].shape[:2]
    font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def size(text: str) -> tuple[int, int]:
        left, top, right, bottom = probe.textbbox((0, 0), text, font=font)
        return right - left, bottom - top

    label_w = max([size(r)[0] for r in rows] + [0]) + 2 * _PAD
    title_h = size(title)[1] + 2 * _PAD if title else 0
    label_h = max([size(c)[1] for c in cols] + [0]) + 2 * _PAD + title_h
    canvas = Image.new("RGB", (label_w + len(cols) * (tw + _PAD), label_h + len(rows) * (th + _PAD)), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((label_w, _PAD), title, fill="black", font=font)
    for j, text in enumerate(cols):
        w, _ = size(text)
        draw.text((label_w + j * (tw + _PAD) + (tw - w) // 2, title_h + _PAD), text, fill="black", font=font)
    for i, text in enumerate(rows):
        _, h = size(text)
        draw.text((_PAD, label_h + i * (th + _PAD) + (th - h) // 2), text, fill="black", font=font)
        for j in range(len(cols)):
            canvas.paste(Image.fromarray(tiles[i * len(cols) + j]), (label_w + j * (tw + _PAD), label_h + i * (th + _PAD)))
    return canvas


def save_labelled_grid(path: str | os.PathLike, images: torch.Tensor, *, cols: Sequence[str], rows: Sequence[str] = (),
                       title: str = "", tile: int = DEFAULT_TILE) -> Path:
    """Write :func:`labelled_grid` as PNG (or JPEG by suffix), atomically; returns the path."""
    from latentkit.files import atomic_path

    path = Path(path)
    grid = labelled_grid(images, rows=rows, cols=cols, title=title, tile=tile)
    with atomic_path(path) as tmp:
        grid.save(tmp, format="JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG")
    return path
