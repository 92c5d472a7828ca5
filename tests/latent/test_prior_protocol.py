"""The prior contract: which classes meet LatentPrior / WhitenedPrior, and the public methods it names."""

from __future__ import annotations

import math

import pytest
import torch

from latentkit.errors import InputError
from latentkit.latent.compress import compress_coefficients
from latentkit.latent.pn_prior import PNPrior
from latentkit.latent.prior import GaussianPrior
from latentkit.latent.prior_protocol import LatentPrior, WhitenedPrior
from latentkit.latent.radius import StudentTRadius, describe_radius, radius_key


def _ws(n=400, d=5, seed=0):
    v = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return torch.where(v >= 0, v, 0.2 * v) * math.sqrt(2)


@pytest.fixture(scope="module")
def gauss():
    return GaussianPrior().fit(_ws())


def test_who_meets_which_contract(gauss):
    t = StudentTRadius.from_nu(gauss, 7.0)
    pn = PNPrior().fit(_ws())
    assert all(isinstance(p, LatentPrior) for p in (gauss, t, pn))
    assert isinstance(gauss, WhitenedPrior) and isinstance(t, WhitenedPrior)
    assert not isinstance(pn, WhitenedPrior)  # no from_coefficients: project it in w
    assert not isinstance(GaussianPrior(), LatentPrior)  # unfitted: no mean_ nor w_dim
    assert not isinstance(object(), LatentPrior)


def test_penalties(gauss):
    w = _ws(6, seed=1)
    assert torch.equal(gauss.penalty(w), gauss.mahalanobis(w))
    d2 = gauss.mahalanobis(w)
    assert torch.equal(gauss.radius_penalty(d2), d2)
    t = StudentTRadius.from_nu(gauss, 7.0)
    torch.testing.assert_close(t.penalty(w), (7.0 + 5) * torch.log1p(d2 / 5.0))
    pn = PNPrior().fit(_ws())
    assert torch.equal(pn.penalty(w), pn.mahalanobis(w))


def test_colouring_inverts_whitening(gauss):
    w = _ws(6, seed=2)
    u = gauss.coefficients(w)
    v = gauss.transform(w)
    torch.testing.assert_close(gauss.mean_ + u @ gauss.colouring(u), v)
    assert gauss.colouring(u.float()).dtype == torch.float32
    # what compress does with it: only the compressed components move
    uc = compress_coefficients(u, 0.5)
    torch.testing.assert_close(gauss.coefficients(gauss.inverse_transform(v + (uc - u) @ gauss.colouring(u))), uc)


def test_radius_description(gauss):
    assert describe_radius(None) is None and radius_key(None) is None
    assert describe_radius(gauss) == {"model": "gaussian"} and radius_key(gauss) is None
    assert describe_radius(PNPrior().fit(_ws())) == {"model": "gaussian"}
    assert radius_key(StudentTRadius.from_nu(gauss, 7.0)) == {"model": "student-t", "nu": 7.0}


def test_project_refuses_a_non_prior_and_pn_in_u(toy_generator):
    import dataclasses

    from latentkit.projection.project import ProjectionSettings, project

    G = toy_generator
    target = torch.zeros(1, 3, G.img_resolution, G.img_resolution)
    quick = ProjectionSettings(num_steps=1, w_avg_samples=20, perceptual=None, mse_weight=1.0)
    with pytest.raises(InputError, match="LatentPrior"):
        project(G, target, settings=quick, prior=GaussianPrior(), progress=False)
    pn = PNPrior().fit(torch.randn(50, G.w_dim, dtype=torch.float64))
    in_u = dataclasses.replace(quick, parametrization="prior", start="w_avg")
    with pytest.raises(InputError, match="parametrization='prior'"):
        project(G, target, settings=in_u, prior=pn, progress=False)
    project(G, target, settings=dataclasses.replace(quick, parametrization="w", start="w_avg"), prior=pn, progress=False)
