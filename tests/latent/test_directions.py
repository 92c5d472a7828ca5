"""Directions: the prior's components, PCA of W (GANSpace), supervised boundaries (InterFaceGAN), files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import synthetic_prior

from latentkit.errors import InputError, ShapeError
from latentkit.latent.directions import Directions, pca_directions, prior_directions
from latentkit.latent.prior import GaussianPrior, v_to_w

W_DIM = 6
EPS = torch.finfo(torch.float64).eps


@pytest.fixture(scope="module")
def prior() -> GaussianPrior:
    return synthetic_prior(W_DIM)


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
    assert dirs[np.int64(1)].names == ("pc1",) and dirs[torch.tensor(3)].names == ("pc3",)
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
