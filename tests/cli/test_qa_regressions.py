"""Regressions found by walking through the CLI with bad input: one clear line, exit status 1."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from latentkit.cli import main
from latentkit.errors import InputError
from latentkit.io import atomic_path, load_latents
from latentkit.latent.prior import GaussianPrior

from conftest import REFERENCE_NETS


def test_atomic_path_under_a_file_is_an_input_error(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    with pytest.raises(InputError, match="parent of it is an existing file"), atomic_path(blocker / "out.npz"):
        pass
    assert blocker.read_text() == "x"


def test_atomic_path_onto_a_folder_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="existing folder"), atomic_path(tmp_path):
        pass
    assert not list(tmp_path.iterdir())


def test_png_as_latents_names_the_file_not_numpy_internals(tmp_path):
    png = tmp_path / "grid.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 32)
    with pytest.raises(InputError, match=r"grid.png as .npz/.npy latents: it is not a numpy file") as info:
        load_latents(png)
    assert "allow_pickle" not in str(info.value)


def test_text_file_as_prior_names_the_file_not_numpy_internals(tmp_path):
    txt = tmp_path / "t.txt"
    txt.write_text("hello\n")
    with pytest.raises(InputError, match=r"t.txt as a prior .npz: it is not an .npz file") as info:
        GaussianPrior.load(txt)
    assert "allow_pickle" not in str(info.value)


def test_cli_fit_prior_out_under_a_file(tmp_path):
    from pathlib import Path

    net = Path(__file__).parents[1] / "data" / "reference-nets" / "sg2ada_uncond_map8_res32.pkl"
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    result = CliRunner().invoke(main, ["fit-prior", str(net), "--samples", "128", "--out", str(blocker / "p.npz")])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "parent of it is an existing file" in result.output


def test_project_rejects_a_file_as_outdir_and_bad_images_before_slow_setup(tmp_path):
    net = str(REFERENCE_NETS / "sg2_sg3repo_uncond_map8_res64.pkl")
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    image = tmp_path / "img.png"
    image.write_bytes((Path(__file__).parents[2] / "examples" / "face.png").read_bytes())
    result = CliRunner().invoke(main, ["project", str(image), "--network", net, "--steps", "1",
                                       "--perceptual-weights", "random", "--outdir", str(blocker)])
    assert result.exit_code == 1 and "exists and is not a folder" in result.output
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    result = CliRunner().invoke(main, ["project", str(bad), "--network", net, "--steps", "1",
                                       "--perceptual-weights", "random", "--outdir", str(tmp_path / "o")])
    assert result.exit_code == 1 and "cannot read" in result.output
    assert "prior:" not in result.output  # failed before the prior was fitted
