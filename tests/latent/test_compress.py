"""compress (PCA log-compression) and truncate (NVIDIA's truncation trick)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from latentkit.latent.compress import compress, compress_coefficients, truncate
from latentkit.errors import InputError, NotFittedError, ShapeError
from latentkit.latent.prior import GaussianPrior, v_to_w

W_DIM = 6


@pytest.fixture(scope="module")
def prior() -> GaussianPrior:
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(W_DIM, W_DIM, generator=g, dtype=torch.float64)
    v = torch.randn(5000, W_DIM, generator=g, dtype=torch.float64) @ mix - 0.2
    return GaussianPrior().fit(v_to_w(v))


def heavy_ws(prior: GaussianPrior, n: int, seed: int, *, scale: float = 2.5, dtype=torch.float64) -> torch.Tensor:
    """W+ latents ``[n, 3, W_DIM]`` whose coefficients are spread wider than the prior (many beyond tau)."""
    u = torch.randn(n, 3, W_DIM, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale
    return prior.from_coefficients(u).to(dtype)


# ------------------------------------------------------------------------------------------------
# The scalar map.

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
taus = st.floats(0.1, 10.0)


@settings(max_examples=200, deadline=None)
@given(x=finite, tau=taus)
def test_map_unchanged_inside_and_never_outward(x, tau):
    u = torch.tensor([x], dtype=torch.float64)
    out = compress_coefficients(u, tau)
    if abs(x) <= tau:
        assert torch.equal(out, u)
    else:
        assert tau <= abs(float(out)) <= abs(x)
        assert math.copysign(1, float(out)) == math.copysign(1, x)
        assert float(out) == pytest.approx(math.copysign(tau + math.log1p(abs(x) - tau), x), rel=1e-12)


@settings(max_examples=200, deadline=None)
@given(a=finite, b=finite, tau=taus)
def test_map_monotone(a, b, tau):
    lo, hi = sorted((a, b))
    out = compress_coefficients(torch.tensor([lo, hi], dtype=torch.float64), tau)
    assert out[0] <= out[1]


@settings(max_examples=50, deadline=None)
@given(tau=taus)
def test_map_continuous_with_slope_one_at_tau(tau):
    eps = 1e-7
    u = torch.tensor([tau - eps, tau, tau + eps, -tau - eps], dtype=torch.float64)
    out = compress_coefficients(u, tau)
    assert float(out[2] - out[1]) == pytest.approx(eps, rel=1e-5)  # slope 1 from above
    assert float(out[1] - out[0]) == pytest.approx(eps, rel=1e-5)  # slope 1 from below
    assert float(out[3]) == pytest.approx(-tau - eps, rel=1e-12)


# ------------------------------------------------------------------------------------------------
# compress() on W latents.


@pytest.mark.parametrize("n", [1, 5])
def test_compress_shapes_dtype(prior, n):
    ws = heavy_ws(prior, n, 0, dtype=torch.float32)
    out = compress(ws, prior, tau=3.0)
    assert out.shape == ws.shape and out.dtype == torch.float32
    assert compress(ws[:, 0], prior).shape == (n, W_DIM)


def test_compress_applies_the_formula_per_vector(prior):
    ws = heavy_ws(prior, 40, 1)
    tau = 2.0
    u = prior.coefficients(ws)
    u_out = prior.coefficients(compress(ws, prior, tau=tau))
    assert (u.abs() > tau).any()
    torch.testing.assert_close(u_out, compress_coefficients(u, tau), rtol=1e-9, atol=1e-9)


def test_compress_leaves_points_within_tau_bit_identical(prior):
    ws = heavy_ws(prior, 60, 2, scale=1.5, dtype=torch.float32)
    out = compress(ws, prior, tau=3.0)
    inside = (prior.coefficients(ws).abs() <= 3.0).all(-1)  # [N, 3]
    assert inside.any() and (~inside).any()
    assert torch.equal(out[inside], ws[inside])
    assert not torch.equal(out[~inside], ws[~inside])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), tau=st.floats(0.5, 5.0), scale=st.floats(0.5, 6.0))
def test_compress_never_moves_outward(prior, seed, tau, scale):
    ws = heavy_ws(prior, 8, seed, scale=scale)
    out = compress(ws, prior, tau=tau)
    u, u_out = prior.coefficients(ws), prior.coefficients(out)
    assert (u_out.abs() <= u.abs() + 1e-9).all()
    assert (prior.mahalanobis(out) <= prior.mahalanobis(ws) + 1e-9).all()


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), split=st.integers(1, 11))
def test_compress_independent_of_batch_size(prior, seed, split):
    # In float64, so that what is compared is the algorithm (no row depends on another), not the
    # round-off of batch-shape-dependent matmul kernels (float32 rows moved by 1e-6 between batch sizes).
    ws = heavy_ws(prior, 12, seed, dtype=torch.float64)
    whole = compress(ws, prior)
    parts = torch.cat([compress(chunk, prior) for chunk in ws.split(split)])
    torch.testing.assert_close(parts, whole, rtol=1e-10, atol=1e-10 * float(ws.abs().max()))


def test_compress_float32_within_float32_precision_of_float64(prior):
    ws64 = heavy_ws(prior, 12, 7, dtype=torch.float64)
    out32 = compress(ws64.float(), prior)
    assert out32.dtype == torch.float32
    # A few matrix products of w_dim terms: w_dim * eps32 relative to the scale, with a factor 10 of headroom
    # for the whitening's conditioning.
    bound = 10 * W_DIM * torch.finfo(torch.float32).eps * float(ws64.abs().max()) * float(prior.explained_variance_.max() / prior.explained_variance_.min()) ** 0.5
    torch.testing.assert_close(out32.double(), compress(ws64, prior), rtol=0, atol=bound)


def test_compress_larger_tau_changes_less(prior):
    ws = heavy_ws(prior, 30, 3)
    moved = [(compress(ws, prior, tau=t) - ws).norm() for t in (1.0, 2.0, 4.0, 100.0)]
    assert moved[0] > moved[1] > moved[2] > moved[3] == 0


@pytest.mark.parametrize("tau", [0, -1.0, float("inf"), float("nan"), "3"])
def test_compress_rejects_bad_tau(prior, tau):
    with pytest.raises(InputError, match="tau must be"):
        compress(heavy_ws(prior, 1, 0), prior, tau=tau)


def test_compress_rejects_wrong_w_dim_and_unfitted(prior):
    with pytest.raises(ShapeError, match="w_dim"):
        compress(torch.zeros(2, 3, W_DIM + 1), prior)
    with pytest.raises(NotFittedError):
        compress(torch.zeros(2, 3, W_DIM), GaussianPrior())


def test_compress_keyword_only(prior):
    with pytest.raises(TypeError):
        compress(heavy_ws(prior, 1, 0), prior, 3.0)


# ------------------------------------------------------------------------------------------------
# truncate().


@pytest.mark.parametrize("psi, cutoff", [(0.7, None), (0.5, 2), (-0.3, 0), (1.0, None), (0.0, 4)])
def test_truncate_equals_generator_mapping(toy_generator, psi, cutoff):
    G = toy_generator
    z = torch.randn(5, G.z_dim, generator=torch.Generator().manual_seed(0))
    expected = G.mapping(z, truncation_psi=psi, truncation_cutoff=cutoff)
    assert torch.equal(truncate(G.mapping(z), G.w_avg, psi, cutoff=cutoff), expected)


def test_truncate_nvidia_formula_per_sample_centre():
    ws = torch.randn(3, 4, 5, dtype=torch.float64)
    centre = torch.randn(3, 5, dtype=torch.float64)
    out = truncate(ws, centre, 0.6, cutoff=3)
    torch.testing.assert_close(out[:, :3], centre[:, None] + 0.6 * (ws[:, :3] - centre[:, None]))
    assert torch.equal(out[:, 3:], ws[:, 3:])
    assert torch.equal(ws, ws.clone())  # input untouched (out is a new tensor)


def test_truncate_conditional_class_average(toy_conditional_generator):
    G = toy_conditional_generator
    z = torch.randn(3, G.z_dim, generator=torch.Generator().manual_seed(1))
    c = torch.eye(3)
    expected = G.mapping(z, c, truncation_psi=0.5)
    assert torch.equal(truncate(G.mapping(z, c), G.class_average(c), 0.5), expected)


@pytest.mark.parametrize("ws, avg, kwargs, err, match", [
    (torch.zeros(2, 4), torch.zeros(4), {}, ShapeError, "ws must have shape"),
    (torch.zeros(2, 3, 4), torch.zeros(5), {}, ShapeError, "w_avg"),
    (torch.zeros(2, 3, 4), torch.zeros(3, 4), {}, ShapeError, "w_avg"),
    (torch.zeros(2, 3, 4), torch.zeros(1, 2, 4), {}, ShapeError, "w_avg must be a tensor"),
    (torch.zeros(2, 3, 4), torch.zeros(4), {"cutoff": 4}, InputError, r"cutoff must be in \[0, 3\]"),
    (torch.zeros(2, 3, 4), torch.zeros(4), {"psi": float("nan")}, InputError, "psi must be"),
])
def test_truncate_errors(ws, avg, kwargs, err, match):
    psi = kwargs.pop("psi", 0.7)
    with pytest.raises(err, match=match):
        truncate(ws, avg, psi, **kwargs)
