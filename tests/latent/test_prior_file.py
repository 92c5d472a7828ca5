"""GaussianPrior.load refuses every malformed prior file with one InputError (never a raw numpy/json error)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from latentkit import GaussianPrior
from latentkit.errors import InputError, ShapeError
from latentkit.latent.compress import compress


@pytest.fixture
def saved(tmp_path):
    w = torch.randn(500, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    path = tmp_path / "prior.npz"
    GaussianPrior().fit(w).save(path)
    return path


def _rewrite(path, **changes):
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays["metadata"]))
    for key, value in changes.items():
        if key in ("mean", "covariance"):
            arrays[key] = value
        elif key == "metadata":
            arrays["metadata"] = np.array(json.dumps(value))
        elif value is ...:
            meta.pop(key)
        else:
            meta[key] = value
    if "metadata" not in changes:
        arrays["metadata"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)


@pytest.mark.parametrize("changes, match", [
    ({"metadata": [1, 2]}, "must be a JSON object"),
    ({"metadata": "text"}, "must be a JSON object"),
    ({"n_samples": ...}, "n_samples"),
    ({"n_samples": "many"}, "n_samples"),
    ({"slope": "steep"}, "'slope' must be a finite positive number"),
    ({"gain": -1.0}, "'gain' must be a finite positive number"),
    ({"params": [1]}, "params"),
    ({"mean": np.zeros(0), "covariance": np.zeros((0, 0))}, "w_dim >= 1"),
    ({"mean": np.array(["a"] * 4)}, "float arrays"),
    ({"covariance": -np.eye(4)}, "not a covariance"),
    ({"covariance": np.diag([1.0, 1.0, 1.0, -0.5])}, "smallest eigenvalue -0.5"),
    ({"covariance": np.eye(4) + np.triu(np.ones((4, 4)), 1)}, "not symmetric"),
], ids=lambda v: str(v)[:30])
def test_bad_prior_files(saved, changes, match):
    _rewrite(saved, **changes)
    with pytest.raises(InputError, match=match):
        GaussianPrior.load(saved)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04" + b"\x00" * 30], ids=["empty", "truncated-zip"])
def test_unreadable_prior_files(tmp_path, content):
    path = tmp_path / "prior.npz"
    path.write_bytes(content)
    with pytest.raises(InputError, match="cannot read"):
        GaussianPrior.load(path)


def test_truncated_prior_file(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cannot read"):
        GaussianPrior.load(saved)


def test_valid_file_still_loads(saved):
    assert GaussianPrior.load(saved).w_dim == 4


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_compress_refuses_non_finite_latents(saved, bad):
    ws = torch.zeros(1, 2, 4)
    ws[0, 1, 2] = bad
    with pytest.raises(InputError, match="non-finite"):
        compress(ws, GaussianPrior.load(saved))


def test_compress_refuses_complex_latents(saved):
    with pytest.raises(InputError, match="complex"):
        compress(torch.zeros(1, 2, 4, dtype=torch.complex64), GaussianPrior.load(saved))


@pytest.mark.parametrize("damage", [lambda p: p.write_bytes(b""), lambda p: p.write_bytes(p.read_bytes()[:40])],
                         ids=["empty", "truncated"])
def test_a_damaged_cached_prior_is_refitted(damage):
    from conftest import make_toy_generator

    from latentkit import hub
    from latentkit.latent.prior_cache import cached_prior

    G = make_toy_generator()
    first = cached_prior(G, n_samples=300, batch_size=100, progress=False)
    (path,) = hub.cache_dir("priors").glob("*.npz")
    damage(path)
    again = cached_prior(G, n_samples=300, batch_size=100, progress=False)
    torch.testing.assert_close(again.mean_, first.mean_, rtol=0, atol=0)
    assert GaussianPrior.load(path).w_dim == G.w_dim  # healed on disk
