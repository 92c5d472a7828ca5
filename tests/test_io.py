"""Hostile images and latent files: one InputError each, bounded memory, nothing decoded past the limit."""

from __future__ import annotations

import io
import os
from pathlib import Path
import struct
import subprocess
import sys
import textwrap
import zipfile
import zlib

import numpy as np
import pytest
import torch

from latentkit.errors import InputError
from latentkit.io import load_image, load_latents, save_latents

from conftest import PEAK_RSS_KIB

# The worktree's package (not an installed one, whatever the current directory), single-threaded.
_SUBPROCESS_ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}


def _png_header_only(path, width, height):
    """A PNG whose header claims width x height; its pixel data is a tiny (invalid) stream."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("side", [30000, 12000])
def test_pixel_budget_is_checked_from_the_header(tmp_path, side):
    path = _png_header_only(tmp_path / "huge.png", side, side)
    with pytest.raises(InputError, match=rf"({side}x{side} = .* pixels|{side * side} pixels).* more than the limit.*"
                                         "LATENTKIT_MAX_IMAGE_PIXELS"):
        load_image(path, resolution=64)


def test_pixel_limit_can_be_raised_and_lowered(tmp_path, monkeypatch):
    from PIL import Image

    path = tmp_path / "small.png"
    Image.new("RGB", (40, 30), (255, 0, 0)).save(path)
    with pytest.raises(InputError, match="more than the limit of 1,000"):
        load_image(path, max_pixels=1000)
    monkeypatch.setenv("LATENTKIT_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(InputError, match="limit of 1,000"):
        load_image(path)
    monkeypatch.setenv("LATENTKIT_MAX_IMAGE_PIXELS", "1200")
    assert load_image(path).shape == (1, 3, 30, 40)


def test_large_image_downscales_with_bounded_memory(tmp_path):
    from PIL import Image

    path = tmp_path / "big.jpg"
    Image.new("RGB", (7000, 6000), (10, 200, 30)).save(path, quality=90)
    script = PEAK_RSS_KIB + textwrap.dedent(f"""
        import resource
        from latentkit.io import load_image
        img = load_image({str(path)!r}, resolution=64)
        print(tuple(img.shape), float(img[0, 1].mean()), peak_rss_kib())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         env=_SUBPROCESS_ENV)
    assert out.returncode == 0, out.stderr[-2000:]
    green, rss = float(out.stdout.split()[-2]), int(out.stdout.split()[-1])
    assert "(1, 3, 64, 64)" in out.stdout
    assert abs(green - (200 / 127.5 - 1)) < 0.05
    assert rss < 1_000_000  # KiB; a float decode at full size alone is 7000*6000*3*4 = 504 MB on top of torch


def test_truncated_and_garbage_images(tmp_path):
    from PIL import Image

    path = tmp_path / "cut.png"
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue()[:60])
    with pytest.raises(InputError, match="cannot read"):
        load_image(path)
    path.write_bytes(b"GIF89a" + b"\xff" * 30)
    with pytest.raises(InputError, match="cannot read"):
        load_image(path)


@pytest.mark.parametrize("make, match", [
    (lambda p: np.savez(p, w=np.array([[["a"]]], dtype=object)), "object array"),
    (lambda p: np.savez(p, w=np.array([[["x", "y"]]])), "real numbers"),
    (lambda p: np.savez(p, w=np.ones((1, 2, 3)) * 1j), "complex"),
    (lambda p: np.savez(p, w=np.full((1, 2, 3), np.nan)), "6 NaN or infinite"),
    (lambda p: np.savez(p, w=np.array([[[np.inf, 0.0]]])), "1 NaN or infinite"),
    (lambda p: open(p, "wb").close(), r"empty \(0 bytes\)"),
    (lambda p: open(p, "wb").write(b"PK\x03\x04" + b"\x00" * 40), "cannot read"),
], ids=["object", "strings", "complex", "nan", "inf", "empty", "garbage-zip"])
def test_bad_latent_files(tmp_path, make, match):
    path = tmp_path / "w.npz"
    make(path)
    with pytest.raises(InputError, match=match):
        load_latents(path)


def test_truncated_latent_file(tmp_path):
    path = save_latents(tmp_path / "w.npz", torch.zeros(2, 3, 4))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cannot read"):
        load_latents(path)


def test_latent_zip_bomb_is_refused_from_the_header(tmp_path, monkeypatch):
    import latentkit.io as lio

    monkeypatch.setattr(lio, "MAX_LATENT_BYTES", 1000)
    path = tmp_path / "w.npz"
    np.savez_compressed(path, w=np.zeros((1, 18, 512), dtype=np.float32))
    with pytest.raises(InputError, match="inflates to"):
        load_latents(path)
