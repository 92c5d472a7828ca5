"""Writing frames as a video (mp4 through imageio-ffmpeg, or gif), atomically.

:func:`save_video` writes frames held in memory; :class:`VideoWriter` takes them a batch at a time, so a long
video at full resolution never holds more than one batch of frames (mp4 and the other ffmpeg formats stream to
the encoder; a gif keeps its uint8 frames until it is closed).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import torch

from latentkit.errors import InputError

__all__ = ["VIDEO_SUFFIXES", "VideoWriter", "save_video"]

VIDEO_SUFFIXES = (".mp4", ".gif", ".webm", ".mov", ".mkv", ".avi")
_ERRORS = (ImportError, RuntimeError, OSError, ValueError, TypeError)


def _cannot(path: Path, err: BaseException) -> InputError:
    return InputError(
        f"cannot write the video {path} ({type(err).__name__}: {err}); for .mp4 install imageio-ffmpeg "
        "(pip install 'latentkit[video]') or write a .gif"
    )


class VideoWriter:
    """A video file written frame batch by frame batch; the file appears (atomically) when the writer closes.

    Use as a context manager: ``with VideoWriter("a.mp4", fps=30) as out: out.append(frames)``, where each
    ``frames`` is ``[T, C, H, W]`` in [-1, 1] (all of one size). Leaving the block through an exception
    writes nothing.

    Raises:
        InputError: a missing video backend (imageio, imageio-ffmpeg for mp4) or an unsupported suffix.
    """

    def __init__(self, path: str | os.PathLike, *, fps: float = 24.0) -> None:
        self.path = Path(path)
        self.fps = float(fps)
        self.frames = 0
        self.suffix = self.path.suffix.lower()
        if self.suffix not in VIDEO_SUFFIXES:
            raise InputError(f"video file {self.path} must end in one of {', '.join(VIDEO_SUFFIXES)}, "
                             f"got {self.suffix or 'no suffix'!r}")
        if not (self.fps > 0 and np.isfinite(self.fps)):
            raise InputError(f"fps must be a finite number > 0, got {fps!r}")
        try:
            import imageio  # noqa: F401
        except ImportError as err:
            raise InputError(f"writing {self.path} needs imageio: pip install 'latentkit[video]' ({err})") from err
        self._stack = contextlib.ExitStack()
        self._gif: list[np.ndarray] = []
        self._writer: Any = None
        self._tmp: Path | None = None

    def __enter__(self) -> VideoWriter:
        from latentkit.files import atomic_path

        self._tmp = self._stack.enter_context(atomic_path(self.path))
        return self

    def append(self, frames: torch.Tensor) -> None:
        """Add ``frames [T, C, H, W]`` in [-1, 1] (C = 1 or 3) at the end of the video."""
        from latentkit.io import to_uint8

        if self._tmp is None:
            raise InputError("VideoWriter.append outside its `with` block")
        array = to_uint8(frames)  # [T, H, W, C]
        if array.shape[-1] == 1:
            array = np.repeat(array, 3, axis=-1)
        self.frames += len(array)
        if self.suffix == ".gif":
            self._gif.extend(array)
            return
        try:
            if self._writer is None:
                import imageio.v2 as imageio2

                self._writer = imageio2.get_writer(self._tmp, format="FFMPEG", mode="I", fps=self.fps,
                                                   macro_block_size=1)
            for frame in array:
                self._writer.append_data(frame)
        except _ERRORS as err:
            raise _cannot(self.path, err) from err

    def _finish(self, write: bool) -> None:
        """Close the encoder; with ``write``, also write a gif's frames (and refuse an empty video)."""
        writer, self._writer = self._writer, None
        try:
            if write and self.frames == 0:
                raise InputError(f"no frames were given for the video {self.path}")
        except InputError:
            if writer is not None:
                writer.close()
            raise
        try:
            if write and self.suffix == ".gif" and self._tmp is not None:
                import imageio.v3 as iio

                iio.imwrite(self._tmp, np.stack(self._gif), extension=".gif", duration=1000.0 / self.fps, loop=0)
        except _ERRORS as err:
            raise _cannot(self.path, err) from err
        finally:
            if writer is not None:
                try:
                    writer.close()
                except _ERRORS as err:
                    if write:
                        raise _cannot(self.path, err) from err

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        try:
            self._finish(write=kind is None)
        except InputError as error:
            self._stack.__exit__(type(error), error, error.__traceback__)
            raise
        self._stack.__exit__(kind, err, tb)


def save_video(path: str | os.PathLike, frames: torch.Tensor, *, fps: float = 24.0) -> Path:
    """Write frames ``[T, C, H, W]`` in [-1, 1] as a video (``.mp4`` needs ``imageio`` and ``imageio-ffmpeg``:
    ``pip install 'latentkit[video]'``; ``.gif`` needs only ``imageio``). Written atomically.

    Raises:
        InputError: a missing video backend or an unsupported suffix.
    """
    with VideoWriter(path, fps=fps) as out:
        out.append(frames)
    return out.path
