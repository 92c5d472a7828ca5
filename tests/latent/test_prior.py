"""GaussianPrior: inversion, fitting (against independent float64 numpy), transforms, files, cache."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import roundoff_tolerance
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from latentkit.latent.prior_cache import cached_prior
from latentkit.errors import InputError, NotFittedError, ShapeError
from latentkit.latent.sampling import iter_mapping, sample_w
from latentkit.latent.prior import GaussianPrior, v_to_w, w_to_v

SQRT2 = math.sqrt(2)


def numpy_v(w: torch.Tensor, slope: float = 0.2, gain: float = SQRT2) -> np.ndarray:
    """Independent float64 inversion."""
    x = w.detach().double().numpy()
    return np.where(x >= 0, x / gain, x / (gain * slope))


def gaussian_ws(n: int, w_dim: int = 6, seed: int = 0) -> torch.Tensor:
    """W vectors whose v is exactly a correlated Gaussian, ``[n, w_dim]`` float64."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(w_dim, w_dim, generator=g, dtype=torch.float64) / math.sqrt(w_dim)
    v = torch.randn(n, w_dim, generator=g, dtype=torch.float64) @ mix + 0.3
    return v_to_w(v)


@pytest.fixture(scope="module")
def fitted() -> GaussianPrior:
    return GaussianPrior().fit(gaussian_ws(4000))


# ------------------------------------------------------------------------------------------------
# Inversion.


def test_w_to_v_values_and_inverse():
    w = torch.tensor([2.0, -2.0, 0.0])
    assert torch.equal(w_to_v(w, 0.5, 2.0), torch.tensor([1.0, -2.0, 0.0]))
    assert torch.equal(v_to_w(torch.tensor([1.0, -2.0, 0.0]), 0.5, 2.0), w)


def test_v_is_the_exact_preactivation_of_torch_leaky_relu():
    pre = torch.randn(1000, 8, dtype=torch.float64)
    w = torch.nn.functional.leaky_relu(pre, 0.2) * SQRT2
    torch.testing.assert_close(w_to_v(w), pre, rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("slope, gain, match", [(0.0, 1.0, "slope"), (-0.2, 1.0, "slope"), (0.2, 0.0, "gain"),
                                                (float("nan"), 1.0, "slope")])
def test_inversion_rejects_bad_activation(slope, gain, match):
    with pytest.raises(InputError, match=match):
        w_to_v(torch.zeros(3), slope, gain)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=1, max_size=32),
       st.floats(0.01, 1.0), st.floats(0.1, 4.0))
def test_inversion_round_trip_property(values, slope, gain):
    w = torch.tensor(values, dtype=torch.float32)
    torch.testing.assert_close(v_to_w(w_to_v(w, slope, gain), slope, gain), w, rtol=2e-6, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# fit().


def test_fit_matches_numpy_float64():
    w = gaussian_ws(3000)
    prior = GaussianPrior().fit(w)
    v = numpy_v(w)
    np.testing.assert_allclose(prior.mean_.numpy(), v.mean(0), rtol=0, atol=1e-13)
    np.testing.assert_allclose(prior.covariance_.numpy(), np.cov(v, rowvar=False), rtol=1e-11, atol=1e-14)
    assert prior.n_samples_ == 3000 and prior.n_floored_ == 0
    assert prior.summary()["condition_number"] == pytest.approx(float(np.linalg.cond(np.cov(v, rowvar=False))), rel=1e-8)
    evals = np.linalg.eigvalsh(np.cov(v, rowvar=False))[::-1]
    np.testing.assert_allclose(prior.explained_variance_.numpy(), evals, rtol=1e-10)
    # components_ rows are unit eigenvectors in descending order
    cov = prior.covariance_
    np.testing.assert_allclose((prior.components_ @ cov @ prior.components_.T).numpy(),
                               np.diag(prior.explained_variance_.numpy()), atol=1e-12)


def test_fit_returns_self_and_counts_broadcast_wplus_once():
    w = gaussian_ws(500).float()
    prior = GaussianPrior()
    assert prior.fit(w.unsqueeze(1).expand(-1, 4, -1)) is prior
    assert prior.n_samples_ == 500
    torch.testing.assert_close(prior.covariance_, GaussianPrior().fit(w).covariance_, rtol=0, atol=0)


def test_fit_on_distinct_layers_uses_every_vector():
    w = gaussian_ws(600).float().reshape(200, 3, 6)
    assert GaussianPrior().fit(w).n_samples_ == 600


def test_refit_equals_fit_on_second_data():
    a, b = gaussian_ws(300, seed=1), gaussian_ws(400, seed=2)
    twice = GaussianPrior().fit(a).fit(b)
    once = GaussianPrior().fit(b)
    assert torch.equal(twice.covariance_, once.covariance_) and twice.n_samples_ == 400


def test_fit_uses_overridden_slope_and_gain():
    w = gaussian_ws(300)
    prior = GaussianPrior(slope=0.5, gain=1.0).fit(w)
    np.testing.assert_allclose(prior.mean_.numpy(), numpy_v(w, 0.5, 1.0).mean(0), atol=1e-13)
    assert (prior.slope_, prior.gain_) == (0.5, 1.0)


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(5), "must be a tensor"),
    (torch.zeros(2, 3, 4, 5), "must be a tensor"),
    (np.zeros((5, 3)), "must be a tensor"),
    (torch.zeros(1, 4), "at least 2"),
])
def test_fit_rejects_bad_input(bad, match):
    with pytest.raises(ShapeError, match=match):
        GaussianPrior().fit(bad)


def test_fit_rejects_non_finite():
    w = gaussian_ws(10)
    w[3, 2] = float("nan")
    with pytest.raises(InputError, match="non-finite"):
        GaussianPrior().fit(w)


def test_eigenvalue_floor_only_for_numerically_zero():
    g = torch.Generator().manual_seed(0)
    # well-estimated small variance (1e-10 of the largest) is kept as is
    scale = torch.tensor([1.0, 1e-5, 1e-3, 1.0], dtype=torch.float64)
    v = torch.randn(5000, 4, generator=g, dtype=torch.float64) * scale
    prior = GaussianPrior().fit(v_to_w(v))
    assert prior.n_floored_ == 0
    assert prior.explained_variance_.min() == pytest.approx(1e-10, rel=0.1)
    # a rank-deficient sample: numerically zero eigenvalues are floored, with a warning
    with pytest.warns(UserWarning, match="singular"):
        low = GaussianPrior().fit(torch.randn(3, 5, generator=g, dtype=torch.float64))
    assert low.n_floored_ >= 3
    assert float(low.explained_variance_.min()) == low.eigenvalue_floor_ > 0
    assert torch.isfinite(low.mahalanobis(torch.randn(4, 5, dtype=torch.float64))).all()


# ------------------------------------------------------------------------------------------------
# from_generator().


def test_from_generator_matches_numpy_on_the_same_samples(toy_generator):
    prior = GaussianPrior.from_generator(toy_generator, 3000, batch_size=700, seed=3, progress=False)
    w = sample_w(toy_generator, 3000, seed=3)
    v = numpy_v(w)
    np.testing.assert_allclose(prior.mean_.numpy(), v.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(prior.covariance_.numpy(), np.cov(v, rowvar=False), rtol=1e-9, atol=1e-12)
    assert prior.n_samples_ == 3000
    assert prior.slope_ == toy_generator.mapping_activation.slope
    assert prior.gain_ == toy_generator.mapping_activation.gain
    assert prior.generator_["architecture"] == "toy"


@pytest.mark.parametrize("batch_size", [37, 1023, 1025, 5000])
def test_from_generator_independent_of_batch_size(toy_generator, batch_size):
    ref = GaussianPrior.from_generator(toy_generator, 2500, batch_size=2500, progress=False)
    other = GaussianPrior.from_generator(toy_generator, 2500, batch_size=batch_size, progress=False)
    # same z stream; only float32 rounding inside the mapping may differ between batch shapes
    torch.testing.assert_close(other.mean_, ref.mean_, rtol=0, atol=roundoff_tolerance(ref.mean_, 64))
    torch.testing.assert_close(other.covariance_, ref.covariance_, rtol=0, atol=2 * roundoff_tolerance(ref.covariance_, 64))
    assert other.n_samples_ == ref.n_samples_ == 2500


def test_mapping_stream_independent_of_batch_size(toy_conditional_generator):
    a = torch.cat(list(iter_mapping(toy_conditional_generator, 2100, batch_size=2100, seed=5)))
    b = torch.cat(list(iter_mapping(toy_conditional_generator, 2100, batch_size=333, seed=5)))
    torch.testing.assert_close(a, b, rtol=0, atol=roundoff_tolerance(a, 64))
    c = sample_w(toy_conditional_generator, 2100, seed=6)
    assert not torch.allclose(a, c)


def test_from_generator_seed_changes_result(toy_generator):
    a = GaussianPrior.from_generator(toy_generator, 500, seed=0, progress=False)
    b = GaussianPrior.from_generator(toy_generator, 500, seed=1, progress=False)
    assert not torch.allclose(a.mean_, b.mean_)


def test_conditional_classes_shared_and_per_class(toy_conditional_generator):
    G = toy_conditional_generator
    shared = GaussianPrior.from_generator(G, 3000, progress=False)
    assert shared.generator_["classes"] is None
    per = GaussianPrior.from_generator(G, 3000, classes=[1], progress=False, batch_size=900)
    assert per.generator_["classes"] == [1]
    # the per-class prior equals an independent computation on class-1 samples of the same z stream
    z = torch.randn(3072, G.z_dim, generator=torch.Generator().manual_seed(0))[:3000]
    w = G.map_latent(z, torch.eye(3)[[1] * 3000])
    v = numpy_v(w)
    np.testing.assert_allclose(per.mean_.numpy(), v.mean(0), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(per.covariance_.numpy(), np.cov(v, rowvar=False), rtol=1e-6, atol=1e-9)
    assert not torch.allclose(shared.mean_, per.mean_)


def test_conditional_classes_drawn_uniformly(toy_conditional_generator):
    G = toy_conditional_generator
    seen = []
    original = G.map_latent

    def spy(z, c):
        seen.append(c.argmax(1))
        return original(z, c)

    G.map_latent = spy
    sample_w(G, 3000, classes=[0, 2])
    counts = torch.bincount(torch.cat(seen), minlength=3)
    assert counts[1] == 0 and abs(int(counts[0]) - 1500) < 150


@pytest.mark.parametrize("classes, match", [([3], r"\[0, 2\]"), ([], "empty"), ([-1], r"\[0, 2\]")])
def test_from_generator_rejects_bad_classes(toy_conditional_generator, classes, match):
    with pytest.raises(InputError, match=match):
        GaussianPrior.from_generator(toy_conditional_generator, 100, classes=classes, progress=False)


def test_from_generator_rejects_classes_on_unconditional(toy_generator):
    with pytest.raises(InputError, match="unconditional"):
        GaussianPrior.from_generator(toy_generator, 100, classes=[0], progress=False)


@pytest.mark.parametrize("n, bs, match", [(1, 10, "n_samples must be >= 2"), (10, 0, "batch_size")])
def test_from_generator_rejects_bad_counts(toy_generator, n, bs, match):
    with pytest.raises(InputError, match=match):
        GaussianPrior.from_generator(toy_generator, n, batch_size=bs, progress=False)


# ------------------------------------------------------------------------------------------------
# Transforms.


def test_not_fitted_errors():
    prior = GaussianPrior()
    for call in (lambda: prior.transform(torch.zeros(2, 3)), lambda: prior.mahalanobis(torch.zeros(3)),
                 lambda: prior.save("x.npz"), lambda: prior.sample(2), lambda: prior.w_dim):
        with pytest.raises(NotFittedError, match="not fitted"):
            call()
    assert not hasattr(prior, "mean_")  # hasattr works (NotFittedError is an AttributeError too)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.1, 20.0))
def test_transform_round_trips(fitted, seed, scale):
    w = torch.randn(5, 3, 6, generator=torch.Generator().manual_seed(seed)) * scale
    torch.testing.assert_close(fitted.inverse_transform(fitted.transform(w)), w, rtol=2e-6, atol=1e-6)
    torch.testing.assert_close(fitted.from_coefficients(fitted.coefficients(w)), w, rtol=1e-4, atol=1e-4 * scale)
    w64 = w.double()
    torch.testing.assert_close(fitted.from_coefficients(fitted.coefficients(w64)), w64, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape", [(6,), (7, 6), (3, 4, 6)])
def test_mahalanobis_shape_and_numpy(fitted, shape):
    w = torch.randn(*shape, dtype=torch.float64)
    d2 = fitted.mahalanobis(w)
    assert d2.shape == shape[:-1] and d2.dtype == torch.float64
    diff = numpy_v(w).reshape(-1, 6) - fitted.mean_.numpy()
    ref = np.einsum("ni,ij,nj->n", diff, np.linalg.inv(fitted.covariance_.numpy()), diff)
    np.testing.assert_allclose(d2.numpy().reshape(-1), ref, rtol=1e-9)
    d2_32 = fitted.mahalanobis(w.float())
    assert d2_32.dtype == torch.float32
    np.testing.assert_allclose(d2_32.numpy().reshape(-1), ref, rtol=1e-4)


def test_mahalanobis_is_differentiable(fitted):
    w = (torch.randn(4, 6, dtype=torch.float64) + 0.5).abs().requires_grad_(True)  # away from the kink
    assert torch.autograd.gradcheck(fitted.mahalanobis, (w,))


def test_matrices_cached_per_device_and_dtype(fitted):
    a = fitted._matrices(torch.zeros(1))
    assert fitted._matrices(torch.zeros(2)) is a
    assert fitted._matrices(torch.zeros(1, dtype=torch.float64))[1].dtype == torch.float64


@pytest.mark.parametrize("bad", [torch.zeros(4, 5), torch.zeros(())])
def test_transforms_reject_wrong_w_dim(fitted, bad):
    with pytest.raises(ShapeError, match=r"\[\.\.\., 6\]"):
        fitted.mahalanobis(bad)


def test_log_prob_matches_scipy(fitted):
    w = torch.randn(10, 6, dtype=torch.float64)
    v = numpy_v(w)
    ref = stats.multivariate_normal(fitted.mean_.numpy(), fitted.covariance_.numpy()).logpdf(v)
    log_jac = (-math.log(SQRT2) * 6) + (-math.log(0.2)) * (w.numpy() < 0).sum(1)
    np.testing.assert_allclose(fitted.log_prob(w).numpy(), ref + log_jac, rtol=1e-9)
    assert fitted.score(w) == pytest.approx(float((ref + log_jac).mean()), rel=1e-9)


def test_sample_follows_the_prior_and_is_seeded(fitted):
    w = fitted.sample(20000, seed=4, dtype=torch.float64)
    assert w.shape == (20000, 6)
    refit = GaussianPrior().fit(w)
    np.testing.assert_allclose(refit.covariance_.numpy(), fitted.covariance_.numpy(), atol=0.05 * float(fitted.explained_variance_[0]))
    assert torch.equal(fitted.sample(5, seed=1), fitted.sample(5, seed=1))
    assert not torch.equal(fitted.sample(5, seed=1), fitted.sample(5, seed=2))
    with pytest.raises(InputError, match="n must be >= 1"):
        fitted.sample(0)


def test_params():
    prior = GaussianPrior(slope=0.3)
    assert prior.get_params() == {"slope": 0.3, "gain": None}
    assert prior.set_params(gain=2.0).gain == 2.0
    with pytest.raises(TypeError, match="no parameter 'tau'"):
        prior.set_params(tau=1)
    with pytest.raises(TypeError):
        GaussianPrior(0.2)  # keyword-only


# ------------------------------------------------------------------------------------------------
# Files and cache.


def test_save_load_round_trip(fitted, tmp_path):
    path = fitted.save(tmp_path / "prior.npz")
    loaded = GaussianPrior.load(path)
    assert torch.equal(loaded.mean_, fitted.mean_) and torch.equal(loaded.covariance_, fitted.covariance_)
    assert torch.equal(loaded.explained_variance_, fitted.explained_variance_)
    assert (loaded.n_samples_, loaded.slope_, loaded.gain_) == (fitted.n_samples_, fitted.slope_, fitted.gain_)
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["metadata"]))
    assert meta["format_version"] == 1 and meta["generator"]["sha256"] == ""


def _write(path, **arrays):
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def test_load_errors(fitted, tmp_path):
    with pytest.raises(InputError, match="not found"):
        GaussianPrior.load(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a numpy file")
    with pytest.raises(InputError, match="cannot read"):
        GaussianPrior.load(tmp_path / "junk.npz")
    with pytest.raises(InputError, match="no 'metadata'"):
        GaussianPrior.load(_write(tmp_path / "latents.npz", w=np.zeros((1, 2, 3))))
    with pytest.raises(InputError, match="not a latentkit prior"):
        GaussianPrior.load(_write(tmp_path / "other.npz", metadata=np.array(json.dumps({"format": "x"}))))
    meta = fitted.metadata() | {"format_version": 99}
    with pytest.raises(InputError, match="version 99.*refit"):
        GaussianPrior.load(_write(tmp_path / "v99.npz", metadata=np.array(json.dumps(meta)),
                                  mean=fitted.mean_.numpy(), covariance=fitted.covariance_.numpy()))
    with pytest.raises(InputError, match="cannot read"):  # object arrays need pickle: refused
        GaussianPrior.load(_write(tmp_path / "pickled.npz", metadata=np.array([{"a": 1}], dtype=object)))
    with pytest.raises(InputError, match="NaN or inf"):
        GaussianPrior.load(_write(tmp_path / "nan.npz", metadata=np.array(json.dumps(fitted.metadata())),
                                  mean=fitted.mean_.numpy() * np.nan, covariance=fitted.covariance_.numpy()))
    with pytest.raises(InputError, match="'mean'"):
        GaussianPrior.load(_write(tmp_path / "nomean.npz", metadata=np.array(json.dumps(fitted.metadata()))))


def test_cached_fits_once_then_loads(toy_generator, monkeypatch, tmp_path):
    first = cached_prior(toy_generator, n_samples=400, progress=False)
    files = list((tmp_path / "cache" / "priors").glob("*.npz"))
    assert len(files) == 1 and "_n400_" in files[0].name

    def boom(*args, **kwargs):
        raise AssertionError("should have loaded from the cache")

    monkeypatch.setattr(GaussianPrior, "from_generator", boom)
    second = cached_prior(toy_generator, n_samples=400, progress=False)
    assert torch.equal(first.covariance_, second.covariance_)
    with pytest.raises(AssertionError, match="cache"):  # another n_samples is another file
        cached_prior(toy_generator, n_samples=500, progress=False)


def test_cached_key_uses_sha256_and_classes(toy_conditional_generator, tmp_path):
    G = toy_conditional_generator
    G.sha256 = "ab" * 32
    cached_prior(G, n_samples=300, classes=[2], progress=False)
    names = [p.name for p in (tmp_path / "cache" / "priors").glob("*.npz")]
    assert names == ["sha-abababababababab_n300_s0_c2_v1.npz"]


@pytest.mark.parametrize("syrk", [True, False])
@pytest.mark.parametrize("dim", [7, 257, 300])
def test_scatter_matches_numpy(dim, syrk):
    from latentkit.latent.moments import Moments

    g = torch.Generator().manual_seed(dim)
    x = torch.randn(900, dim, generator=g, dtype=torch.float64) * torch.linspace(0.01, 3, dim, dtype=torch.float64) + 2
    moments = Moments(dim, torch.device("cpu"), syrk=syrk)
    for chunk in x.split(250):
        moments.update(chunk.clone())
    np.testing.assert_allclose(moments.mean.numpy(), x.numpy().mean(0), rtol=1e-12)
    np.testing.assert_allclose(moments.scatter().numpy() / 899, np.cov(x.numpy(), rowvar=False), rtol=1e-9, atol=1e-12)
    assert torch.equal(moments.scatter(), moments.scatter().T)


@pytest.mark.parametrize("name, classes", [
    ("sg2ada_uncond_map8_res32.pkl", None),
    ("sg2ada_cond_map2_res32.pkl", [3]),
    ("sg3t_uncond_res32.pkl", None),
    ("sgxl_cond_t_res16.pkl", None),
    ("rosinality_convert_res16.pt", None),
])
def test_reference_nets_match_numpy(name, classes):
    load = pytest.importorskip("latentkit.load")
    from conftest import REFERENCE_NETS

    G = load.load_generator(REFERENCE_NETS / name)
    prior = GaussianPrior.from_generator(G, 3000, batch_size=1100, seed=1, classes=classes, progress=False)
    w = sample_w(G, 3000, seed=1, classes=classes)
    v = numpy_v(w, G.mapping_activation.slope, G.mapping_activation.gain)
    scale = float(np.abs(np.cov(v, rowvar=False)).max())
    np.testing.assert_allclose(prior.mean_.numpy(), v.mean(0), rtol=1e-6, atol=1e-7 * math.sqrt(scale))
    np.testing.assert_allclose(prior.covariance_.numpy(), np.cov(v, rowvar=False), rtol=1e-5, atol=1e-7 * scale)
    assert prior.generator_["sha256"] == G.sha256 and prior.generator_["classes"] == classes
    # held-out distances are finite and compress moves no coefficient outward on real latents
    from latentkit.latent.compress import compress

    held = G.mapping(torch.randn(16, G.z_dim, generator=torch.Generator().manual_seed(9)),
                     None if G.c_dim == 0 else torch.eye(G.c_dim)[[classes[0] if classes else 0] * 16])
    out = compress(held, prior, tau=2.0)
    assert (prior.coefficients(out).abs() <= prior.coefficients(held).abs() + 1e-3).all()
