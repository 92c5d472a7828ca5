"""The Student-t radius prior as a projection prior: its penalty, nu's validation, fitting on held-out
samples, the prior file's optional ``radius`` field and the cache."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import latentkit.latent.prior_cache as prior_cache
from latentkit.errors import InputError, NotFittedError, ShapeError
from latentkit.latent.prior import GaussianPrior
from latentkit.latent.prior_cache import cached_prior, prior_cache_path
from latentkit.latent.prior_file import read_prior_file
from latentkit.latent.radius import (
    DEFAULT_NU_SAMPLES,
    RADIUS_MODELS,
    StudentTRadius,
    describe_radius,
    fit_student_t,
    load_student_t,
    radius_key,
)
from latentkit.latent.sampling import sample_w
from conftest import synthetic_prior


@pytest.fixture(scope="module")
def gauss():
    return synthetic_prior(w_dim=6)


def _w(prior, n=5, seed=1, scale=2.0):
    u = scale * torch.randn(n, prior.w_dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return prior.from_coefficients(u)


@pytest.mark.parametrize("nu", [2.5, 9.0, 300.0])
def test_penalty_gradient_is_the_gaussians_scaled(gauss, nu):
    """d/dw (nu + d) log(1 + d2/(nu - 2)) = (nu + d)/(nu - 2 + d2) * d(d2)/dw: same direction, radial weight."""
    t = StudentTRadius.from_nu(gauss, nu)
    w = _w(gauss).requires_grad_(True)
    (grad_t,) = torch.autograd.grad(t.penalty(w).sum(), w)
    w2 = w.detach().clone().requires_grad_(True)
    d2 = gauss.mahalanobis(w2)
    (grad_g,) = torch.autograd.grad(d2.sum(), w2)
    scale = (nu + gauss.w_dim) / (nu - 2 + d2.detach())  # [N]
    torch.testing.assert_close(grad_t, scale[:, None] * grad_g, rtol=1e-10, atol=1e-12)


def test_penalty_of_coefficients_equals_mahalanobis(gauss):
    """In u-space the projector uses radius_penalty(|u|^2); it must be the same value as mahalanobis(w)."""
    t = StudentTRadius.from_nu(gauss, 7.0)
    w = _w(gauss, n=4)[:, None].expand(4, 3, -1)  # [N, num_ws, w_dim]
    u = t.coefficients(w)
    torch.testing.assert_close(t.radius_penalty(u.square().sum(-1)), t.penalty(w), rtol=1e-10, atol=1e-10)
    expected = (7.0 + 6) * torch.log1p(gauss.mahalanobis(w) / 5.0)
    torch.testing.assert_close(t.penalty(w), expected)
    assert t.penalty(w).shape == (4, 3)
    torch.testing.assert_close(t.from_coefficients(u), w)
    assert torch.equal(t.mean_, gauss.mean_) and t.w_dim == 6


@pytest.mark.parametrize("nu", [2.0, 1.5, -3.0, float("nan"), float("inf"), True, "28", None])
def test_nu_must_be_a_finite_number_above_two(gauss, nu):
    with pytest.raises(InputError, match="must be a finite number > 2"):
        StudentTRadius.from_nu(gauss, nu)


def test_fit_errors(gauss):
    with pytest.raises(InputError, match="at least 8 W vectors, got 7"):
        StudentTRadius(gauss).fit(_w(gauss, n=7))
    with pytest.raises(ShapeError, match=r"\[\.\.\., 6\]"):
        StudentTRadius(gauss).fit(torch.zeros(10, 5))
    bad = _w(gauss, n=10)
    bad[3, 2] = float("nan")
    with pytest.raises(InputError, match="non-finite"):
        StudentTRadius(gauss).fit(bad)
    for call in (lambda t: t.penalty(_w(gauss)), lambda t: t.radius_penalty(torch.ones(2)), lambda t: t.radius_info()):
        with pytest.raises(NotFittedError, match="not fitted"):
            call(StudentTRadius(gauss))


def test_fit_student_t_streams_the_held_out_samples(toy_generator):
    gp = GaussianPrior.from_generator(toy_generator, 3000, progress=False)
    t = fit_student_t(gp, toy_generator, n_samples=2000, seed=5, batch_size=300)
    direct = StudentTRadius(gp).fit(sample_w(toy_generator, 2000, seed=5))
    assert t.nu_ == pytest.approx(direct.nu_, rel=1e-9) and 2 < t.nu_
    assert (t.n_fit_, t.fit_seed_) == (2000, 5) and t.prior is gp
    assert fit_student_t(gp, toy_generator, n_samples=2000, seed=6).nu_ != t.nu_  # the seed is the held-out set
    with pytest.raises(InputError, match="n_samples >= 8"):
        fit_student_t(gp, toy_generator, n_samples=7)
    with pytest.raises(InputError, match="w_dim 6 but the generator 8"):
        fit_student_t(synthetic_prior(w_dim=6), toy_generator)


def test_save_and_load_round_trip(gauss, tmp_path):
    t = StudentTRadius.from_nu(gauss, 11.25, n_fit=500, seed=3)
    path = t.save(tmp_path / "t.npz")
    back = StudentTRadius.load(path)
    assert (back.nu_, back.n_fit_, back.fit_seed_) == (11.25, 500, 3)
    torch.testing.assert_close(back.prior.covariance_, gauss.covariance_, rtol=0, atol=0)
    plain = GaussianPrior.load(path)  # the file is still a Gaussian prior for every reader
    assert isinstance(plain, GaussianPrior) and torch.equal(plain.mean_, gauss.mean_)
    assert read_prior_file(path)[2]["radius"] == {"model": "student-t", "nu": 11.25, "n_fit": 500, "seed": 3}


def test_a_file_without_nu_is_a_gaussian_prior(gauss, tmp_path):
    path = gauss.save(tmp_path / "g.npz")
    assert "radius" not in json.loads(str(np.load(path)["metadata"]))  # old files: no field
    assert read_prior_file(path)[2]["radius"] is None
    assert isinstance(GaussianPrior.load(path), GaussianPrior)
    with pytest.raises(InputError, match="without a Student-t nu"):
        StudentTRadius.load(path)
    with pytest.raises(InputError, match="without a Student-t nu"):
        load_student_t(path)  # no generator to fit nu on


def test_save_refuses_an_unknown_sample_count(gauss, tmp_path):
    with pytest.raises(InputError, match="fitted on 0 W vectors"):
        StudentTRadius.from_nu(gauss, 5.0).save(tmp_path / "t.npz")


@pytest.mark.parametrize("field, match", [
    ([1, 2], "field 'radius' must be an object"),
    ({"model": "gaussian", "nu": 5.0, "n_fit": 100, "seed": 3}, "field 'radius' must be an object"),
    ({"model": "student-t", "nu": 2.0, "n_fit": 100, "seed": 3}, r"radius.nu must be a finite number > 2"),
    ({"model": "student-t", "nu": "big", "n_fit": 100, "seed": 3}, r"radius.nu must be a finite number > 2"),
    ({"model": "student-t", "n_fit": 100, "seed": 3}, r"radius.nu must be a finite number > 2"),
    ({"model": "student-t", "nu": 5.0, "n_fit": 7, "seed": 3}, r"radius.n_fit must be an integer >= 8"),
    ({"model": "student-t", "nu": 5.0, "n_fit": 100.0, "seed": 3}, r"radius.n_fit must be an integer >= 8"),
    ({"model": "student-t", "nu": 5.0, "n_fit": 100, "seed": -1}, r"radius.seed must be an integer >= 0 or null"),
], ids=lambda v: str(v)[:40])
def test_bad_radius_fields_are_refused(gauss, tmp_path, field, match):
    path = StudentTRadius.from_nu(gauss, 5.0, n_fit=100, seed=3).save(tmp_path / "t.npz")
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays["metadata"]))
    meta["radius"] = field
    arrays["metadata"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    for load in (StudentTRadius.load, GaussianPrior.load):
        with pytest.raises(InputError, match=match):
            load(path)


def test_load_student_t_prefers_the_stored_nu(toy_generator, tmp_path):
    gp = GaussianPrior.from_generator(toy_generator, 2000, progress=False)
    stored = StudentTRadius.from_nu(gp, 9.5, n_fit=100, seed=None).save(tmp_path / "t.npz")
    assert load_student_t(stored, toy_generator).nu_ == 9.5
    plain = gp.save(tmp_path / "g.npz")
    fitted = load_student_t(plain, toy_generator, n_samples=1000)
    assert fitted.nu_ == pytest.approx(fit_student_t(gp, toy_generator, n_samples=1000).nu_)
    assert fitted.fit_seed_ == 3 and read_prior_file(plain)[2]["radius"] is None  # the user's file is not changed


def test_cached_student_t_is_fitted_once_and_stored_in_the_prior_file(toy_generator, monkeypatch):
    t = cached_prior(toy_generator, n_samples=2000, seed=1, progress=False, radius="student-t")
    assert isinstance(t, StudentTRadius) and (t.n_fit_, t.fit_seed_) == (DEFAULT_NU_SAMPLES, 4)  # seed + 3
    path = prior_cache_path(toy_generator, n_samples=2000, seed=1)
    assert read_prior_file(path)[2]["radius"]["nu"] == t.nu_

    def refit(*args, **kwargs):
        raise AssertionError("nu was fitted again")

    monkeypatch.setattr(prior_cache, "fit_student_t", refit)
    again = cached_prior(toy_generator, n_samples=2000, seed=1, progress=False, radius="student-t")
    assert again.nu_ == t.nu_
    gaussian = cached_prior(toy_generator, n_samples=2000, seed=1, progress=False)
    assert type(gaussian) is GaussianPrior and torch.equal(gaussian.covariance_, t.prior.covariance_)
    with pytest.raises(InputError, match="radius must be one of 'gaussian', 'student-t', got 't'"):
        cached_prior(toy_generator, n_samples=2000, radius="t")


def test_describe_radius_and_key(gauss):
    t = StudentTRadius.from_nu(gauss, 6.5, n_fit=20, seed=3)
    assert describe_radius(None) is None and describe_radius(gauss) == {"model": "gaussian"}
    assert describe_radius(t) == {"model": "student-t", "nu": 6.5, "n_fit": 20, "seed": 3}
    assert radius_key(None) is None and radius_key(gauss) is None  # Gaussian fingerprints unchanged
    assert radius_key(t) == {"model": "student-t", "nu": 6.5}
    assert RADIUS_MODELS == ("gaussian", "student-t")
    assert math.isfinite(float(t.penalty(_w(gauss)).sum()))
