"""Frames for videos: NVIDIA ``gen_video.py``'s looping grid of seeds, an edit sweep, a path between latents.

Every maker yields batches of frames ``[B, C, H, W]`` in about [-1, 1] on the CPU, so a long video at full
resolution is never held in memory; :func:`write_video` streams them into a file through
:class:`latentkit.video.VideoWriter`, optionally area-downscaled to a preview size.

The seed loop follows ``gen_video.py`` (NVIDIA's stylegan3): the seeds fill a ``grid_w x grid_h`` grid
``num_keyframes`` times (``num_keyframes = len(seeds) / (grid_w * grid_h)`` unless given; seeds repeat to
fill it), each cell's keyframe latents are tiled ``2 * wraps + 1`` times and interpolated with scipy's
``interp1d(kind='cubic')`` so the path loops smoothly, and ``num_keyframes * w_frames`` frames are rendered
with constant noise. Its command-line defaults carry over: 120 frames per keyframe, cubic, psi 1, 60 fps.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from latentkit.app.settings import DEFAULT_FPS, DEFAULT_LEG_FRAMES, DEFAULT_W_FRAMES
from latentkit.errors import InputError
from latentkit.latent.edit import LayerSpec, edit, ramp_amounts
from latentkit.latent.interpolate import interpolate
from latentkit.latent.sampling import one_hot, z_from_seed
from latentkit.video import VideoWriter

if TYPE_CHECKING:
    from latentkit.latent.directions import Directions
    from latentkit.latent.prior import GaussianPrior
    from latentkit.nets.generator import Generator

__all__ = ["DEFAULT_FPS", "DEFAULT_W_FRAMES", "KINDS", "downscale", "edit_frames", "file_latents", "parse_grid", "path_frames",
           "frame_count", "render_batches", "seed_latents", "seed_loop_frames", "write_video"]

KINDS = ("linear", "quadratic", "cubic")  # scipy interp1d kinds that loop smoothly enough
_BATCH = 8


def parse_grid(text: str) -> tuple[int, int]:
    """``'2x3'`` -> ``(2, 3)`` (width, height), as ``gen_video.py --grid``.

    Raises:
        InputError: anything but two positive integers joined by ``x``.
    """
    parts = str(text).lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise InputError(f"cannot parse grid {text!r}: expected WxH, e.g. 2x2")
    return int(parts[0]), int(parts[1])


def downscale(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """Area-downscale ``images [N, C, H, W]`` so the longer side is at most ``size`` (None: unchanged; never upscales)."""
    if size is None or max(images.shape[-2:]) <= int(size):
        return images
    scale = int(size) / max(images.shape[-2:])
    out = (max(1, round(images.shape[-2] * scale)), max(1, round(images.shape[-1] * scale)))
    return torch.nn.functional.interpolate(images.float(), size=out, mode="area")


@torch.no_grad()
def render_batches(G: Generator, ws: Iterable[torch.Tensor], *, noise_mode: str = "const") -> Iterator[torch.Tensor]:
    """Render each ``[B, num_ws, w_dim]`` of ``ws``: yields images ``[B, C, H, W]`` on the CPU, float32."""
    device = G.w_avg.device
    for chunk in ws:
        yield G.synthesis(chunk.to(device), noise_mode=noise_mode).float().cpu()


def _labels(G: Generator, n: int) -> torch.Tensor | None:
    """Class 0 for conditional generators (None otherwise), ``[n, c_dim]``."""
    return one_hot([0] * n, G.c_dim, device=G.w_avg.device) if G.c_dim else None


@torch.no_grad()
def seed_latents(G: Generator, seeds: Sequence[int], *, psi: float = 1.0) -> torch.Tensor:
    """W+ latents of ``seeds`` (z as NVIDIA draws them; class 0 on a conditional net), ``[N, num_ws, w_dim]`` on the CPU."""
    z = torch.cat([z_from_seed(int(s), G.z_dim) for s in seeds])
    return G.mapping(z, _labels(G, len(z)), truncation_psi=psi).float().cpu()


def file_latents(G: Generator, paths: Sequence[str | os.PathLike]) -> torch.Tensor:
    """The latents of ``.npz`` files (NVIDIA's key ``w``) one after another, W broadcast to W+,
    ``[N, num_ws, w_dim]``.

    Raises:
        InputError: no files, or an unreadable file. ShapeError: latents that do not fit ``G``.
    """
    from latentkit.io import load_latents

    if not paths:
        raise InputError("give at least one latent file (.npz with key 'w')")
    parts = []
    for path in paths:
        ws = load_latents(path)
        ws = ws.expand(-1, G.num_ws, -1) if ws.ndim == 3 and ws.shape[1] == 1 else ws
        G.check_ws(ws)
        parts.append(ws.float())
    return torch.cat(parts)


@torch.no_grad()
def seed_loop_frames(
    G: Generator,
    seeds: Sequence[int],
    *,
    grid: tuple[int, int] = (1, 1),
    num_keyframes: int | None = None,
    w_frames: int = DEFAULT_W_FRAMES,
    kind: str = "cubic",
    wraps: int = 2,
    psi: float = 1.0,
    shuffle_seed: int | None = None,
    batch_size: int = _BATCH,
) -> Iterator[torch.Tensor]:
    """``gen_video.py``'s looping interpolation through seeds, as frames ``[B, C, grid_h * H, grid_w * W]``.

    Args:
        G: the generator (class 0 for a conditional one).
        seeds: seeds of the keyframes (z as NVIDIA draws them, :func:`~latentkit.latent.sampling.z_from_seed`).
        grid: ``(grid_w, grid_h)`` cells, each looping through its own keyframes.
        num_keyframes: keyframes per cell (None: ``len(seeds) / (grid_w * grid_h)``, which must divide).
        w_frames: frames between two keyframes.
        kind: scipy ``interp1d`` kind: ``'cubic'`` (NVIDIA's), ``'quadratic'`` or ``'linear'``.
        wraps: keyframe copies on each side, so the spline loops smoothly.
        psi: truncation of the keyframe latents (1: none).
        shuffle_seed: shuffle the keyframes with ``np.random.RandomState(shuffle_seed)`` (None: in order).
        batch_size: frames rendered per call (memory only).

    Yields:
        Frames in order, ``num_keyframes * w_frames`` in all.

    Raises:
        InputError: no seeds, seeds that do not fill the grid, a bad kind or counts below 1.
    """
    import scipy.interpolate

    grid_w, grid_h = (int(g) for g in grid)
    cells = grid_w * grid_h
    if not seeds or cells < 1:
        raise InputError("give at least one seed and a grid of at least 1x1")
    if kind not in KINDS:
        raise InputError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if int(w_frames) < 1 or int(wraps) < 1:
        raise InputError(f"w_frames and wraps must be >= 1, got {w_frames} and {wraps}")
    if num_keyframes is None:
        if len(seeds) % cells:
            raise InputError(f"{len(seeds)} seeds do not fill a {grid_w}x{grid_h} grid: give a multiple of {cells} "
                             "seeds, or num_keyframes")
        num_keyframes = len(seeds) // cells
    if int(num_keyframes) < 1:
        raise InputError(f"num_keyframes must be >= 1, got {num_keyframes}")
    all_seeds = np.array([seeds[i % len(seeds)] for i in range(num_keyframes * cells)], dtype=np.int64)
    if shuffle_seed is not None:
        np.random.RandomState(int(shuffle_seed)).shuffle(all_seeds)
    keyframes = seed_latents(G, all_seeds.tolist(), psi=psi).double()  # [K * cells, num_ws, w_dim]
    keys = keyframes.reshape(grid_h, grid_w, num_keyframes, *keyframes.shape[1:]).numpy()
    x = np.arange(-num_keyframes * wraps, num_keyframes * (wraps + 1))
    splines = [scipy.interpolate.interp1d(x, np.tile(keys[yi, xi], [wraps * 2 + 1, 1, 1]), kind=kind, axis=0)
               for yi in range(grid_h) for xi in range(grid_w)]
    total = num_keyframes * int(w_frames)

    def latents() -> Iterator[torch.Tensor]:
        for start in range(0, total, max(1, batch_size)):
            t = np.arange(start, min(total, start + batch_size)) / int(w_frames)
            cell_ws = np.stack([spline(t) for spline in splines], 1)  # [B, cells, num_ws, w_dim]
            yield torch.from_numpy(cell_ws).float().flatten(0, 1)  # [B * cells, num_ws, w_dim]

    for images in render_batches(G, latents()):
        b = images.shape[0] // cells
        c, h, w = images.shape[1:]
        tiled = images.reshape(b, grid_h, grid_w, c, h, w).permute(0, 3, 1, 4, 2, 5)  # [B, C, gh, H, gw, W]
        yield tiled.reshape(b, c, grid_h * h, grid_w * w)


def edit_frames(
    G: Generator,
    ws: torch.Tensor,
    direction: Directions,
    *,
    amounts: Sequence[float] = (-3.0, 3.0),
    frames: int = DEFAULT_LEG_FRAMES,
    layers: LayerSpec = None,
    batch_size: int = _BATCH,
) -> Iterator[torch.Tensor]:
    """An edit sweep of one latent ``ws [1, num_ws, w_dim]``: ``frames`` amounts from ``min(amounts)`` to
    ``max(amounts)`` and back (:func:`~latentkit.latent.edit.ramp_amounts`), rendered, ``[B, C, H, W]``."""
    G.check_ws(ws)
    steps = ramp_amounts(list(amounts), frames)

    def latents() -> Iterator[torch.Tensor]:
        for i in range(0, len(steps), max(1, batch_size)):
            yield torch.cat([edit(ws[:1], direction, a, layers=layers) for a in steps[i : i + batch_size]])

    yield from render_batches(G, latents())


def path_frames(
    G: Generator,
    ws: torch.Tensor,
    *,
    frames_per_pair: int = DEFAULT_LEG_FRAMES,
    space: str = "w",
    prior: GaussianPrior | None = None,
    loop: bool = False,
    batch_size: int = _BATCH,
) -> Iterator[torch.Tensor]:
    """A path through latents ``ws [K, num_ws, w_dim]`` (K >= 2), in order (and back to the first with
    ``loop``): each leg has ``frames_per_pair`` frames from :func:`~latentkit.latent.interpolate.interpolate`
    in ``space`` ``'w'`` or ``'v'`` (needs ``prior``), without repeating the shared endpoints."""
    G.check_ws(ws)
    if ws.shape[0] < 2:
        raise InputError(f"a path needs at least two latents, got {ws.shape[0]}")
    if space not in ("w", "v"):
        raise InputError(f"a path between latent files runs in space 'w' or 'v', got {space!r}")
    stops = torch.cat([ws, ws[:1]]) if loop else ws
    legs = [interpolate(stops[i : i + 1], stops[i + 1 : i + 2], int(frames_per_pair) + 1, space=space,
                        prior=prior)[:-1, 0] for i in range(len(stops) - 1)]
    path = torch.cat(legs + ([] if loop else [ws[-1:]]))  # [T, num_ws, w_dim]
    yield from render_batches(G, path.split(max(1, batch_size)))


def write_video(path: str | os.PathLike, frames: Iterable[torch.Tensor], *, fps: float = DEFAULT_FPS,
                size: int | None = None, progress: bool = True, total: int | None = None) -> Path:
    """Stream frame batches ``[B, C, H, W]`` into a video file (mp4 via imageio-ffmpeg, gif via imageio),
    each area-downscaled so its longer side is at most ``size`` (None: as rendered). Written atomically."""
    from tqdm.auto import tqdm

    with VideoWriter(path, fps=fps) as out, tqdm(total=total, desc="video", unit="frame", disable=not progress,
                                                 leave=False) as bar:
        for batch in frames:
            out.append(downscale(batch, size))
            bar.update(len(batch))
    return out.path


def frame_count(n_seeds: int, grid: tuple[int, int], num_keyframes: int | None, w_frames: int) -> int:
    """How many frames :func:`seed_loop_frames` yields for these settings (0 when they do not fit)."""
    cells = grid[0] * grid[1]
    keyframes = num_keyframes if num_keyframes is not None else (n_seeds // cells if n_seeds % cells == 0 else 0)
    return max(0, int(keyframes)) * int(w_frames) if math.isfinite(w_frames) else 0
