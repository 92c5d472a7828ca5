"""Where downloaded weights, fitted priors and other cached files live.

``LATENTKIT_CACHE`` if set, else ``$XDG_CACHE_HOME/latentkit``, else ``~/.cache/latentkit``.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir(*parts: str) -> Path:
    """The cache folder (created on demand), or a sub-folder of it.

    Example:
        >>> cache_dir("priors")  # doctest: +SKIP
        PosixPath('/home/me/.cache/latentkit/priors')
    """
    root = os.environ.get("LATENTKIT_CACHE")
    if root:
        base = Path(root).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "latentkit"
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
