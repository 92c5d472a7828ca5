"""Defaults of the app layer, in one torch-free module: :mod:`latentkit.app.videos` and
:mod:`latentkit.app.state` use them, and ``latentkit video --help`` / ``latentkit serve --help`` show them
without importing torch."""

from __future__ import annotations

__all__ = ["DEFAULT_COMPONENTS", "DEFAULT_FPS", "DEFAULT_LEG_FRAMES", "DEFAULT_PORT", "DEFAULT_PREVIEW", "DEFAULT_W_FRAMES"]

DEFAULT_W_FRAMES = 120
"""Frames between two keyframes of a seed loop (NVIDIA ``gen_video.py --w-frames``)."""
DEFAULT_FPS = 60.0
"""Frames per second of a video file (``gen_video.py``'s writer)."""
DEFAULT_LEG_FRAMES = 48
"""Frames per leg of an interpolation path, per leg of an edit sweep, and of an explorer video export."""
DEFAULT_PREVIEW = 512
"""Longest side of the explorer's images (exports are at full resolution)."""
DEFAULT_COMPONENTS = 8
"""Sliders for the first K principal components of v in the explorer."""
DEFAULT_PORT = 7860
"""Port of ``latentkit serve`` (on 127.0.0.1 unless told otherwise)."""
