"""Images for the metrics, from a folder, a float image tensor or a generator, as uint8 batches ``[B, 3, H, W]``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentkit.errors import InputError, ShapeError

__all__ = ["image_batches", "image_files", "to_uint8_batch"]


def image_files(folder: Path) -> list[Path]:
    """The image files below ``folder``, sorted; raises InputError when there are none."""
    from latentkit.io import IMAGE_SUFFIXES

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in folder {folder}")
    return files


def to_uint8_batch(img: torch.Tensor) -> torch.Tensor:
    """Float images ``[B, C, H, W]`` in [-1, 1] -> uint8 ``[B, 3, H, W]`` (NVIDIA's quantisation; grey is repeated)."""
    from latentkit.io import to_uint8

    out = torch.from_numpy(to_uint8(img)).permute(0, 3, 1, 2)  # [B, C, H, W] uint8
    return out.expand(-1, 3, -1, -1) if out.shape[1] == 1 else out


def image_batches(source: Any, name: str, *, num_samples: int | None, seed: int, batch_size: int) -> tuple[int, Iterator[torch.Tensor]]:
    """(count, iterator over uint8 [B, 3, H, W] batches) for a folder, an image tensor or a Generator."""
    from latentkit.nets.generator import Generator

    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_dir():
            raise InputError(f"{name}: folder not found: {path}")
        files = image_files(path)
        if num_samples is not None:
            files = files[:num_samples]

        def from_files() -> Iterator[torch.Tensor]:
            from latentkit.io import load_image

            pending: list[torch.Tensor] = []
            for file in files:
                img = to_uint8_batch(load_image(file))
                if pending and (img.shape != pending[0].shape or len(pending) == batch_size):
                    yield torch.cat(pending)
                    pending = []
                pending.append(img)
            if pending:
                yield torch.cat(pending)

        return len(files), from_files()
    if isinstance(source, Generator):
        if num_samples is None or num_samples < 2:
            raise InputError(f"{name} is a generator: pass num_samples >= 2 (--num-samples), got {num_samples}")
        return num_samples, _generator_batches(source, num_samples, seed=seed, batch_size=batch_size)
    if isinstance(source, torch.Tensor):
        if source.ndim != 4 or source.shape[1] not in (1, 3) or not source.is_floating_point():
            raise ShapeError(f"{name} must be float images [N, C, H, W] in [-1, 1] (C = 1 or 3), got {source.dtype} {list(source.shape)}")
        return len(source), (to_uint8_batch(source[i : i + batch_size]) for i in range(0, len(source), batch_size))
    raise InputError(f"{name} must be a folder, an image tensor [N, C, H, W] or a Generator, got {type(source).__name__}")


def _generator_batches(G: Any, num_samples: int, *, seed: int, batch_size: int) -> Iterator[torch.Tensor]:
    """Untruncated samples for seeds ``seed .. seed + num_samples - 1`` (z as NVIDIA's gen_images.py draws it)."""
    from latentkit.latent.sampling import one_hot, z_from_seed

    for start in range(seed, seed + num_samples, batch_size):
        seeds = range(start, min(start + batch_size, seed + num_samples))
        z = torch.cat([z_from_seed(s, G.z_dim) for s in seeds])
        c = None
        if G.c_dim:
            classes = [int(np.random.RandomState(s).randint(G.c_dim)) for s in seeds]
            c = one_hot(classes, G.c_dim)
        with torch.no_grad():
            yield to_uint8_batch(G(z.to(G.w_avg.device), None if c is None else c.to(G.w_avg.device)).cpu())
