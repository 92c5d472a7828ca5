"""FID/KID/PRDC: closed forms and independent implementations on synthetic features; sources; errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.linalg
import torch
from conftest import roundoff_tolerance

from latentkit.errors import InputError, ShapeError, WeightsUnavailableError
from latentkit.io import save_image
from latentkit.metrics.quality import (
    EvaluationResult,
    evaluate,
    extract_features,
    frechet_distance,
    kernel_distance,
    metric_keys,
    prdc_metrics,
)


def _gauss(n: int, d: int, seed: int, mean: float = 0.0, std: float = 1.0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * std + mean


# --------------------------------------------------------------------------------------------------
# Fréchet distance.


def test_frechet_matches_independent_sqrtm_formula():
    a, b = _gauss(300, 6, 0), _gauss(250, 6, 1, mean=0.3, std=1.4)
    mu_a, mu_b = a.mean(0).numpy(), b.mean(0).numpy()
    cov_a, cov_b = np.cov(a.numpy(), rowvar=False), np.cov(b.numpy(), rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    expected = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)


def test_frechet_approaches_gaussian_closed_form():
    # N(0, I) vs N(m, s^2 I) in d dims: |m|^2 + d (1 - s)^2.
    d, m, s = 4, 0.5, 1.5
    a, b = _gauss(40_000, d, 2), _gauss(40_000, d, 3, mean=m, std=s)
    assert frechet_distance(a, b) == pytest.approx(d * m**2 + d * (1 - s) ** 2, abs=0.03)


def test_identical_sets_give_zero_fd_and_perfect_prdc():
    a = _gauss(200, 8, 4)
    result = evaluate(a, a.clone(), features="precomputed", progress=False)
    assert isinstance(result, EvaluationResult)
    assert abs(result.metrics["fd"]) < 1e-8
    for key in ("precision", "recall", "coverage"):
        assert result.metrics[key] == 1.0


# --------------------------------------------------------------------------------------------------
# Kernel distance.


def _unbiased_mmd2_poly(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    k = lambda p, q: (p @ q.T / d + 1) ** 3
    m, n = len(x), len(y)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return float(
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean()
    )


def test_kernel_distance_whole_set_equals_unbiased_mmd():
    a, b = _gauss(60, 5, 5), _gauss(60, 5, 6, mean=0.4)
    mean, std = kernel_distance(a, b, subsets=3, subset_size=60)
    assert mean == pytest.approx(_unbiased_mmd2_poly(a.numpy(), b.numpy()), rel=1e-9)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_kernel_distance_is_near_zero_for_one_distribution_and_grows_with_shift():
    same, _ = kernel_distance(_gauss(400, 5, 7), _gauss(400, 5, 8), subsets=20, subset_size=200)
    shifted, _ = kernel_distance(_gauss(400, 5, 7), _gauss(400, 5, 8, mean=0.5), subsets=20, subset_size=200)
    assert abs(same) < 0.02
    assert shifted > 10 * abs(same) and shifted > 0.05


# --------------------------------------------------------------------------------------------------
# Precision / recall / density / coverage.


def _prdc_by_hand(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    """Naeem et al. 2020 written out with loops (strict '<', as in the prdc package)."""
    def radii(x):
        dist = np.linalg.norm(x[:, None] - x[None], axis=-1)
        return np.sort(dist, axis=1)[:, k]  # k-th neighbour, index 0 is the point itself

    r_real, r_fake = radii(real), radii(fake)
    d = np.linalg.norm(real[:, None] - fake[None], axis=-1)  # [N_real, N_fake]
    precision = np.mean([any(d[i, j] < r_real[i] for i in range(len(real))) for j in range(len(fake))])
    recall = np.mean([any(d[i, j] < r_fake[j] for j in range(len(fake))) for i in range(len(real))])
    density = sum(d[i, j] < r_real[i] for i, j in itertools.product(range(len(real)), range(len(fake)))) / (k * len(fake))
    coverage = np.mean([d[i].min() < r_real[i] for i in range(len(real))])
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


@pytest.mark.parametrize("k", [1, 3, 5])
def test_prdc_matches_definition(k):
    real, fake = _gauss(40, 3, 9), _gauss(35, 3, 10, mean=0.5, std=0.7)
    got = prdc_metrics(real, fake, nearest_k=k)
    expected = _prdc_by_hand(real.numpy(), fake.numpy(), k)
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-12), key


def test_prdc_disjoint_sets_score_zero():
    got = prdc_metrics(_gauss(30, 2, 11), _gauss(30, 2, 12, mean=100.0))
    assert got == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_prdc_prints_nothing(capsys):
    prdc_metrics(_gauss(20, 2, 13), _gauss(20, 2, 14))
    assert capsys.readouterr().out == ""


# --------------------------------------------------------------------------------------------------
# evaluate(): names, sources.


def test_metric_subset_and_names():
    a, b = _gauss(30, 4, 15), _gauss(30, 4, 16)
    only_fd = evaluate(a, b, metrics=("fid",), features="precomputed", progress=False)
    assert set(only_fd.metrics) == {"fd"}
    kd = evaluate(a, b, metrics=("kid", "density"), features="precomputed", progress=False)
    assert set(kd.metrics) == {"kd", "kd_std", "density"}
    assert metric_keys("inception") == ("fid", "kid")
    assert metric_keys("pixels") == ("fd_pixels", "kd_pixels")


def test_stand_in_features_are_not_called_fid(toy_generator):
    real = torch.rand(12, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    result = evaluate(real, toy_generator, features="pixels", num_samples=12, progress=False)
    assert "fid" not in result.metrics and "kid" not in result.metrics
    assert {"fd_pixels", "kd_pixels", "kd_pixels_std", "precision", "recall", "density", "coverage"} == set(result.metrics)
    assert any("not comparable" in note for note in result.notes)
    assert result.to_dict()["features"] == "pixels"


def test_folder_equals_tensor(tmp_path):
    imgs = torch.rand(7, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    for i, img in enumerate(imgs):
        save_image(tmp_path / f"{i:03d}.png", img)
    (tmp_path / "notes.txt").write_text("not an image")
    from_folder = extract_features(tmp_path, features="pixels", progress=False)
    from_tensor = extract_features(imgs, features="pixels", progress=False)
    torch.testing.assert_close(from_folder, from_tensor, atol=0, rtol=0)
    assert from_folder.shape == (7, 3 * 16 * 16)
    assert extract_features(tmp_path, features="pixels", num_samples=3, progress=False).shape[0] == 3


def test_generator_samples_do_not_depend_on_batch_size(toy_generator):
    one = extract_features(toy_generator, features="pixels", num_samples=7, batch_size=3, progress=False)
    two = extract_features(toy_generator, features="pixels", num_samples=7, batch_size=7, progress=False)
    torch.testing.assert_close(one, two, atol=0, rtol=0)
    shifted = extract_features(toy_generator, features="pixels", num_samples=7, seed=1, progress=False)
    torch.testing.assert_close(shifted[:6], one[1:], atol=0, rtol=0)  # seeds 1..7 vs 0..6


def test_dlib_face_features(toy_generator):
    pytest.importorskip("dlib")
    feats = extract_features(toy_generator, features="dlib_face", num_samples=3, progress=False)
    assert feats.shape == (3, 128) and feats.dtype == torch.float64
    torch.testing.assert_close(feats.norm(dim=1), torch.ones(3, dtype=torch.float64))


# --------------------------------------------------------------------------------------------------
# Inception weights. The real file cannot be downloaded here: the offline error is tested, and the wiring
# with a local file holding RANDOM Inception weights (features are meaningless, shapes and plumbing are not).


def test_inception_offline_error_names_file_and_place():
    imgs = torch.zeros(2, 3, 16, 16)
    with pytest.raises(WeightsUnavailableError, match=r"Download https://\S+weights-inception-2015-12-05-6726825d\.pth and put it at \S+/hub/checkpoints/"):
        evaluate(imgs, imgs, features="inception", metrics=("fid", "kid"), progress=False)


def test_inception_local_file_with_random_weights(tmp_path, monkeypatch):
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    monkeypatch.setattr(tfi, "load_state_dict_from_url", lambda *a, **k: None)
    monkeypatch.setattr(tfi.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
    net = tfi.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])  # RANDOM init, test only
    monkeypatch.undo()
    path = tmp_path / "RANDOM-inception.pth"
    torch.save(net.state_dict(), path)
    imgs = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    feats = extract_features(imgs, features="inception", inception_weights=path, progress=False)
    assert feats.shape == (3, 2048) and bool(torch.isfinite(feats).all())
    again = extract_features(imgs[:1], features="inception", inception_weights=path, progress=False)
    torch.testing.assert_close(again[0], feats[0], rtol=0, atol=roundoff_tolerance(feats[0], 2048))


def test_inception_bad_files(tmp_path):
    imgs = torch.zeros(2, 3, 16, 16)
    with pytest.raises(InputError, match="inception_weights file not found"):
        evaluate(imgs, imgs, inception_weights=tmp_path / "missing.pth", progress=False)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"junk")
    with pytest.raises(InputError, match="weights_only=True"):
        evaluate(imgs, imgs, inception_weights=junk, progress=False)


# --------------------------------------------------------------------------------------------------
# Errors.


def test_errors(tmp_path, toy_generator):
    a = _gauss(10, 3, 0)
    imgs = torch.zeros(4, 3, 8, 8)
    with pytest.raises(InputError, match="metrics must be a non-empty subset"):
        evaluate(a, a, metrics=("fid", "is"), features="precomputed")
    with pytest.raises(InputError, match="features must be one of"):
        evaluate(imgs, imgs, features="clip")
    with pytest.raises(InputError, match="folder not found"):
        evaluate(tmp_path / "none", imgs, features="pixels", progress=False)
    with pytest.raises(InputError, match="no images"):
        evaluate(tmp_path, imgs, features="pixels", progress=False)
    with pytest.raises(InputError, match="pass num_samples >= 2"):
        evaluate(imgs, toy_generator, features="pixels", progress=False)
    with pytest.raises(ShapeError, match=r"float images \[N, C, H, W\]"):
        evaluate(torch.zeros(4, 8, 8), imgs, features="pixels", progress=False)
    with pytest.raises(InputError, match="must be a folder, an image tensor"):
        evaluate([1, 2], imgs, features="pixels", progress=False)
    with pytest.raises(ShapeError, match=r"real must be features \[N, D\]"):
        evaluate(torch.zeros(4, 3, 2, 2, dtype=torch.float64), a, features="precomputed")
    with pytest.raises(ShapeError, match="equal D"):
        frechet_distance(a, _gauss(10, 4, 1))
    with pytest.raises(InputError, match="non-finite"):
        frechet_distance(a, torch.full((10, 3), float("nan")))
    with pytest.raises(ShapeError, match="subset_size"):
        kernel_distance(a, a, subset_size=11)
    with pytest.raises(ShapeError, match=r"N > nearest_k \+ 1"):
        prdc_metrics(a, a, nearest_k=9)


def test_auto_features_fall_back_offline_and_say_so(caplog):
    from latentkit.metrics.features import resolve_features

    with caplog.at_level("WARNING", logger="latentkit.metrics.features"):
        assert resolve_features("auto") == "pixels"  # the tests' torch home holds no Inception weights
    assert "not FID" in caplog.text and "--inception-weights" in caplog.text
    assert resolve_features("auto", "local.pth") == "inception" and resolve_features("dlib_face") == "dlib_face"
    real = torch.rand(20, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    result = evaluate(real, real, metrics=("fid",), features="auto", progress=False)
    assert result.features == "pixels" and "fd_pixels" in result.metrics and "fid" not in result.metrics
