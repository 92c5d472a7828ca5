"""Second hardening round through the CLI: each hostile input ends in one 'Error:' line (exit 1 or 2), no
traceback; counts a user types are bounded before any slow work."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from conftest import REFERENCE_NETS, invoke_cli

NET = REFERENCE_NETS / "sg2ada_uncond_map8_res32.pkl"


def _one_error_line(result, codes=(1, 2)):
    assert result.exit_code in codes, result.output
    assert "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    return errors[0]


def _png_header(path, width, height):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("command", [["fit-prior", NET], ["ppl", "--network", NET]])
def test_seeds_beyond_the_range_are_refused(command):
    line = _one_error_line(invoke_cli([*command, "--seed", str(2**70)]), codes=(2,))
    assert "--seed" in line


def test_an_unknown_plot_suffix_is_refused_before_the_fit(tmp_path):
    result = invoke_cli(["fit-prior", NET, "--samples", "50000000", "--plot", tmp_path / "fig.xyz",
                         "--out", tmp_path / "p.npz"])
    assert "unknown suffix '.xyz'" in _one_error_line(result)
    assert not (tmp_path / "p.npz").exists()


def test_classes_ranges_are_bounded(tmp_path):
    image = _png_header(tmp_path / "a.png", 16, 16)
    line = _one_error_line(invoke_cli(["project", image, "--network", NET, "--classes", "0-2000000000",
                                       "--outdir", tmp_path / "out"]), codes=(2,))
    assert "more than 100,000 classes" in line


def test_interpolate_steps_are_bounded(tmp_path):
    np.savez(tmp_path / "a.npz", w=np.zeros((1, 8, 512), np.float32))
    result = invoke_cli(["interpolate", tmp_path / "a.npz", tmp_path / "a.npz", "--network", NET, "--steps", "200000",
                         "--out", tmp_path / "i.png"])
    assert "steps is 200,000" in _one_error_line(result)


def test_an_edit_of_too_many_latents_is_refused_before_rendering(tmp_path):
    from latentkit.checks import check_render

    class Big:
        img_resolution, img_channels = 1024, 3

    with pytest.raises(Exception, match="20,000 images of 1024x1024.*more than the limit"):
        check_render(20_000, Big(), "the edit")


@pytest.mark.parametrize("content", ["empty-file", "zero-latents"])
def test_compress_with_an_empty_latents_file_is_one_line(tmp_path, content):
    path = tmp_path / "w.npz"
    if content == "empty-file":
        path.write_bytes(b"")
    else:
        np.savez(path, w=np.zeros((0, 8, 512), np.float32))
    result = invoke_cli(["compress", "--network", NET, "--latents", path, "--outdir", tmp_path / "out"])
    _one_error_line(result)


def test_a_huge_png_gets_the_pixel_limit_message(tmp_path):
    image = _png_header(tmp_path / "huge.png", 30000, 30000)
    result = invoke_cli(["project", image, "--network", NET, "--outdir", tmp_path / "out"])
    line = _one_error_line(result)
    assert "30000x30000" in line and "more than the limit" in line and "DecompressionBomb" not in line
    assert "decompression bomb" not in line.lower()


def test_a_cache_that_is_a_file_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "cache").write_text("")
    monkeypatch.setenv("LATENTKIT_CACHE", str(tmp_path / "cache"))
    result = invoke_cli(["info", "stylegan2-ffhq-1024"])
    assert "LATENTKIT_CACHE" in _one_error_line(result)
