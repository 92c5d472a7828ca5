"""CPU projection runs each image alone: a batch gives bit-identical per-image results; opt-in precision."""

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


def test_a_batch_equals_its_images_projected_alone_bit_for_bit(sg2):
    targets = _targets(sg2, 3)
    batch = project(sg2, targets, settings=FAST, progress=False)
    for k in range(3):
        alone = project(sg2, targets[k : k + 1], settings=FAST, progress=False)
        assert torch.equal(alone.ws, batch.ws[k : k + 1])
        assert torch.equal(alone.losses, batch.losses[k : k + 1])


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
