"""``latentkit edit`` and ``latentkit directions`` with CliRunner on a reference net."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import invoke_cli
from PIL import Image

import latentkit.cli.edit as cli_edit
from latentkit import io
from latentkit.cli import main
from latentkit.latent.boundaries import fit_direction
from latentkit.latent.directions import Directions, prior_directions
from latentkit.latent.edit import DEFAULT_AMOUNTS, edit_sweep
from latentkit.latent.prior import DEFAULT_CACHED_SAMPLES, GaussianPrior
from latentkit.load import load_generator

NET = Path(__file__).parents[1] / "data" / "reference-nets" / "sg2ada_uncond_map8_res32.pkl"


run = invoke_cli


@pytest.fixture(scope="module")
def net():
    return load_generator(NET)


@pytest.fixture(scope="module")
def prior(net, tmp_path_factory):
    prior = GaussianPrior.from_generator(net, 2000, progress=False)
    return prior, prior.save(tmp_path_factory.mktemp("prior") / "prior.npz")


@pytest.fixture
def latents(net, tmp_path):
    with torch.no_grad():
        ws = net.mapping(torch.randn(2, net.z_dim, generator=torch.Generator().manual_seed(0)))
    return ws, io.save_latents(tmp_path / "projected_w.npz", ws)


def test_cli_defaults_match_the_api():
    from latentkit.metrics.direction_analysis import DEFAULT_COMPONENTS, analyse_directions

    edit_ = {p.name: p.default for p in cli_edit.edit.params}
    found = {p.name: p.default for p in cli_edit.directions.params}
    assert [float(a) for a in edit_["amounts"].split(",")] == list(DEFAULT_AMOUNTS)
    assert edit_["n_samples"] == found["n_samples"] == DEFAULT_CACHED_SAMPLES
    params = inspect.signature(analyse_directions).parameters
    assert found["n_components"] == DEFAULT_COMPONENTS
    assert found["analysis_samples"] == params["n_samples"].default
    assert found["amount"] == params["amount"].default


def test_edit_component_writes_latents_and_a_labelled_grid(net, prior, latents, tmp_path):
    ws, path = latents
    out = tmp_path / "out"
    result = run(["edit", str(path), "--component", "1", "--amounts", "-2,0,2", "--layers", "0-3",
                  "--network", str(NET), "--prior", str(prior[1]), "--out", str(out), "--device", "cpu",
                  "--cell", "32"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["layers"] == [0, 1, 2, 3] and summary["images"] == 6 and summary["direction"] == "pc1"
    edited = io.load_latents(out / "edited_w.npz")
    assert edited.shape == (6, net.num_ws, net.w_dim)
    expected = edit_sweep(ws, prior_directions(prior[0])[1], [-2, 0, 2], layers="0-3")
    torch.testing.assert_close(edited, expected.float(), rtol=0, atol=0)
    assert torch.equal(edited[1], ws[0]) and torch.equal(edited[4], ws[1])  # amount 0
    with Image.open(out / "grid.png") as im:
        assert im.width > 3 * 32 and im.height > 2 * 32


def test_edit_direction_file_with_video(net, latents, tmp_path):
    ws, path = latents
    with torch.no_grad():
        train = net.mapping(torch.randn(300, net.z_dim, generator=torch.Generator().manual_seed(1)))
    direction = fit_direction(train, train[:, 0, 0] > train[:, 0, 0].median(), name="first")
    file = direction.save(tmp_path / "first.npz")
    out = tmp_path / "out"
    result = run(["edit", str(path), "--direction", str(file), "--amounts", "-1,1", "--network", str(NET),
                  "--out", str(out), "--video", "--frames", "4", "--device", "cpu", "--cell", "32"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["direction"] == "first" and summary["space"] == "v"
    assert Path(summary["video"]).stat().st_size > 0
    assert io.load_latents(out / "edited_w.npz").shape == (4, net.num_ws, net.w_dim)


def test_edit_errors(prior, latents, tmp_path):
    _, path = latents
    base = ["edit", str(path), "--network", str(NET), "--prior", str(prior[1]), "--device", "cpu"]
    result = CliRunner().invoke(main, base)
    assert result.exit_code == 2 and "exactly one of --component K or --direction FILE" in result.output
    result = CliRunner().invoke(main, [*base, "--component", "0", "--layers", "0-99"])
    assert result.exit_code == 1 and "outside 0..7" in result.output
    result = CliRunner().invoke(main, [*base, "--component", "0", "--space", "w"])
    assert result.exit_code == 1 and "found in 'v' space" in result.output
    result = CliRunner().invoke(main, [*base, "--component", "0", "--amounts", "a,b"])
    assert result.exit_code == 1 and "cannot parse amounts" in result.output
    result = CliRunner().invoke(main, [*base, "--component", "64"])
    assert result.exit_code == 1 and "out of range" in result.output


@pytest.mark.parametrize("method", ["prior", "w-pca"])
def test_directions_writes_directions_analysis_and_figure(prior, tmp_path, method):
    out = tmp_path / "dirs"
    result = run(["directions", "--network", str(NET), "--components", "3", "--method", method, "--prior",
                  str(prior[1]), "--w-samples", "500", "--analysis-samples", "2", "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [d["name"] for d in summary["directions"]] == (["pc0", "pc1", "pc2"] if method == "prior"
                                                          else ["wpc0", "wpc1", "wpc2"])
    dirs = Directions.load(out / "directions.npz")
    assert len(dirs) == 3 and dirs.space == ("v" if method == "prior" else "w")
    if method == "prior":
        torch.testing.assert_close(dirs.vectors, prior[0].components_[:3], rtol=0, atol=0)
    with np.load(out / "analysis.npz") as data:
        assert data["heatmaps"].shape == (3, 32, 32) and data["layer_sensitivity"].shape == (3, 8)
    with Image.open(out / "directions.png") as im:
        assert im.width > 200


def test_directions_errors(prior, tmp_path):
    result = CliRunner().invoke(main, ["directions", "--network", str(NET), "--components", "65", "--prior",
                                       str(prior[1]), "--device", "cpu", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "more than this network's w_dim = 64" in result.output
