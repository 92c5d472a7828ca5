"""Images and latents in and out.

Images inside latentkit are float ``[N, C, H, W]`` in [-1, 1]; uint8 ``[H, W, C]`` exists only here.
Latents are stored as NVIDIA's ``projected_w.npz``: key ``w``, ``[N, num_ws, w_dim]`` float32.
Every file is written to a temporary name in the same folder and renamed, so a crash never leaves a
half-written output.
"""

from __future__ import annotations

import logging
import os
import tokenize
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentkit.checks import check_shape
from latentkit.errors import InputError, ShapeError
from latentkit.datafiles import read_npz, write_npz
from latentkit.files import atomic_path

__all__ = [
    "atomic_path",
    "image_size",
    "load_image",
    "save_image",
    "save_grid",
    "to_uint8",
    "load_latents",
    "save_latents",
    "IMAGE_SUFFIXES",
    "MAX_IMAGE_PIXELS",
    "MAX_LATENT_BYTES",
]

logger = logging.getLogger(__name__)

MAX_LATENT_BYTES = 1 << 30
"""Largest latent array :func:`load_latents` inflates from an ``.npz`` (1 GiB)."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """Quantise images ``[N, C, H, W]`` in [-1, 1] to uint8 ``[N, H, W, C]`` exactly as NVIDIA's
    ``gen_images.py`` does: ``clamp(img * 127.5 + 128, 0, 255)`` truncated to integers."""
    if img.ndim == 3:
        img = img.unsqueeze(0)
    check_shape(img, [None, None, None, None], "img")
    if not bool(torch.isfinite(img).all()):
        raise InputError("the images hold NaN or inf (the latents or the network gave non-finite values); nothing "
                         "was written")
    out = (img.detach().to(torch.float32).permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return out.cpu().numpy()


def _write_pil(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    if array.shape[-1] == 1:
        array = array[..., 0]
    image = Image.fromarray(array)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG"}.get(path.suffix.lower(), None)
    with atomic_path(path) as tmp:
        image.save(tmp, format=fmt or Image.registered_extensions().get(path.suffix.lower(), "PNG"))


def save_image(path: str | os.PathLike, img: torch.Tensor) -> Path:
    """Write one image ``[C, H, W]`` or ``[1, C, H, W]`` in [-1, 1] (PNG unless the suffix says otherwise)."""
    array = to_uint8(img)
    if array.shape[0] != 1:
        raise ShapeError(f"save_image writes one image, got a batch of {array.shape[0]}; use save_grid")
    path = Path(path)
    _write_pil(path, array[0])
    return path


def save_grid(path: str | os.PathLike, imgs: torch.Tensor, *, cols: int | None = None) -> Path:
    """Write images ``[N, C, H, W]`` in [-1, 1] as one grid, ``cols`` per row (default: all in one row
    up to 8, then square-ish)."""
    array = to_uint8(imgs)
    n, h, w, c = array.shape
    if cols is None:
        cols = n if n <= 8 else int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    grid = np.zeros((rows * h, cols * w, c), dtype=np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        grid[r * h : (r + 1) * h, k * w : (k + 1) * w] = array[i]
    path = Path(path)
    _write_pil(path, grid)
    return path


MAX_IMAGE_PIXELS = 64 * 1024 * 1024
"""Largest image (width x height) :func:`load_image` decodes; ``LATENTKIT_MAX_IMAGE_PIXELS`` overrides it."""
_LARGE_PIXELS = 4096 * 4096  # above this, decode and downscale in reduced steps (JPEG draft, Image.reduce)


def _pixel_limit(max_pixels: int | None) -> int:
    if max_pixels is not None:
        return int(max_pixels)
    text = os.environ.get("LATENTKIT_MAX_IMAGE_PIXELS", "")
    try:
        return int(text) if text else MAX_IMAGE_PIXELS
    except ValueError:
        raise InputError(f"LATENTKIT_MAX_IMAGE_PIXELS must be an integer, got {text!r}") from None


def _open_bounded(path: Path, resolution: int | None, max_pixels: int | None) -> Any:
    """Decode ``path`` after checking its header size; large JPEGs decode at a reduced scale (``draft``)."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    limit = _pixel_limit(max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                w, h = opened.size
                if w * h > limit:
                    raise InputError(
                        f"{path} is {w}x{h} = {w * h:,} pixels, more than the limit of {limit:,}; downscale it "
                        "first, or raise the limit with LATENTKIT_MAX_IMAGE_PIXELS (or max_pixels=)"
                    )
                if resolution is not None and opened.format == "JPEG" and w * h > _LARGE_PIXELS:
                    opened.draft("RGB", (resolution, resolution))  # DCT scaling: never decoded at full size
                opened.load()
                return opened.copy()
    except InputError:
        raise
    except Image.DecompressionBombError as err:  # PIL's own refusal, past twice its MAX_IMAGE_PIXELS
        raise _bomb(path, err, limit) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, MemoryError) as err:
        raise InputError(f"cannot read {path} as an image: {err}") from err


def _bomb(path: Path, err: Exception, limit: int) -> InputError:
    """The pixel-limit message for PIL's DecompressionBombError (whose text gives the pixel count)."""
    import re

    found = re.search(r"\((\d+) pixels\)", str(err))
    size = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
    try:  # the plugin alone reads the header without PIL's bomb check, for the width and height
        from PIL import Image

        Image.init()
        with open(path, "rb") as fh:
            prefix = fh.read(16)
            for fmt in Image.ID:
                factory, accept = Image.OPEN[fmt]
                if accept is None or accept(prefix):
                    fh.seek(0)
                    w, h = factory(fh, str(path)).size
                    size = f"{w}x{h} = {w * h:,} pixels"
                    break
    except Exception:  # noqa: BLE001 - the count from PIL's message is enough
        pass
    return InputError(f"{path} is {size}, more than the limit of {limit:,}; downscale it first, or raise the limit "
                      "with LATENTKIT_MAX_IMAGE_PIXELS (or max_pixels=)")


def image_size(path: str | os.PathLike, *, max_pixels: int | None = None) -> tuple[int, int]:
    """``(width, height)`` from an image file's header (no pixels decoded), within the pixel limit.

    Raises:
        InputError: not an image PIL can identify, or more pixels than ``max_pixels`` (default
            :data:`MAX_IMAGE_PIXELS` or ``LATENTKIT_MAX_IMAGE_PIXELS``).
    """
    from PIL import Image, UnidentifiedImageError

    path, limit = Path(path), _pixel_limit(max_pixels)
    try:
        with Image.open(path) as img:
            width, height = img.size
    except Image.DecompressionBombError as err:
        raise _bomb(path, err, limit) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as err:
        raise InputError(f"cannot read {path} as an image: {err}") from None
    if width * height > limit:
        raise InputError(f"{path} is {width}x{height} = {width * height:,} pixels, more than the limit of {limit:,}; "
                         "downscale it first, or raise the limit with LATENTKIT_MAX_IMAGE_PIXELS (or max_pixels=)")
    return width, height


def load_image(
    path: str | os.PathLike,
    *,
    resolution: int | None = None,
    channels: int = 3,
    max_pixels: int | None = None,
) -> torch.Tensor:
    """Read an image file as float ``[1, C, H, W]`` in [-1, 1].

    RGBA is composited on white, greyscale is expanded, 16-bit images are scaled to 8-bit range.
    With ``resolution``, the image is centre-cropped to a square and resized (Lanczos), and a notice is
    logged when that changes it. The header's size is checked before anything is decoded, and a large
    image is reduced by an integer factor (``Image.reduce``, and ``draft`` for JPEG) before resizing, so
    memory stays near the uint8 image; floats exist only at the final size.

    Args:
        path: the image file.
        resolution: centre-crop and resize to ``resolution x resolution``.
        channels: 3 (RGB) or 1 (greyscale).
        max_pixels: largest ``width * height`` decoded (default :data:`MAX_IMAGE_PIXELS`, or the
            ``LATENTKIT_MAX_IMAGE_PIXELS`` environment variable).

    Raises:
        InputError: if the file is missing, not an image PIL can read, or larger than ``max_pixels``.
    """
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise InputError(f"image file not found: {path}")
    image = _open_bounded(path, resolution, max_pixels)

    if image.mode in ("I;16", "I;16B", "I;16L", "I", "I;16N"):
        array = np.asarray(image, dtype=np.float64)
        scale = 255.0 / 65535.0 if array.max() > 255 else 1.0
        image = Image.fromarray(np.clip(array * scale, 0, 255).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    image = image.convert("RGB" if channels == 3 else "L")

    if resolution is not None:
        w, h = image.size
        if (w, h) != (resolution, resolution):
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            image = image.crop((left, top, left + side, top + side))
            factor = side // (2 * resolution)
            if factor >= 2 and w * h > _LARGE_PIXELS:  # box-reduce to at least twice the target first: bounded memory and time
                image = image.reduce(factor)
            image = image.resize((resolution, resolution), Image.LANCZOS)
            logger.info("%s: centre-cropped %dx%d to %dx%d and resized to %dx%d", path, w, h, side, side, resolution, resolution)

    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 2:
        array = array[:, :, None]
    tensor = torch.from_numpy(array.copy()).permute(2, 0, 1).unsqueeze(0)  # [1, C, H, W]
    return tensor / 127.5 - 1


def save_latents(path: str | os.PathLike, ws: torch.Tensor | np.ndarray, **extra: np.ndarray) -> Path:
    """Write W+ latents as NVIDIA's ``projected_w.npz`` (key ``w``, ``[N, num_ws, w_dim]`` float32).

    Args:
        path: output file (``.npz``).
        ws: ``[N, num_ws, w_dim]``.
        extra: further arrays stored beside ``w`` (e.g. optimised noise ``noise_<name>``).
    """
    array = ws.detach().cpu().numpy() if isinstance(ws, torch.Tensor) else np.asarray(ws)
    if array.ndim != 3:
        raise ShapeError(f"ws must have shape [N, num_ws, w_dim], got {list(array.shape)}")
    if "w" in extra:
        raise InputError("extra arrays may not be named 'w' (reserved for the latents)")
    if array.dtype.kind not in "fiu" or not np.isfinite(array).all():
        raise InputError(f"cannot write {path}: the latents hold NaN or inf (or are not numbers); nothing was written")
    arrays = {"w": array.astype(np.float32)}
    for key, value in extra.items():
        arrays[key] = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    path = Path(path)
    write_npz(path, arrays)
    return path


def load_latents(path: str | os.PathLike, *, key: str = "w") -> torch.Tensor:
    """Read latents from an ``.npz`` (NVIDIA's ``projected_w.npz``: key ``w``) or ``.npy`` file.

    Returns:
        float32 tensor ``[N, num_ws, w_dim]`` (a ``[N, w_dim]`` array is returned as ``[N, 1, w_dim]``;
        broadcast it with ``ws.expand(-1, G.num_ws, -1)``).

    Raises:
        InputError: if the file is missing, not a numpy file, or has no ``key``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"latent file not found: {path}")
    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty (0 bytes): not a latent file; pass projected_w.npz or a .npy")
    with open(path, "rb") as fh:
        head = fh.read(6)
    if head.startswith(b"PK"):
        arrays, _ = read_npz(path, "latent .npz", names=[key], required=[key], meta_key=None,
                             max_member_bytes=MAX_LATENT_BYTES)
        array = arrays[key]
    else:
        try:
            array = np.load(path, allow_pickle=False, mmap_mode="r")
            if array.nbytes > MAX_LATENT_BYTES:
                raise InputError(f"{path}: the latents are {array.nbytes:,} bytes (limit {MAX_LATENT_BYTES:,})")
            array = np.array(array)
        except InputError:
            raise
        except (OSError, ValueError, EOFError, MemoryError, SyntaxError, RecursionError, tokenize.TokenError) as err:
            if "pickled" in str(err) or head != b"\x93NUMPY":
                err = f"it is not a numpy file (starts with {head!r}); pass projected_w.npz or a .npy"
            elif "object" in str(err).lower():
                err = "it holds an object array (only float latents are read)"
            raise InputError(f"cannot read {path} as .npz/.npy latents: {err}") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiu":
        kind = "complex" if isinstance(array, np.ndarray) and array.dtype.kind == "c" else getattr(array, "dtype", type(array).__name__)
        raise InputError(f"{path}: latents must be real numbers, got dtype {kind}")
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise InputError(f"{path}: latents hold {bad} NaN or infinite values; they cannot be rendered")
    if array.ndim == 2:
        array = array[:, None, :]
    if array.ndim != 3:
        raise ShapeError(f"{path}: latents must be [N, num_ws, w_dim] or [N, w_dim], got {list(array.shape)}")
    if 0 in array.shape:
        raise InputError(f"{path} holds no latents (shape {list(array.shape)}); pass a file with at least one")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
