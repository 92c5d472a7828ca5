"""Fuzzing the state an output folder holds (checkpoint, manifest, lock): damaged bytes and hostile field
values end in a resumed state that is finite and in range, a skipped line, a refusal or one LatentkitError;
never another exception, and never a live lock taken over."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latentkit.errors import LatentkitError
from latentkit.projection.outdir import LOCK, MANIFEST, folder_lock, read_manifest
from latentkit.projection.settings import ProjectionSettings
from latentkit.projection.state import ProjectionState

_FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SETTINGS = ProjectionSettings(num_steps=4, perceptual=None, mse_weight=1.0, w_avg_samples=16)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from conftest import make_toy_generator

    G = make_toy_generator()
    target = torch.rand(2, 3, 16, 16) * 2 - 1
    state = ProjectionState(G, target, torch.zeros(2, 0), SETTINGS, prior=None, perceptual=None)
    for step in range(2):
        state.step(step)
    path = tmp_path_factory.mktemp("ckpt") / "run.pt"
    state.save(path, "fp", 2)
    return G, target, path.read_bytes(), torch.load(path, weights_only=True)


def _restore(G, target, path) -> None:
    state = ProjectionState(G, target, torch.zeros(2, 0), SETTINGS, prior=None, perceptual=None)
    try:
        step = state.restore(path, "fp")
    except LatentkitError as err:
        assert "\n" not in str(err)
        return
    assert 0 <= step <= SETTINGS.num_steps and bool(torch.isfinite(state.w_opt).all())
    for group in state.optimizer.state.values():
        assert all(bool(torch.isfinite(v).all()) for v in group.values() if isinstance(v, torch.Tensor))


@_FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 255)), min_size=1, max_size=4),
       cut=st.one_of(st.none(), st.integers(1, 10**6)))
def test_mutated_checkpoint_bytes(saved, tmp_path, edits, cut):
    G, target, raw, _ = saved
    data = bytearray(raw)
    for pos, value in edits:
        data[pos % len(data)] = value
    path = tmp_path / "run.pt"
    path.write_bytes(bytes(data[:cut] if cut else data))
    _restore(G, target, path)


_values = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=4),
                    st.lists(st.integers(0, 3), max_size=3), st.just(torch.full((2, 1, 8), float("nan"))),
                    st.just(torch.zeros(0)), st.just(torch.zeros(3, dtype=torch.uint8)))
_fields = st.sampled_from(["step", "w_opt", "noises", "optimizer", "rng", "history", "version", "fingerprint",
                           "optimizer.state", "optimizer.param_groups", "optimizer.state.0.exp_avg",
                           "optimizer.state.0.step", "optimizer.state.0.exp_avg_sq"])


@_FUZZ
@given(changes=st.lists(st.tuples(_fields, _values), min_size=1, max_size=3))
def test_hostile_checkpoint_fields(saved, tmp_path, changes):
    G, target, _, state = saved
    import copy

    state = copy.deepcopy(state)
    for field, value in changes:
        *parents, last = field.split(".")
        node = state
        for part in parents:
            node = node.get(int(part) if part.isdigit() else part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node[int(last) if last.isdigit() else last] = value
    path = tmp_path / "run.pt"
    torch.save(state, path)
    _restore(G, target, path)


_line = st.one_of(
    st.binary(max_size=80),
    st.builds(lambda d: json.dumps(d).encode(), st.dictionaries(
        st.sampled_from(["input", "folder", "fingerprint", "final_loss", "psnr", "lpips", "seconds", "class",
                         "final_terms"]),
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5),
                  st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.floats(), max_size=2)),
        max_size=9)),
    st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),
)


@_FUZZ
@given(lines=st.lists(_line, max_size=6))
def test_hostile_manifest_lines(tmp_path, lines):
    (tmp_path / MANIFEST).write_bytes(b"\n".join(lines))
    for key, record in read_manifest(tmp_path).items():
        assert isinstance(key, str) and isinstance(record, dict) and record["input"] == key


_pids = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=6),
                  st.just(1), st.just("1"), st.just(1.0), st.just([1]), st.just(os.getpid()))


@_FUZZ
@given(pid=_pids, host=st.one_of(st.just(socket.gethostname()), st.text(max_size=5), st.integers()),
       raw=st.one_of(st.none(), st.binary(max_size=40)))
def test_hostile_lock_files(tmp_path, pid, host, raw):
    folder = tmp_path / f"f{abs(hash((repr(pid), repr(host), raw)))}"
    folder.mkdir()
    content = raw if raw is not None else json.dumps({"pid": pid, "host": host}).encode()
    (folder / LOCK).write_bytes(content)
    try:
        with folder_lock(folder):
            taken = True
    except LatentkitError as err:
        assert "\n" not in str(err)
        taken = False
    live = isinstance(pid, int) and not isinstance(pid, bool) and pid in (1, os.getpid())
    if raw is None and live:
        assert not taken  # a live holder's lock is never taken over
    if taken:
        assert raw is None and isinstance(pid, int) and not isinstance(pid, bool) and host == socket.gethostname()
