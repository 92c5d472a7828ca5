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
from latentkit.perceptual import lpips_vgg


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
    # NVIDIA's procedure by hand: z pairs, lerp in W at t = 0 and t + eps, LPIPS / eps^2.
    n = 4
    result = perceptual_path_length(G32, num_samples=n, perceptual=random_lpips, progress=False, seed=3)
    rng = torch.Generator().manual_seed(3)
    z = torch.randn(n, 2, G32.z_dim, generator=rng)
    w0, w1 = G32.mapping(z[:, 0]), G32.mapping(z[:, 1])
    img0 = G32.synthesis(w0, noise_mode="const")
    img1 = G32.synthesis(w0.lerp(w1, EPSILON), noise_mode="const")
    lpips64 = copy.deepcopy(random_lpips).double()  # PPL evaluates LPIPS in float64
    expected = (lpips64(img0.double(), img1.double()) / EPSILON**2).numpy()
    np.testing.assert_allclose(result.distances, expected, rtol=1e-9)
    assert random_lpips.heads[0].dtype == torch.float32  # the caller's module was not cast


def test_does_not_depend_on_batch_size(G32, random_lpips):
    kwargs = {"num_samples": 9, "sampling": "full", "perceptual": random_lpips, "progress": False}
    a = perceptual_path_length(G32, batch_size=1, **kwargs)
    b = perceptual_path_length(G32, batch_size=4, **kwargs)
    c = perceptual_path_length(G32, batch_size=9, **kwargs)
    np.testing.assert_allclose(a.distances, c.distances, rtol=1e-6)
    np.testing.assert_allclose(b.distances, c.distances, rtol=1e-6)


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
