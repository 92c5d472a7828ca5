"""Gaussianity diagnostics of a fitted prior (the figure itself is drawn in tests/cli/test_prior_cli.py)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from scipy import stats

from latentkit.latent.diagnostics import diagnose, diagnose_generator
from latentkit.errors import InputError, NotFittedError, ShapeError
from latentkit.latent.prior import GaussianPrior, v_to_w


def gaussian_v(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(5, 5, generator=torch.Generator().manual_seed(99), dtype=torch.float64)
    return torch.randn(n, 5, generator=g, dtype=torch.float64) @ mix + 0.5


@pytest.fixture(scope="module")
def prior() -> GaussianPrior:
    return GaussianPrior().fit(v_to_w(gaussian_v(20000, 0)))


def test_gaussian_v_passes_and_w_is_skewed(prior):
    held = v_to_w(gaussian_v(4000, 1))
    diag = diagnose(prior, held)
    s = diag.summary()
    assert s["mean_abs_skew_v"] < 0.1 and s["mean_abs_kurtosis_v"] < 0.2
    assert s["mean_abs_skew_w"] > 3 * s["mean_abs_skew_v"]  # the lrelu makes w skewed
    assert diag.ks_statistic < 0.05 and diag.ks_pvalue > 1e-3
    np.testing.assert_allclose(diag.expected_quantiles, stats.chi2(5).ppf(diag.quantile_levels))
    np.testing.assert_allclose(diag.observed_quantiles, diag.expected_quantiles, rtol=0.15)
    json.dumps(s), json.dumps(diag.to_dict())  # JSON-ready


def test_numbers_match_scipy_on_the_same_data(prior):
    held = v_to_w(gaussian_v(500, 2)).reshape(100, 5, 5)  # W+ input: every vector counts
    diag = diagnose(prior, held, quantile_levels=(0.1, 0.9))
    w = held.reshape(-1, 5).numpy()
    np.testing.assert_allclose(diag.skew_w, stats.skew(w, axis=0))
    np.testing.assert_allclose(diag.kurtosis_v, stats.kurtosis(prior.transform(held.reshape(-1, 5)).numpy(), axis=0))
    assert diag.n_samples == 500 and diag.observed_quantiles.shape == (2,)
    assert diag.ks_statistic == pytest.approx(stats.kstest(diag.mahalanobis_sq, stats.chi2(5).cdf).statistic)


def test_heavy_tails_are_detected(prior):
    t = torch.from_numpy(stats.t(df=3).rvs(size=(4000, 5), random_state=0))
    diag = diagnose(prior, v_to_w(t @ torch.linalg.cholesky(prior.covariance_).T + prior.mean_))
    assert diag.summary()["mean_abs_kurtosis_v"] > 1 and diag.ks_statistic > 0.05


def test_diagnose_generator_uses_held_out_stream(toy_generator):
    prior = GaussianPrior.from_generator(toy_generator, 2000, progress=False)
    diag = diagnose_generator(prior, toy_generator, 300, seed=2)
    assert diag.n_samples == 300 and diag.w_dim == 8


def test_errors(prior):
    with pytest.raises(ShapeError, match="at least 8"):
        diagnose(prior, torch.zeros(7, 5))
    with pytest.raises(ShapeError, match=r"\[\.\.\., 5\]"):
        diagnose(prior, torch.zeros(20, 4))
    with pytest.raises(InputError, match="quantile_levels"):
        diagnose(prior, torch.zeros(20, 5), quantile_levels=(0.5, 1.0))
    with pytest.raises(NotFittedError):
        diagnose(GaussianPrior(), torch.zeros(20, 5))


def test_plot_without_matplotlib_says_how_to_install(prior, monkeypatch, tmp_path):
    diag = diagnose(prior, v_to_w(gaussian_v(50, 3)))
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(InputError, match=r"pip install 'latentkit\[plot\]'"):
        diag.plot(tmp_path / "d.png")
    assert not (tmp_path / "d.png").exists()
