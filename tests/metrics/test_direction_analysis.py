"""analyse_directions: heat maps, layer sensitivity, layer ranges, figure (toy generator)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_toy_generator, roundoff_tolerance
from latentkit.errors import InputError
from latentkit.latent.directions import prior_directions
from latentkit.latent.prior import GaussianPrior
from latentkit.metrics.direction_analysis import DirectionAnalysis, analyse_directions


@pytest.fixture(scope="module")
def setup():
    G = make_toy_generator()
    with torch.no_grad():
        G.styles[2:].zero_()  # layers 2 and 3 do not reach the image
    prior = GaussianPrior.from_generator(G, 2000, progress=False)
    return G, prior_directions(prior, n_components=3)


def test_heatmaps_and_layer_sensitivity(setup):
    G, dirs = setup
    result = analyse_directions(G, dirs, n_samples=3, progress=False)
    assert result.heatmaps.shape == (3, 16, 16) and result.layer_sensitivity.shape == (3, G.num_ws)
    assert result.names == ["pc0", "pc1", "pc2"] and result.n_samples == 3 and result.images.shape == (3, 3, 16, 16)
    assert bool((result.heatmaps >= 0).all()) and bool((result.total_change > 0).all())
    # layers whose styles are zero: editing them alone changes nothing, exactly
    assert torch.equal(result.layer_sensitivity[:, 2:], torch.zeros(3, 2, dtype=torch.float64))
    assert bool((result.layer_sensitivity[:, :2] > 0).all())
    for k in range(3):
        start, end = result.layer_range(k, share=1.0)
        assert 0 <= start <= end <= 1
    summary = json.loads(json.dumps(result.summary()))
    assert [row["name"] for row in summary["directions"]] == ["pc0", "pc1", "pc2"]
    assert all(row["peak_layer"] in (0, 1) for row in summary["directions"])
    assert bool(((result.concentration >= 0.1 - 1e-12) & (result.concentration <= 1 + 1e-12)).all())


def test_given_latents_and_batch_size_independence(setup):
    G, dirs = setup
    ws = G.mapping(torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(3)))
    one = analyse_directions(G, dirs[:2], ws=ws, batch_size=1, progress=False)
    all_ = analyse_directions(G, dirs[:2], ws=ws, batch_size=8, progress=False)
    atol = roundoff_tolerance(one.heatmaps, G.w_dim * G.num_ws)
    torch.testing.assert_close(one.heatmaps, all_.heatmaps, rtol=0, atol=atol)
    torch.testing.assert_close(one.layer_sensitivity, all_.layer_sensitivity, rtol=0, atol=atol)
    no_layers = analyse_directions(G, dirs[:2], ws=ws, per_layer=False, progress=False)
    torch.testing.assert_close(no_layers.heatmaps, all_.heatmaps, rtol=0, atol=atol)
    assert not no_layers.layer_sensitivity.any()


def _analysis(sensitivity, heatmaps=None) -> DirectionAnalysis:
    s = torch.tensor(sensitivity, dtype=torch.float64)
    h = torch.ones(len(s), 10, 10, dtype=torch.float64) if heatmaps is None else heatmaps
    return DirectionAnalysis([f"d{i}" for i in range(len(s))], torch.ones(len(s), dtype=torch.float64), "v", 2.0, 1,
                             h, s, torch.zeros(1, 3, 10, 10))


def test_layer_range_is_the_shortest_run_with_the_share():
    a = _analysis([[0, 1, 8, 1, 0, 0], [5, 0, 0, 0, 0, 5], [1, 1, 1, 1, 1, 1]])
    assert a.layer_range(0, share=0.8) == (2, 2)
    assert a.layer_range(0, share=0.9) == (1, 2)
    assert a.layer_range(0, share=1.0) == (1, 3)
    assert a.layer_range(1, share=0.5) == (0, 0) and a.layer_range(1, share=0.6) == (0, 5)
    assert a.layer_range(2, share=0.5) == (0, 2)
    with pytest.raises(InputError, match="share"):
        a.layer_range(0, share=0)


def test_concentration_uniform_and_local():
    local = torch.zeros(2, 10, 10, dtype=torch.float64)
    local[0] = 1.0
    local[1, :1, :5] = 3.0
    a = _analysis([[1.0], [1.0]], heatmaps=local)
    torch.testing.assert_close(a.concentration, torch.tensor([0.1, 1.0], dtype=torch.float64), rtol=0, atol=1e-15)


def test_plot_and_save(setup, tmp_path):
    G, dirs = setup
    result = analyse_directions(G, dirs, n_samples=2, progress=False)
    with Image.open(result.plot(tmp_path / "fig.png")) as im:
        assert im.width > 300 and im.height > 300
    with np.load(result.save(tmp_path / "a.npz")) as data:
        np.testing.assert_array_equal(data["heatmaps"], result.heatmaps.numpy())
        assert json.loads(str(data["summary"]))["n_samples"] == 2


def test_errors(setup, monkeypatch, tmp_path):
    G, dirs = setup
    with pytest.raises(InputError, match="amount must not be 0"):
        analyse_directions(G, dirs, amount=0.0, progress=False)
    with pytest.raises(InputError, match="n_samples must be >= 1"):
        analyse_directions(G, dirs, n_samples=0, progress=False)
    result = _analysis([[1.0]])
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(InputError, match=r"latentkit\[plot\]"):
        result.plot(tmp_path / "fig.png")
