"""The tau-vs-psi study end to end on the toy generator (offline: dlib identity, pixel-space distances)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from latentkit.latent.compress import truncate
from latentkit.errors import InputError
from latentkit.latent.prior import GaussianPrior
from latentkit.metrics.tradeoff import (
    TradeoffSettings,
    parse_floats,
    plot_tradeoff,
    save_tradeoff,
    tradeoff,
)

pytest.importorskip("dlib")

SETTINGS = TradeoffSettings(taus=(1.0, 3.0), psis=(0.5, 0.9), num_samples=6, features="pixels",
                            identity_backend="dlib", batch_size=4)


@pytest.fixture(scope="module")
def toy():
    from conftest import make_toy_generator

    return make_toy_generator()


@pytest.fixture(scope="module")
def prior(toy):
    return GaussianPrior().fit(toy.mapping(torch.randn(2000, toy.z_dim, generator=torch.Generator().manual_seed(5))))


@pytest.fixture(scope="module")
def result(toy, prior):
    return tradeoff(toy, prior=prior, settings=SETTINGS, progress=False)


def test_rows_and_trends(result):
    rows = {(r["method"], r["value"]): r for r in result.rows}
    assert list(rows) == [("none", 1.0), ("tau", 1.0), ("tau", 3.0), ("psi", 0.5), ("psi", 0.9)]
    assert result.distance_key == "fd_pixels"
    assert "untruncated samples, seeds 6..11" in result.reference
    assert rows[("none", 1.0)]["identity"] == pytest.approx(1.0, abs=1e-5)
    for row in result.rows:
        assert set(row) == {"method", "value", "identity", "identity_std", "faces_missing", "fd_pixels", "kd_pixels", "kd_pixels_std"}
        assert row["faces_missing"] == 0 and row["identity"] <= 1 + 1e-5
        assert np.isfinite(row["fd_pixels"]) and row["fd_pixels"] > -1e-9
    # Stronger truncation loses more identity. (With N = 6 in 768 dimensions the distances are too noisy
    # to rank the settings; tests/metrics/test_quality.py checks them.)
    assert rows[("psi", 0.5)]["identity"] < rows[("psi", 0.9)]["identity"]
    assert rows[("tau", 3.0)]["identity"] >= rows[("tau", 1.0)]["identity"] - 1e-6


def test_identity_column_is_the_mean_similarity(toy, result):
    from latentkit.metrics.identity import identity_similarity
    from latentkit.latent.sampling import z_from_seed

    ws = toy.mapping(torch.cat([z_from_seed(s, toy.z_dim) for s in range(6)]))
    moved = truncate(ws, toy.w_avg, 0.5)
    sims = identity_similarity(toy.synthesis(moved), toy.synthesis(ws), backend="dlib", detect=False)
    row = next(r for r in result.rows if r["method"] == "psi" and r["value"] == 0.5)
    assert row["identity"] == pytest.approx(float(sims.mean()), abs=1e-6)


def test_real_reference(toy, prior):
    from latentkit.metrics.quality import evaluate

    real = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    settings = TradeoffSettings(taus=(2.0,), psis=(), num_samples=6, features="pixels", identity_backend="dlib")
    out = tradeoff(toy, prior=prior, real=real, settings=settings, progress=False)
    assert out.reference.startswith("real images")
    from latentkit.latent.sampling import z_from_seed

    ws = toy.mapping(torch.cat([z_from_seed(s, toy.z_dim) for s in range(6)]))
    direct = evaluate(real, toy.synthesis(ws), metrics=("fid",), features="pixels", progress=False)
    assert out.rows[0]["fd_pixels"] == pytest.approx(direct.metrics["fd_pixels"], rel=1e-9)


def test_save_writes_csv_json_png(result, tmp_path):
    paths = save_tradeoff(result, tmp_path / "study")
    with open(paths["csv"]) as fh:
        rows = list(csv.DictReader(fh))
    assert [r["method"] for r in rows] == ["none", "tau", "tau", "psi", "psi"]
    assert float(rows[3]["fd_pixels"]) == pytest.approx(result.rows[3]["fd_pixels"])
    data = json.loads(paths["json"].read_text())
    assert data["distance_key"] == "fd_pixels" and data["settings"]["taus"] == [1.0, 3.0]
    with Image.open(paths["png"]) as img:
        assert img.size[0] > 300 and img.size[1] > 200
        assert np.asarray(img.convert("L")).std() > 5  # something was drawn
    assert not list((tmp_path / "study").glob(".*"))  # no temporary files left


def test_plot_with_one_method_only(result, tmp_path):
    from dataclasses import replace

    only_psi = replace(result, rows=[r for r in result.rows if r["method"] != "tau"])
    assert plot_tradeoff(only_psi, tmp_path / "p.png").is_file()


def test_no_faces_detected_is_an_error(toy, prior):
    settings = TradeoffSettings(taus=(2.0,), psis=(), num_samples=2, features="pixels", identity_backend="dlib",
                                detect_faces=True)
    with pytest.raises(InputError, match="no face found in any sample"):
        tradeoff(toy, prior=prior, settings=settings, progress=False)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"taus": (), "psis": ()}, "both empty"),
        ({"taus": (0.0,)}, "taus must be positive"),
        ({"psis": (1.5,)}, r"psis must be in \[0, 1\]"),
        ({"num_samples": 1}, "num_samples must be >= 2"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
    ],
)
def test_settings_errors(kwargs, match):
    with pytest.raises(InputError, match=match):
        TradeoffSettings(**kwargs)


def test_parse_floats():
    assert parse_floats("1, 2,3.5", "--taus") == (1.0, 2.0, 3.5)
    assert parse_floats("", "--psis") == ()
    with pytest.raises(InputError, match="--taus must be comma-separated numbers"):
        parse_floats("1,two", "--taus")
