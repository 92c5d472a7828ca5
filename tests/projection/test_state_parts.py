"""CPU projection runs each image alone, images side by side on groups of cores; opt-in precision."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from latentkit import load_generator
from latentkit.errors import InputError
from latentkit.nets.precision import autocast, cpu_has_fast_bf16
from latentkit.projection.project import project
from latentkit.projection.settings import ProjectionSettings

REFERENCE = Path(__file__).parents[1] / "data" / "reference-nets"
FAST = ProjectionSettings(perceptual=None, mse_weight=1.0, num_steps=3, w_avg_samples=500)


@pytest.fixture(scope="module")
def sg2():
    return load_generator(REFERENCE / "sg2ada_uncond_map8_res32.pkl")


def _targets(G, n):
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        return G.synthesis(G.mapping(z)).clamp(-1, 1)


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_each_image_of_a_batch_is_independent_of_the_others(sg2, two_threads):
    # Two threads: a batch runs its images side by side at one thread each, one image alone gets both.
    targets = _targets(sg2, 3)
    batch = project(sg2, targets, settings=FAST, progress=False)
    assert torch.get_num_threads() == 2  # the caller's setting survives the worker threads
    pair = project(sg2, targets[1:], settings=FAST, progress=False)  # other neighbours, same threads per image
    assert torch.equal(pair.ws, batch.ws[1:]) and torch.equal(pair.losses, batch.losses[1:])
    for k in range(3):
        alone = project(sg2, targets[k : k + 1], settings=FAST, progress=False)
        # Other thread counts may split reductions differently: equal up to float32 round-off.
        torch.testing.assert_close(alone.ws, batch.ws[k : k + 1], rtol=0, atol=1e-5)
        torch.testing.assert_close(alone.losses, batch.losses[k : k + 1], rtol=1e-5, atol=1e-7)


def test_run_per_core_keeps_order_threads_and_errors(two_threads):
    from latentkit.projection.cpu_parallel import core_groups, run_per_core

    assert core_groups(1, 8) == (1, 8) and core_groups(4, 2) == (2, 1) and core_groups(3, 16) == (3, 5)
    seen = run_per_core(lambda i: (i, torch.get_num_threads()), list(range(5)))
    assert seen == [(i, 1) for i in range(5)] and torch.get_num_threads() == 2
    with pytest.raises(ZeroDivisionError):
        run_per_core(lambda i: 1 / (i - 3), list(range(5)))
    assert torch.get_num_threads() == 2


def test_frozen_generator_with_autograd_uses_shared_weights(sg2):
    from latentkit.nets.stylegan2 import _fuse_modconv

    block = next(m for m in sg2.modules() if type(m).__name__ == "SynthesisBlock")
    ws = torch.zeros(2, 3, sg2.w_dim)
    with torch.no_grad():
        assert _fuse_modconv(block, torch.float32, ws)
    assert not _fuse_modconv(block, torch.float32, ws)  # autograd on, weights frozen: no weight gradients


@pytest.mark.skipif(not cpu_has_fast_bf16(), reason="CPU without native bfloat16")
def test_bf16_projection_runs_and_stays_close(sg2):
    targets = _targets(sg2, 1)
    fp32 = project(sg2, targets, settings=FAST, progress=False)
    bf16 = project(sg2, targets, settings=dataclasses.replace(FAST, precision="bf16"), progress=False)
    assert bf16.ws.dtype == torch.float32 and bf16.losses.dtype == torch.float32
    # bfloat16 keeps 8 mantissa bits: the losses agree to a few parts in a hundred after 3 steps
    torch.testing.assert_close(bf16.losses, fp32.losses, rtol=0.05, atol=1e-3)


def test_precision_errors():
    with pytest.raises(InputError, match="precision must be one of"):
        ProjectionSettings(precision="fp8")
    with pytest.raises(InputError, match="needs a CUDA device"):
        autocast("cpu", "fp16")
    assert autocast("cpu", "fp32").__enter__() is None


def test_memory_limits_the_images_side_by_side_not_their_bits(sg2, two_threads, monkeypatch, caplog):
    import latentkit.projection.state as state

    targets = _targets(sg2, 3)
    free = project(sg2, targets, settings=FAST, progress=False)
    widths = []
    real_run = state.run_per_core

    def spy(fn, items, *, max_workers=None):
        widths.append(max_workers)
        return real_run(fn, items, max_workers=max_workers)

    monkeypatch.setattr(state, "run_per_core", spy)
    monkeypatch.setattr(state, "available_memory", lambda: 1)  # room for one image only
    with caplog.at_level("INFO", logger="latentkit.projection.state"):
        tight = project(sg2, targets, settings=FAST, progress=False)
    assert widths == [1] * FAST.num_steps  # decided once, kept for every step
    assert "1 image(s) side by side instead of 2" in caplog.text
    assert torch.equal(tight.ws, free.ws) and torch.equal(tight.losses, free.losses)
    assert torch.get_num_threads() == 2


def test_memory_workers_counts_what_fits_beside_the_resident_job(monkeypatch):
    from latentkit.projection import cpu_parallel as cp

    assert cp.memory_workers(10**9, available=10**9) == 1  # 0.8 GB free: nothing beside the first
    assert cp.memory_workers(10**9, available=5 * 10**9) == 5  # 4 GB: four more
    monkeypatch.setattr(cp, "available_memory", lambda: None)
    assert cp.memory_workers(10**9) is None  # unknown: no limit


def test_saved_bytes_counts_each_saved_storage_once():
    from latentkit.projection.cpu_parallel import saved_bytes

    x = torch.randn(1000, requires_grad=True)
    assert saved_bytes(lambda: (x * x).sum()) == x.nbytes  # mul saves x (twice, one storage)
    assert saved_bytes(lambda: (x.detach() * 2).sum()) == 0
    y = torch.randn(500, requires_grad=True)
    assert saved_bytes(lambda: (x.exp().sum() + (y * y).sum())) == x.nbytes + y.nbytes  # exp saves its output, mul y
