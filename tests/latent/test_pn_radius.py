"""PNPrior (II2S's P_N) and the Student-t radius model: what the maths guarantees."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from latentkit.errors import NotFittedError, ShapeError
from latentkit.latent.pn_prior import PNPrior
from latentkit.latent.prior import GaussianPrior
from latentkit.latent.radius import StudentTRadius, compare_radius_models, gaussian_radius_loglik, student_t_radius_loglik


def _ws(n=4000, d=6, seed=0):
    mix = torch.randn(d, d, generator=torch.Generator().manual_seed(123), dtype=torch.float64)
    v = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) @ mix
    return torch.where(v >= 0, v, 0.2 * v) * math.sqrt(2)  # w = sqrt(2) lrelu(v, 0.2)


def test_pn_prior_whitens_its_fit_data():
    ws = _ws()
    pn = PNPrior().fit(ws)
    u = pn.coefficients(ws)
    assert torch.allclose(torch.cov(u.T), torch.eye(6, dtype=u.dtype), atol=1e-6)
    assert pn.mahalanobis(ws[:3, None].expand(3, 2, 6)).shape == (3, 2)


def test_pn_prior_matches_gaussian_prior_mahalanobis():
    # leaky_relu(w, 5) = v * sqrt(2): a constant scale, to which the Mahalanobis distance is blind
    ws = _ws().float()
    pn, gp = PNPrior().fit(ws), GaussianPrior(slope=0.2, gain=math.sqrt(2)).fit(ws)
    assert torch.allclose(pn.mahalanobis(ws[:50].double()), gp.mahalanobis(ws[:50].double()), rtol=1e-3)


def test_pn_prior_errors():
    with pytest.raises(NotFittedError, match="not fitted"):
        PNPrior().w_dim
    with pytest.raises(ShapeError, match="at least 2"):
        PNPrior().fit(torch.zeros(1, 4))
    with pytest.raises(ShapeError, match="w_dim=6"):
        PNPrior().fit(_ws()).mahalanobis(torch.zeros(2, 5))


@pytest.mark.parametrize("nu", [3.0, 10.0, 100.0])
def test_t_radius_density_is_normalised(nu):
    # integrate the radial density of d2 over (0, inf): surface factor of the d-sphere times r^(d-1)
    from scipy import integrate
    from scipy.special import gammaln

    d = 4
    surf = lambda r: math.exp(math.log(2) + d / 2 * math.log(math.pi) - gammaln(d / 2)) * r ** (d - 1)  # noqa: E731
    total = integrate.quad(lambda r: surf(r) * math.exp(student_t_radius_loglik(np.array([r * r]), d, nu)[0]), 0, np.inf)[0]
    gauss = integrate.quad(lambda r: surf(r) * math.exp(gaussian_radius_loglik(np.array([r * r]), d)[0]), 0, np.inf)[0]
    assert total == pytest.approx(1.0, rel=1e-5) and gauss == pytest.approx(1.0, rel=1e-5)


def test_t_recovers_a_heavy_radius_and_gaussian_data_gives_large_nu():
    ws = _ws(20_000).float()
    gp = GaussianPrior(slope=0.2, gain=math.sqrt(2)).fit(ws)
    gaussian = compare_radius_models(gp, _ws(4000, seed=1).float(), _ws(4000, seed=2).float())
    assert gaussian.nu > 30  # Gaussian data: the t tends to the Gaussian
    assert StudentTRadius(gp).fit(_ws(4000, seed=1).float()).penalty(ws[:2]).shape == (2,)
    with pytest.raises(NotFittedError, match="not fitted"):
        StudentTRadius(gp).penalty(ws[:2])


def test_pn_weight_applies_ii2s_lambda_to_the_mean_over_layers_and_dims():
    # II2S adds lambda * P_N(w).pow(2).mean(); the projector adds prior_weight * (penalty summed over layers)
    from pathlib import Path

    from latentkit import load_generator
    from latentkit.latent.pn_prior import PN_LAMBDA, pn_weight
    from latentkit.projection.project import project
    from latentkit.projection.settings import ProjectionSettings

    G = load_generator(Path(__file__).parents[1] / "data" / "reference-nets" / "sg2ada_uncond_map8_res32.pkl")
    pn = PNPrior.from_generator(G, 2000)
    weight = pn_weight(G.num_ws, G.w_dim)
    assert weight == pytest.approx(PN_LAMBDA / (G.num_ws * G.w_dim))
    s = ProjectionSettings(space="w+", parametrization="w", start="w_avg", prior_weight=weight, perceptual=None,
                           mse_weight=1.0, num_steps=1, w_avg_samples=500)
    target = torch.zeros(1, G.img_channels, G.img_resolution, G.img_resolution)
    res = project(G, target, settings=s, prior=pn, progress=False)
    from latentkit.projection.state import _w_stats

    mean_w = _w_stats(G, G.prepare_labels(None, 1), s.w_avg_samples)[0]  # the start: the samples' mean w ...
    w0 = mean_w[:, None].expand(1, G.num_ws, -1)  # ... on every layer
    ii2s = PN_LAMBDA * pn.coefficients(w0.double()).square().mean()
    assert weight * float(res.loss_terms["prior"][0, 0]) == pytest.approx(float(ii2s), rel=1e-3)
