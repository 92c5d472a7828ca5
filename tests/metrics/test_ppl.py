"""Perceptual path length. LPIPS's VGG backbone cannot be downloaded in tests, so these use a RANDOM
backbone (the result is labelled '(NOT pretrained)'); they test NVIDIA's procedure, not the number."""

from __future__ import annotations

import copy
import logging

import numpy as np
import pytest
import torch
from conftest import make_toy_generator

from latentkit.errors import InputError, WeightsUnavailableError
from latentkit.metrics.ppl import EPSILON, percentile_filter, perceptual_path_length
from latentkit.projection.lpips import lpips_vgg


@pytest.fixture(scope="module")
def random_lpips():
    return lpips_vgg("random")  # NOT pretrained: tests only


@pytest.fixture(scope="module")
def G32():
    return make_toy_generator(resolution=32)


def test_percentile_filter():
    values = np.random.RandomState(0).permutation(np.arange(200.0))
    kept = percentile_filter(values)
    assert sorted(kept) == list(np.arange(1.0, 199.0))  # the lowest and highest of 200 go
    assert percentile_filter(np.arange(50.0)).size == 50  # too few samples for a 1% tail: all kept


def test_result(G32, random_lpips):
    result = perceptual_path_length(G32, num_samples=10, perceptual=random_lpips, progress=False)
    d = result.distances
    assert d.shape == (10,) and d.dtype == np.float64 and bool(np.all(d >= 0))
    assert result.num_kept == percentile_filter(d).size
    assert result.ppl == pytest.approx(percentile_filter(d).mean())
    assert result.lpips_weights.endswith("(NOT pretrained)")
    summary = result.to_dict()
    assert summary["epsilon"] == EPSILON == 1e-4 and summary["space"] == "w" and summary["sampling"] == "end"


def test_matches_definition_for_w_end(G32, random_lpips):
    # NVIDIA's procedure by hand: z pairs, lerp in W at t = 0 and t + eps, LPIPS / eps^2, all in float64
    # (the default precision). float64 round-off is 2**29 times finer than float32's, whose worst per-sample
    # batch dependence was a few percent: 1e-7 relative leaves a wide margin on any CPU.
    n = 4
    result = perceptual_path_length(G32, num_samples=n, perceptual=random_lpips, progress=False, seed=3)
    G64 = copy.deepcopy(G32).double()
    rng = torch.Generator().manual_seed(3)
    z = torch.randn(n, 2, G32.z_dim, generator=rng)
    w0, w1 = G64.mapping(z[:, 0]), G64.mapping(z[:, 1])
    img0 = G64.synthesis(w0, noise_mode="const")
    img1 = G64.synthesis(w0.lerp(w1, EPSILON), noise_mode="const")
    lpips64 = copy.deepcopy(random_lpips).double()
    expected = (lpips64(img0, img1) / EPSILON**2).numpy()
    np.testing.assert_allclose(result.distances, expected, rtol=1e-7)
    assert result.precision == "fp64" and result.to_dict()["precision"] == "fp64"
    assert random_lpips.heads[0].dtype == torch.float32  # the caller's modules were not cast
    assert G32.dtype == torch.float32 and next(G32.parameters()).dtype == torch.float32


def test_does_not_depend_on_batch_size(G32, random_lpips):
    # Per-sample values in float64: batch-shape-dependent kernels move them by float64 round-off only.
    kwargs = {"num_samples": 9, "sampling": "full", "perceptual": random_lpips, "progress": False}
    a = perceptual_path_length(G32, batch_size=1, **kwargs)
    b = perceptual_path_length(G32, batch_size=4, **kwargs)
    c = perceptual_path_length(G32, batch_size=9, **kwargs)
    np.testing.assert_allclose(a.distances, c.distances, rtol=1e-7)
    np.testing.assert_allclose(b.distances, c.distances, rtol=1e-7)
    assert a.ppl == pytest.approx(c.ppl, rel=1e-7) and b.ppl == pytest.approx(c.ppl, rel=1e-7)


def test_fp32_precision_is_nvidias_setting(G32, random_lpips):
    # float32 runs the caller's generator as it is; values are the same procedure at lower precision.
    kwargs = {"num_samples": 6, "perceptual": random_lpips, "progress": False}
    fp32 = perceptual_path_length(G32, precision="fp32", **kwargs)
    fp64 = perceptual_path_length(G32, **kwargs)
    assert fp32.precision == "fp32" and fp32.distances.dtype == np.float64
    assert np.all(np.isfinite(fp32.distances)) and np.all(fp32.distances > 0)
    # float32's round-off in the two images of a pair does not shrink with their distance, so its error in a
    # distance is a fraction of the distances' scale, not of each value: a near-zero distance may move by more
    # than itself (an AVX2-only EPYC: 8.8e-5 -> 2.1e-4 with the largest at 0.066). Never by a factor of 2 at
    # the scale of the path lengths, and the mean by a few percent at most.
    scale = float(fp64.distances.max())
    np.testing.assert_allclose(fp32.distances, fp64.distances, rtol=0.5, atol=0.02 * scale)
    assert abs(fp32.distances.mean() - fp64.distances.mean()) <= 0.05 * fp64.distances.mean()
    with pytest.raises(InputError, match="precision must be one of"):
        perceptual_path_length(G32, precision="fp16", **kwargs)


def test_z_space_crop_and_random_warning(G32, random_lpips, caplog):
    with caplog.at_level(logging.WARNING, logger="latentkit.metrics.ppl"):
        result = perceptual_path_length(G32, num_samples=5, space="z", crop=True, perceptual=random_lpips, progress=False)
    assert result.space == "z" and result.crop and np.isfinite(result.ppl)
    assert "not a perceptual path length" in caplog.text


def test_conditional_generator(toy_conditional_generator, random_lpips):
    G = make_toy_generator(resolution=32, c_dim=3)
    result = perceptual_path_length(G, num_samples=4, perceptual=random_lpips, progress=False)
    assert np.isfinite(result.ppl)


def test_errors(G32, random_lpips, toy_generator):
    base = {"num_samples": 4, "perceptual": random_lpips, "progress": False}
    with pytest.raises(InputError, match="space must be 'w' or 'z'"):
        perceptual_path_length(G32, **{**base, "space": "v"})
    with pytest.raises(InputError, match="sampling must be"):
        perceptual_path_length(G32, **{**base, "sampling": "mid"})
    with pytest.raises(InputError, match="epsilon must be"):
        perceptual_path_length(G32, **{**base, "epsilon": 0.0})
    with pytest.raises(InputError, match="num_samples must be >= 3"):
        perceptual_path_length(G32, **{**base, "num_samples": 2})
    with pytest.raises(InputError, match="batch_size must be"):
        perceptual_path_length(G32, **{**base, "batch_size": 0})
    with pytest.raises(InputError, match="LPIPS-VGG needs at least 16 px"):
        perceptual_path_length(toy_generator, **{**base, "crop": True})


def test_missing_pretrained_weights_offline(G32):
    with pytest.raises(WeightsUnavailableError, match="vgg16-397923af.pth"):
        perceptual_path_length(G32, num_samples=3, perceptual="torchvision", progress=False)
