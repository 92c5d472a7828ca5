"""Which images to project: files, folders, globs and list files, checked before any slow set-up."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from latentkit.errors import InputError

__all__ = ["check_images", "expand_inputs", "folder_names"]


def expand_inputs(items: Sequence[str | os.PathLike]) -> list[Path]:
    """Image files from files, folders (their images, sorted), globs (``'faces/*.png'``) and list files
    (``.txt``: one path per line, relative to the list's folder; ``#`` comments).

    Raises:
        InputError: an item that is none of these, or a folder, glob or list with no images.
    """
    from latentkit.io import IMAGE_SUFFIXES

    out: list[Path] = []
    for item in items:
        text = os.fspath(item)
        path = Path(text)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise InputError(f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            out.extend(found)
        elif path.is_file() and path.suffix.lower() == ".txt":
            lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines()]
            listed = [path.parent / ln if not Path(ln).is_absolute() else Path(ln) for ln in lines if ln and not ln.startswith("#")]
            missing = [str(p) for p in listed if not p.is_file()]
            if missing:
                raise InputError(f"list file {path} names {len(missing)} missing image(s), e.g. {missing[0]}")
            if not listed:
                raise InputError(f"list file {path} names no images")
            out.extend(listed)
        elif path.is_file():
            out.append(path)
        elif any(ch in text for ch in "*?["):
            import glob

            found = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise InputError(f"the pattern {text!r} matches no images")
            out.extend(found)
        else:
            raise InputError(f"image file not found: {path}")
    return out


def check_images(files: Sequence[Path], *, max_pixels: int | None = None) -> None:
    """Read every file's header (not its pixels), so an unreadable image fails before any slow set-up.

    Raises:
        InputError: a file PIL cannot identify, naming it.
    """
    from latentkit.io import image_size

    for path in files:
        image_size(path, max_pixels=max_pixels)


def folder_names(files: Sequence[Path]) -> list[str]:
    """One output folder name per file: its stem, made unique with ``-2``, ``-3`` ... in input order.

    The output folder's own files are hidden (``.latentkit-project.lock``, checkpoints, temporary files) or
    start with ``manifest``; a stem that does (``manifest.jsonl.png``, ``.lock.png``) gets a ``_`` in front,
    so no image's folder can take a bookkeeping file's name.
    """
    names, seen = [], set()
    for path in files:
        stem = Path(path).stem
        if stem.startswith(".") or stem.lower().startswith("manifest"):
            stem = "_" + stem
        name, k = stem, 1
        while name in seen:
            k += 1
            name = f"{stem}-{k}"
        seen.add(name)
        names.append(name)
    return names
