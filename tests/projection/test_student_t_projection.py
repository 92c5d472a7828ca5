"""Projection with the Student-t radius prior: the same objective in w and in the prior's coefficients,
run fingerprints that see nu, and outputs that record the radius model."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from latentkit.latent.prior import GaussianPrior
from latentkit.latent.radius import StudentTRadius
from latentkit.projection.batch import project_files, run_fingerprint
from latentkit.projection.project import project
from latentkit.projection.settings import ProjectionSettings
from latentkit.projection.fingerprint import fingerprint

FAST = ProjectionSettings(perceptual=None, mse_weight=1.0, num_steps=2, w_avg_samples=300, start="w_avg")


@pytest.fixture(scope="module")
def priors():
    from conftest import make_toy_generator

    G = make_toy_generator()
    gp = GaussianPrior.from_generator(G, 3000, progress=False)
    return G, gp, StudentTRadius.from_nu(gp, 4.5, n_fit=100, seed=3)


def _target(G):
    with torch.no_grad():
        return G.synthesis(G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(9)))).clamp(-1, 1)


def _prior_term_at_start(G, prior, parametrization):
    settings = dataclasses.replace(FAST, parametrization=parametrization)
    return project(G, _target(G), settings=settings, prior=prior, progress=False).loss_terms["prior"][:, 0]


def test_both_parametrizations_optimise_the_t_penalty(priors):
    """Step 0 starts at the mean w in every layer: the prior term is num_ws * penalty(d2) in w and in u;
    in u it would be num_ws * d2 if the t were dropped for the Gaussian's |u|^2."""
    G, gp, t = priors
    gaussian = _prior_term_at_start(G, gp, "w")  # num_ws * d2
    expected = G.num_ws * t.radius_penalty(gaussian.double() / G.num_ws)
    for parametrization in ("w", "prior"):
        torch.testing.assert_close(_prior_term_at_start(G, t, parametrization).double(), expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(_prior_term_at_start(G, gp, "prior"), gaussian, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(expected.float(), gaussian, rtol=1e-2)


def test_default_settings_start_at_the_mode_with_the_t(priors):
    G, _, t = priors
    result = project(G, _target(G), settings=dataclasses.replace(FAST, start="auto"), prior=t, progress=False)
    assert torch.all(result.loss_terms["prior"][:, 0] < 1e-3)  # u = 0 up to float32 round trips: penalty ~0
    assert result.ws.shape == (2, G.num_ws, G.w_dim)


def test_fingerprints_see_nu_and_keep_the_gaussians(priors):
    G, gp, t = priors
    other = StudentTRadius.from_nu(gp, 9.0, n_fit=100, seed=3)
    target, c = _target(G), torch.zeros(2, 0)
    keys = {name: fingerprint(G, target, c, FAST, p, None) for name, p in (("g", gp), ("t", t), ("other", other))}
    assert len(set(keys.values())) == 3
    _, described = run_fingerprint(G, FAST, gp, class_idx=None, classes=None)
    assert "prior_radius" not in described  # a Gaussian run's manifest fingerprint is the one of before
    key_t, described_t = run_fingerprint(G, FAST, t, class_idx=None, classes=None)
    assert described_t["prior_radius"] == {"model": "student-t", "nu": 4.5}
    assert key_t != run_fingerprint(G, FAST, other, class_idx=None, classes=None)[0]


def test_outputs_record_the_radius_model(priors, tmp_path):
    from latentkit.io import save_image

    G, gp, t = priors
    save_image(tmp_path / "a.png", _target(G)[:1])
    for name, prior, expected in (("t", t, t.radius_info()), ("g", gp, {"model": "gaussian"}), ("none", None, None)):
        out = tmp_path / name
        project_files(G, [tmp_path / "a.png"], out, settings=FAST, prior=prior, prior_name=name, progress=False)
        record = json.loads((out / "a" / "losses.json").read_text())
        line = json.loads((out / "manifest.jsonl").read_text().splitlines()[-1])
        assert record["prior_radius"] == expected and line["prior_radius"] == expected and record["prior"] == name
    assert json.loads((tmp_path / "t" / "a" / "losses.json").read_text())["prior_radius"]["nu"] == 4.5
