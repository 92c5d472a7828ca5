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
