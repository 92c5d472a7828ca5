"""Fuzzing the data files latentkit reads back (priors, directions, latents): byte mutations of valid files and
hostile metadata end in a validated result or one LatentkitError; never another exception."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latentkit.errors import LatentkitError
from latentkit.io import load_latents, save_latents
from latentkit.latent.directions import Directions, pca_directions
from latentkit.latent.prior_file import PRIOR_FORMAT, PRIOR_FORMAT_VERSION, read_prior_file, write_prior_file

_FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
_edits = st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 255)), min_size=1, max_size=6)
_cut = st.one_of(st.none(), st.integers(1, 10**6))


def _prior_bytes() -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 4))
    meta = {"format": PRIOR_FORMAT, "format_version": PRIOR_FORMAT_VERSION, "n_samples": 50, "slope": 0.2,
            "gain": 1.4, "params": {}, "generator": {}}
    np.savez(buf, mean=x.mean(0), covariance=np.cov(x.T), metadata=np.array(json.dumps(meta)))
    return buf.getvalue()


def _directions_bytes(tmp) -> bytes:
    dirs = pca_directions(torch.randn(30, 4, generator=torch.Generator().manual_seed(0)), n_components=2)
    return dirs.save(tmp / "d.npz").read_bytes()


def _mutate(data: bytes, edits, cut) -> bytes:
    out = bytearray(data)
    for pos, value in edits:
        out[pos % len(out)] = value
    return bytes(out[:cut] if cut else out)


PRIOR = _prior_bytes()


def _check_prior(path) -> None:
    try:
        mean, cov, meta = read_prior_file(path)
    except LatentkitError as err:
        assert "\n" not in str(err)
        return
    assert np.isfinite(mean).all() and np.isfinite(cov).all() and isinstance(meta["n_samples"], int)


@_FUZZ
@given(edits=_edits, cut=_cut)
def test_mutated_prior_files(tmp_path, edits, cut):
    path = tmp_path / "p.npz"
    path.write_bytes(_mutate(PRIOR, edits, cut))
    _check_prior(path)


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                     max_leaves=12)


@_FUZZ
@given(extra=st.dictionaries(st.sampled_from(["n_samples", "slope", "gain", "params", "generator", "radius",
                                              "format_version"]), _json, max_size=4))
def test_prior_metadata_of_any_shape(tmp_path, extra):
    path = tmp_path / "p.npz"
    with zipfile.ZipFile(io.BytesIO(PRIOR)) as archive:
        meta = json.loads(str(np.load(io.BytesIO(archive.read("metadata.npy")))))
    np.savez(path, mean=np.zeros(4), covariance=np.eye(4), metadata=np.array(json.dumps({**meta, **extra})))
    _check_prior(path)


@_FUZZ
@given(edits=_edits, cut=_cut, data=st.data())
def test_mutated_directions_files(tmp_path, edits, cut, data):
    raw = _directions_bytes(tmp_path)
    path = tmp_path / "m.npz"
    path.write_bytes(_mutate(raw, edits, cut))
    try:
        dirs = Directions.load(path)
    except LatentkitError as err:
        assert "\n" not in str(err)
        return
    assert bool(torch.isfinite(dirs.vectors).all() and torch.isfinite(dirs.sigmas).all())


@_FUZZ
@given(meta=st.dictionaries(st.sampled_from(["space", "slope", "gain", "names", "method", "info", "format_version"]),
                            _json, max_size=4))
def test_directions_metadata_of_any_shape(tmp_path, meta):
    dirs = pca_directions(torch.randn(30, 4, generator=torch.Generator().manual_seed(0)), n_components=2)
    path = tmp_path / "d.npz"
    np.savez(path, vectors=dirs.vectors.numpy(), sigmas=dirs.sigmas.numpy(), covariance=dirs.covariance.numpy(),
             metadata=np.array(json.dumps({**dirs.metadata(), **meta})))
    try:
        Directions.load(path)
    except LatentkitError as err:
        assert "\n" not in str(err)


@_FUZZ
@given(edits=_edits, cut=_cut, npy=st.booleans())
def test_mutated_latent_files(tmp_path, edits, cut, npy):
    ws = np.random.default_rng(0).standard_normal((2, 4, 8)).astype(np.float32)
    path = tmp_path / ("w.npy" if npy else "w.npz")
    if npy:
        np.save(path, ws)
    else:
        save_latents(path, ws)
    path.write_bytes(_mutate(path.read_bytes(), edits, cut))
    try:
        out = load_latents(path)
    except LatentkitError as err:
        assert "\n" not in str(err)
        return
    assert out.ndim == 3 and out.shape[0] >= 1 and bool(torch.isfinite(out).all())


def test_prior_round_trip_still_reads(tmp_path):
    x = np.random.default_rng(1).standard_normal((40, 3))
    meta = {"format": PRIOR_FORMAT, "format_version": PRIOR_FORMAT_VERSION, "n_samples": 40, "slope": 0.2, "gain": 1.0}
    mean, cov, _ = read_prior_file(write_prior_file(tmp_path / "p.npz", x.mean(0), np.cov(x.T), meta))
    assert np.allclose(mean, x.mean(0))
