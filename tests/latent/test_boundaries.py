"""Supervised directions (InterFaceGAN's linear SVM) and conditioning: planted directions are recovered."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import synthetic_prior

from latentkit.errors import InputError, ShapeError
from latentkit.latent.boundaries import condition, fit_direction
from latentkit.latent.directions import pca_directions, prior_directions
from latentkit.latent.prior import GaussianPrior, v_to_w, w_to_v

W_DIM = 6
EPS = torch.finfo(torch.float64).eps


@pytest.fixture(scope="module")
def prior() -> GaussianPrior:
    return synthetic_prior(W_DIM)


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
