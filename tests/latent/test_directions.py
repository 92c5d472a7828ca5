"""Directions: the prior's components, PCA of W (GANSpace), supervised boundaries (InterFaceGAN), files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from latentkit.errors import InputError, ShapeError
from latentkit.latent.directions import Directions, condition, fit_direction, pca_directions, prior_directions
from latentkit.latent.prior import GaussianPrior, v_to_w, w_to_v

W_DIM = 6
EPS = torch.finfo(torch.float64).eps


@pytest.fixture(scope="module")
def prior() -> GaussianPrior:
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(W_DIM, W_DIM, generator=g, dtype=torch.float64) + 2 * torch.eye(W_DIM, dtype=torch.float64)
    v = torch.randn(4000, W_DIM, generator=g, dtype=torch.float64) @ mix - 0.2
    return GaussianPrior().fit(v_to_w(v))


def test_prior_directions_are_the_prior_components(prior):
    dirs = prior_directions(prior, n_components=3)
    assert len(dirs) == 3 and dirs.space == "v" and dirs.names == ("pc0", "pc1", "pc2")
    torch.testing.assert_close(dirs.vectors, prior.components_[:3], rtol=0, atol=0)
    torch.testing.assert_close(dirs.sigmas, prior.explained_variance_[:3].sqrt(), rtol=0, atol=0)
    # the stored covariance gives back each component's variance
    for k in range(3):
        assert dirs.std(dirs.vectors[k]) == pytest.approx(float(dirs.sigmas[k]), rel=1e3 * EPS)
    assert len(prior_directions(prior)) == W_DIM
    with pytest.raises(InputError, match="between 1 and w_dim"):
        prior_directions(prior, n_components=W_DIM + 1)


def test_indexing_keeps_names_and_rejects_out_of_range(prior):
    dirs = prior_directions(prior)
    assert dirs[2].names == ("pc2",) and dirs[-1].names == (f"pc{W_DIM - 1}",)
    assert dirs[[0, 3]].names == ("pc0", "pc3") and len(dirs[1:4]) == 3
    with pytest.raises(InputError, match="out of range"):
        dirs[W_DIM]
    with pytest.raises(InputError, match="out of range"):
        dirs[[0, W_DIM]]


def test_pca_of_v_samples_estimates_the_prior_components(prior):
    ws = prior.sample(20_000, seed=3, dtype=torch.float64)
    dirs = pca_directions(ws, space="v", slope=prior.slope_, gain=prior.gain_, n_components=2)
    cos = (dirs.vectors * prior.components_[:2]).sum(1).abs()
    assert bool((cos > 0.99).all()), cos
    assert dirs.method == "v-pca"


def test_pca_of_w_is_ganspace(prior):
    ws = prior.sample(3000, seed=1, dtype=torch.float64)
    dirs = pca_directions(ws, n_components=4)
    assert dirs.space == "w" and dirs.method == "w-pca"
    torch.testing.assert_close(dirs.vectors @ dirs.vectors.T, torch.eye(4, dtype=torch.float64), rtol=0, atol=1e3 * EPS)
    # sigma_k is the standard deviation of the W samples along component k, descending
    proj_std = (ws @ dirs.vectors.T).std(0)
    torch.testing.assert_close(dirs.sigmas, proj_std, rtol=1e-9, atol=0)
    assert bool((dirs.sigmas[:-1] >= dirs.sigmas[1:]).all())
    # W+ rows are averaged per latent: a broadcast W+ gives the same directions
    torch.testing.assert_close(pca_directions(ws[:, None].expand(-1, 3, -1), n_components=4).vectors, dirs.vectors)


def test_pca_errors():
    with pytest.raises(ShapeError, match=r"\[N, w_dim\]"):
        pca_directions(torch.zeros(3))
    with pytest.raises(ShapeError, match="at least 2"):
        pca_directions(torch.zeros(1, 4))
    with pytest.raises(InputError, match="space"):
        pca_directions(torch.zeros(5, 4), space="z")
    with pytest.raises(InputError, match="NaN"):
        pca_directions(torch.full((5, 4), math.nan))


def _planted(n: int, seed: int, space: str):
    """Latents whose label is the side of a planted hyperplane (in ``space``) they fall on."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(W_DIM, W_DIM, generator=g, dtype=torch.float64) + 3 * torch.eye(W_DIM, dtype=torch.float64)
    x = torch.randn(n, W_DIM, generator=g, dtype=torch.float64) @ mix
    planted = torch.randn(W_DIM, generator=g, dtype=torch.float64)
    planted /= planted.norm()
    score = x @ planted - 0.3
    ws = v_to_w(x) if space == "v" else x
    return ws, score, planted


@pytest.mark.parametrize("space", ["v", "w"])
def test_supervised_direction_recovers_a_planted_one(space):
    ws, score, planted = _planted(4000, 0, space)
    found = fit_direction(ws, (score > 0).long(), space=space, name="smile")
    assert found.names == ("smile",) and found.space == space and found.method == "linear-svm"
    cos = float(found.vectors[0] @ planted)
    assert cos > 0.99, cos  # and it points towards the positive label
    assert found.info["train_accuracy"] > 0.99
    x = w_to_v(ws) if space == "v" else ws
    assert float(found.sigmas[0]) == pytest.approx(float((x @ found.vectors[0]).std()), rel=1e-12)


def test_supervised_direction_from_scores_keeps_the_extremes():
    ws, score, planted = _planted(4000, 1, "v")
    found = fit_direction(ws, score + 0.01 * torch.randn(4000, generator=torch.Generator().manual_seed(2),
                                                         dtype=torch.float64), ratio=0.3)
    assert found.info["n_used"] == 1200
    assert float(found.vectors[0] @ planted) > 0.99


def test_supervised_errors():
    ws, score, _ = _planted(50, 0, "v")
    with pytest.raises(ShapeError, match=r"labels must be \[N\] = \[50\]"):
        fit_direction(ws, score[:10] > 0)
    with pytest.raises(InputError, match="one value only"):
        fit_direction(ws, np.ones(50))
    with pytest.raises(InputError, match="ratio"):
        fit_direction(ws, score, ratio=0)
    with pytest.raises(InputError, match="space"):
        fit_direction(ws, score > 0, space="z")


def test_condition_projects_out_the_others(prior):
    ws, score, _ = _planted(2000, 3, "v")
    smile = fit_direction(ws, score > 0)
    dirs = prior_directions(prior)
    cond = condition(smile, [dirs[0], dirs[1]])
    assert cond.names == ("attribute|pc0|pc1",) and len(cond) == 1
    assert float(cond.vectors[0].norm()) == pytest.approx(1.0, abs=1e3 * EPS)
    assert float((dirs.vectors[:2] @ cond.vectors[0]).abs().max()) < 1e3 * EPS
    # sigma: the standard deviation of the same latents along the new vector
    x = w_to_v(ws)
    assert float(cond.sigmas[0]) == pytest.approx(float((x @ cond.vectors[0]).std()), rel=1e-9)
    with pytest.raises(InputError, match="span"):
        condition(dirs[0], dirs)
    with pytest.raises(InputError, match="same space"):
        condition(smile, pca_directions(ws, n_components=1))
    with pytest.raises(InputError, match="exactly one"):
        condition(dirs, dirs[0])


def test_save_load_round_trip(prior, tmp_path):
    dirs = prior_directions(prior, n_components=4)
    path = dirs.save(tmp_path / "sub" / "dirs.npz")
    back = Directions.load(path)
    for name in ("vectors", "sigmas", "covariance"):
        assert torch.equal(getattr(back, name), getattr(dirs, name))
    assert (back.space, back.slope, back.gain, back.names, back.method) == (
        dirs.space, dirs.slope, dirs.gain, dirs.names, dirs.method)
    assert back.info["explained_variance_ratio"] == dirs.info["explained_variance_ratio"]


def test_load_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        Directions.load(tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="cannot read"):
        Directions.load(tmp_path / "bad.npz")
    np.savez(tmp_path / "other.npz", metadata=np.array('{"format": "something"}'))
    with pytest.raises(InputError, match="not a latentkit directions file"):
        Directions.load(tmp_path / "other.npz")


def test_construction_errors():
    eye = torch.eye(3, dtype=torch.float64)
    with pytest.raises(ShapeError, match="sigmas"):
        Directions(eye, torch.ones(2, dtype=torch.float64), eye)
    with pytest.raises(InputError, match="> 0"):
        Directions(eye, torch.zeros(3, dtype=torch.float64), eye)
    with pytest.raises(InputError, match="space"):
        Directions(eye, torch.ones(3, dtype=torch.float64), eye, space="z")
