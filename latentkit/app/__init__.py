"""Looking at latents: the browser explorer (``latentkit serve``) and videos (``latentkit video``).

This layer sits above ``metrics`` and below ``cli``: it calls the library, the command line only starts it.
:mod:`latentkit.app.videos` needs only the core dependencies (and imageio to write files);
:mod:`latentkit.app.server` needs ``pip install 'latentkit[serve]'`` (Starlette, uvicorn, python-multipart).
"""

from __future__ import annotations

__all__: list[str] = []
