"""Labelled grids: layout, tile bound, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentkit.errors import InputError, ShapeError
from latentkit.grid import labelled_grid, save_labelled_grid


def test_layout_and_tiles_are_bounded(tmp_path):
    imgs = torch.linspace(-1, 1, 6 * 3 * 40 * 40).reshape(6, 3, 40, 40)
    grid = labelled_grid(imgs, rows=["first", "second"], cols=["a", "b", "c"], tile=20)
    width, height = grid.size
    assert 3 * 20 < width < 3 * 24 + 200 and 2 * 20 < height < 2 * 24 + 40  # tiles downscaled to 20 px
    small = labelled_grid(imgs[:, :, :10, :10], rows=["r1", "r2"], cols=["a", "b", "c"], tile=20)
    assert small.size[0] < width  # never upscaled
    path = save_labelled_grid(tmp_path / "g.png", imgs, rows=["1", "2"], cols=["a", "b", "c"], tile=20)
    assert path.is_file() and not list(tmp_path.glob("*.tmp*"))
    # A white label margin, then the first tile: its top-left pixel is the first image's top-left (value -1 -> 0).
    arr = np.asarray(grid)
    assert arr.max() == 255 and arr.min() == 0


def test_errors():
    with pytest.raises(ShapeError, match=r"\[2 \* 3, C, H, W\]"):
        labelled_grid(torch.zeros(5, 3, 8, 8), rows=["a", "b"], cols=["x", "y", "z"])
    with pytest.raises(InputError, match="tile must be at least 8"):
        labelled_grid(torch.zeros(1, 3, 8, 8), rows=["a"], cols=["x"], tile=4)
