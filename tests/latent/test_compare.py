"""Compression next to truncation: counts, and seeds chosen so that the demo shows the method."""

from __future__ import annotations

import pytest
import torch

from latentkit.errors import InputError
from latentkit.latent.compare import compare_compression, seeds_beyond_tau
from latentkit.latent.prior import GaussianPrior
from latentkit.latent.sampling import z_from_seed


@pytest.fixture(scope="module")
def prior(toy_generator_module):
    return GaussianPrior.from_generator(toy_generator_module, 2000, progress=False)


@pytest.fixture(scope="module")
def toy_generator_module():
    from conftest import make_toy_generator

    return make_toy_generator()


def test_counts_match_the_coefficients(toy_generator_module, prior):
    G = toy_generator_module
    ws = G.mapping(torch.cat([z_from_seed(s, G.z_dim) for s in range(16)])) * 1.5  # push some beyond tau
    result = compare_compression(G, ws, prior, tau=2.0, psi=0.5)
    u = prior.coefficients(ws)
    assert result.components_compressed == int((u.abs() > 2.0).sum()) > 0
    assert result.vectors_compressed == int((u.abs() > 2.0).any(-1).sum())
    assert result.vectors == 16 * G.num_ws and result.components == 16 * G.num_ws * G.w_dim
    untouched = ~(u.abs() > 2.0).any(-1)  # [N, num_ws]
    assert torch.equal(result.compressed[untouched], ws[untouched])
    torch.testing.assert_close(result.max_coefficient, u.abs().flatten(1).amax(1).float())
    assert "W vectors had components beyond tau" in result.summary()
    with pytest.raises(InputError, match="NaN or inf"):
        compare_compression(G, torch.full_like(ws, float("nan")), prior)


def test_seeds_beyond_tau_are_exactly_those(toy_generator_module, prior):
    G = toy_generator_module
    seeds = seeds_beyond_tau(G, prior, 5, tau=2.0, search=200)
    assert len(seeds) == 5 and seeds == sorted(seeds)
    for s in range(seeds[-1] + 1):
        w = G.mapping(z_from_seed(s, G.z_dim))[:, :1]
        assert bool((prior.coefficients(w).abs() > 2.0).any()) == (s in seeds)
    with pytest.raises(InputError, match="count and search"):
        seeds_beyond_tau(G, prior, 0)
