"""Writing frames as a video (mp4 through imageio-ffmpeg, or gif), atomically."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from latentkit.errors import InputError

__all__ = ["VIDEO_SUFFIXES", "save_video"]

VIDEO_SUFFIXES = (".mp4", ".gif", ".webm", ".mov", ".mkv", ".avi")


def save_video(path: str | os.PathLike, frames: torch.Tensor, *, fps: float = 24.0) -> Path:
    """Write frames ``[T, C, H, W]`` in [-1, 1] as a video (``.mp4`` needs ``imageio`` and ``imageio-ffmpeg``:
    ``pip install 'latentkit[video]'``; ``.gif`` needs only ``imageio``). Written atomically.

    Raises:
        InputError: a missing video backend or an unsupported suffix.
    """
    from latentkit.files import atomic_path
    from latentkit.io import to_uint8

    path = Path(path)
    try:
        import imageio.v3 as iio
    except ImportError as err:
        raise InputError(f"writing {path} needs imageio: pip install 'latentkit[video]' ({err})") from err
    array = to_uint8(frames)  # [T, H, W, C]
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise InputError(f"video file {path} must end in one of {', '.join(VIDEO_SUFFIXES)}, got {suffix or 'no suffix'!r}")
    try:
        with atomic_path(path) as tmp:
            if suffix == ".gif":
                iio.imwrite(tmp, array, extension=".gif", duration=1000.0 / fps, loop=0)
            else:
                iio.imwrite(tmp, array, extension=suffix, fps=fps)
    except (ImportError, RuntimeError, OSError, ValueError, TypeError) as err:
        raise InputError(
            f"cannot write the video {path} ({type(err).__name__}: {err}); for .mp4 install imageio-ffmpeg "
            "(pip install 'latentkit[video]') or write a .gif"
        ) from err
    return path
