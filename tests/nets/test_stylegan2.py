"""The StyleGAN2 network on its own: construction from configs, architectures, gradients, errors.

Numerical agreement with NVIDIA's code is tested on the reference checkpoints in
tests/load/test_nvidia_stylegan2.py.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from latentkit.errors import InputError, ShapeError
from latentkit.nets.stylegan2 import BlockConfig, MappingConfig, StyleGAN2Generator, default_blocks


def _toy(architecture: str = "skip", c_dim: int = 0, seed: int = 0, **mapping) -> StyleGAN2Generator:
    blocks = default_blocks(img_resolution=16, channel_base=64, channel_max=8, architecture=architecture,
                            conv_clamp=256)
    G = StyleGAN2Generator(z_dim=8, c_dim=c_dim, w_dim=8, img_resolution=16, img_channels=3,
                           mapping=MappingConfig(num_layers=2, **mapping), blocks=blocks, seed=seed)
    return G.eval()


def test_default_blocks_follow_nvidia_formula():
    blocks = default_blocks(img_resolution=32, channel_base=128, channel_max=16, num_fp16_res=2)
    assert [(b.resolution, b.in_channels, b.out_channels) for b in blocks] == [
        (4, 0, 16), (8, 16, 16), (16, 16, 8), (32, 8, 4)]
    assert [b.use_fp16 for b in blocks] == [False, False, True, True]
    assert [b.is_last for b in blocks] == [False, False, False, True]
    assert all(b.use_fp16 is False for b in default_blocks(img_resolution=8, num_fp16_res=9)[:1])


@pytest.mark.parametrize("architecture", ["skip", "orig", "resnet"])
@pytest.mark.parametrize("n", [1, 3])
def test_architectures_render(architecture, n):
    G = _toy(architecture)
    assert G.num_ws == 6  # b4: 1 conv, b8 and b16: 2 convs each, plus the last ToRGB
    with torch.no_grad():
        img = G(torch.randn(n, 8, generator=torch.Generator().manual_seed(1)))
    assert img.shape == (n, 3, 16, 16) and img.dtype == torch.float32 and bool(torch.isfinite(img).all())
    blocks = G.synthesis_net.blocks()
    has_torgb = [hasattr(b, "torgb") for b in blocks]
    assert has_torgb == ([True] * 3 if architecture == "skip" else [False, False, True])
    assert [hasattr(b, "skip") for b in blocks] == [False, architecture == "resnet", architecture == "resnet"]


def test_construction_is_seeded_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b, c = _toy(seed=1), _toy(seed=1), _toy(seed=2)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a.synthesis_net.b8.conv0.weight, b.synthesis_net.b8.conv0.weight)
    assert not torch.equal(a.synthesis_net.b8.conv0.weight, c.synthesis_net.b8.conv0.weight)
    assert not torch.equal(a.synthesis_net.b8.conv0.weight, a.synthesis_net.b8.conv1.weight)


def test_state_dict_keys_mirror_nvidia_names():
    keys = set(_toy("resnet", c_dim=3).state_dict())
    for key in ["w_avg", "mapping_net.embed.weight", "mapping_net.fc1.bias", "synthesis_net.b4.const",
                "synthesis_net.b4.resample_filter", "synthesis_net.b8.conv0.noise_const",
                "synthesis_net.b8.conv0.noise_strength", "synthesis_net.b8.conv0.affine.weight",
                "synthesis_net.b16.skip.weight", "synthesis_net.b16.torgb.bias"]:
        assert key in keys, key


def test_mapping_config_widths():
    G = _toy(c_dim=3, layer_features=16, embed_features=5)
    assert G.mapping_net.embed.weight.shape == (5, 3)
    assert G.mapping_net.fc0.weight.shape == (16, 8 + 5)
    assert G.mapping_net.fc1.weight.shape == (8, 16)
    with pytest.raises(ShapeError, match="this generator is class-conditional"):
        G(torch.randn(2, 8))
    assert G(torch.randn(2, 8), torch.eye(3)[:2]).shape == (2, 3, 16, 16)


def test_last_preactivation_inverts_to_w():
    G = _toy()
    z = torch.randn(5, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        pre = G.last_preactivation(z)
        w = G.map_latent(z, torch.zeros(5, 0))
    act = G.mapping_activation
    torch.testing.assert_close(act.gain * torch.nn.functional.leaky_relu(pre, act.slope), w)
    assert act.slope == 0.2 and act.gain == pytest.approx(math.sqrt(2))


def test_gradients_reach_ws_and_noise():
    """The projector optimises ws and the noise inputs: both must receive gradients."""
    G = _toy().requires_grad_(False)
    for block in G.synthesis_net.blocks():
        for layer in block.conv_layers().values():
            layer.noise_strength.fill_(0.5)  # zero after construction, which would block the gradient
    ws = torch.randn(2, G.num_ws, G.w_dim).requires_grad_(True)
    noise = {k: v.clone().requires_grad_(True) for k, v in G.const_noise().items()}
    G.synthesis(ws, noise=noise).square().mean().backward()
    assert ws.grad is not None and float(ws.grad.abs().sum()) > 0
    assert all(v.grad is not None and float(v.grad.abs().sum()) > 0 for v in noise.values())


def test_const_noise_names_and_views():
    G = _toy()
    noise = G.const_noise()
    assert list(noise) == ["b4.conv1", "b8.conv0", "b8.conv1", "b16.conv0", "b16.conv1"]
    assert noise["b16.conv0"].shape == (1, 1, 16, 16)
    assert noise["b8.conv1"].data_ptr() == G.synthesis_net.b8.conv1.noise_const.data_ptr()


def test_no_noise_layers():
    blocks = [dataclasses.replace(b, use_noise=False) for b in default_blocks(img_resolution=8, channel_base=32,
                                                                               channel_max=4)]
    G = StyleGAN2Generator(z_dim=4, c_dim=0, w_dim=4, img_resolution=8, blocks=blocks).eval()
    assert G.const_noise() == {}
    ws = torch.randn(2, G.num_ws, 4)
    with torch.no_grad():
        assert torch.equal(G.synthesis(ws, noise_mode="random"), G.synthesis(ws, noise_mode="none"))


def test_construction_errors():
    blocks = default_blocks(img_resolution=16, channel_base=64, channel_max=8)
    with pytest.raises(InputError, match="architecture must be one of"):
        StyleGAN2Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16,
                           blocks=[dataclasses.replace(b, architecture="unet") for b in blocks])
    with pytest.raises(InputError, match="the last block must be the is_last block at img_resolution=32"):
        StyleGAN2Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=32, blocks=blocks)
    with pytest.raises(InputError, match="needs at least one block"):
        StyleGAN2Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, blocks=[])
    with pytest.raises(ShapeError, match="img_resolution must be a power of two >= 4, got 24"):
        default_blocks(img_resolution=24)
    assert isinstance(blocks[0], BlockConfig)
