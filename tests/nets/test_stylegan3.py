"""StyleGAN3 / StyleGAN-XL networks built from specs (no checkpoint): shapes, gradients, errors.

Numerical agreement with the original code is tested in tests/load/test_nvidia_stylegan3.py.
"""

from __future__ import annotations

import pytest
import torch

from latentkit.errors import ShapeError
from latentkit.nets.stylegan3 import SynthesisInputSpec, SynthesisLayerSpec, StyleGAN3Generator, modulated_conv2d_sg3
from latentkit.nets.stylegan_xl import StyleGANXLGenerator

INPUT = SynthesisInputSpec(channels=6, size=(12, 12), sampling_rate=4.0, bandwidth=1.0)
# One 3x3 feature layer (2x up, 4 taps, 2x down: 12 -> conv 14 -> 12) and ToRGB.
LAYERS = [
    SynthesisLayerSpec(name="L0_12_5", in_channels=6, out_channels=5, in_size=(12, 12), out_size=(12, 12),
                       conv_kernel=3, up=2, down=2, up_taps=4, down_taps=4, down_radial=False,
                       padding=(1, 0, 1, 0), is_torgb=False, is_critically_sampled=False, conv_clamp=256.0),
    SynthesisLayerSpec(name="L1_12_3", in_channels=5, out_channels=3, in_size=(12, 12), out_size=(12, 12),
                       conv_kernel=1, up=1, down=1, up_taps=1, down_taps=1, down_radial=False,
                       padding=(0, 0, 0, 0), is_torgb=True, is_critically_sampled=True, conv_clamp=256.0),
]


def _randomize(net: torch.nn.Module) -> torch.nn.Module:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith(("up_filter", "down_filter")):
                t.copy_(torch.full_like(t, 1 / t.numel() ** (1 / t.ndim)))
            elif name.endswith("magnitude_ema"):
                t.fill_(1.0)
            elif name.endswith("transform"):
                t.copy_(torch.eye(3))
            else:
                t.copy_(torch.randn(t.shape, generator=g))
    return net.eval().requires_grad_(False)


def _sg3(c_dim: int = 0, architecture: str = "stylegan3-t") -> StyleGAN3Generator:
    return _randomize(StyleGAN3Generator(z_dim=8, c_dim=c_dim, w_dim=8, img_resolution=12, img_channels=3,
                                         mapping_layers=2, input_spec=INPUT, layer_specs=LAYERS,
                                         architecture=architecture))


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("c_dim", [0, 4])
def test_shapes(n, c_dim):
    G = _sg3(c_dim)
    assert G.num_ws == 3
    c = torch.eye(4)[torch.arange(n) % 4] if c_dim else None
    ws = G.mapping(torch.randn(n, 8), c)
    assert ws.shape == (n, 3, 8)
    img = G.synthesis(ws)
    assert img.shape == (n, 3, 12, 12) and img.dtype == torch.float32
    assert torch.isfinite(img).all()


def test_gradients_reach_ws():
    """Projection optimises ws through synthesis: the gradient must exist and be non-zero."""
    G = _sg3()
    ws = G.mapping(torch.randn(2, 8)).requires_grad_(True)
    G.synthesis(ws).square().sum().backward()
    assert ws.grad is not None and ws.grad.abs().sum() > 0


def test_xl_shapes_and_unconditional_variant():
    G = _randomize(StyleGANXLGenerator(z_dim=8, c_dim=3, w_dim=8, img_resolution=12, img_channels=3,
                                       mapping_layers=2, input_spec=INPUT, layer_specs=LAYERS,
                                       num_embeddings=10, embedding_dim=6))
    assert G.w_avg.shape == (3, 8)
    assert G.synthesis(G.mapping(torch.randn(2, 8), torch.eye(3)[:2])).shape == (2, 3, 12, 12)
    U = StyleGANXLGenerator(z_dim=8, c_dim=0, w_dim=8, img_resolution=12, img_channels=3, mapping_layers=2,
                            input_spec=INPUT, layer_specs=LAYERS, num_embeddings=10, embedding_dim=6)
    assert U.w_avg.shape == (8,) and U.mapping_net.embed_proj is None
    assert "mapping_net.embed.weight" in U.state_dict()


def test_constructor_errors():
    with pytest.raises(ValueError, match="architecture must be"):
        _sg3(architecture="stylegan3")
    with pytest.raises(ValueError, match="must end with the ToRGB layer"):
        StyleGAN3Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=12, img_channels=3, mapping_layers=2,
                           input_spec=INPUT, layer_specs=LAYERS[:1])
    with pytest.raises(ValueError, match="are not among the synthesis layers"):
        StyleGANXLGenerator(z_dim=8, c_dim=0, w_dim=8, img_resolution=12, img_channels=3, mapping_layers=2,
                            input_spec=INPUT, layer_specs=LAYERS, head_layer_names=("L7_64_3",))
    with pytest.raises(ValueError, match="exceeds the 10 rows"):
        StyleGANXLGenerator(z_dim=8, c_dim=11, w_dim=8, img_resolution=12, img_channels=3, mapping_layers=2,
                            input_spec=INPUT, layer_specs=LAYERS, num_embeddings=10)


def test_wrong_resolution_is_reported():
    G = StyleGAN3Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, mapping_layers=2,
                           input_spec=INPUT, layer_specs=LAYERS)
    _randomize(G)
    with pytest.raises(ShapeError, match="expected resolution 16"):
        G.synthesis(torch.zeros(1, 3, 8))


@pytest.mark.parametrize("demodulate, gain_shape", [(True, [5]), (True, None), (False, []), (True, [3, 5])])
def test_unfused_modulated_conv_is_the_grouped_one_with_its_gradients(demodulate, gain_shape):
    """Styles on the input, one shared convolution, demodulation on the output: the grouped convolution's
    values and gradients (float64), and the default picks it only while recording gradients of a constant
    weight."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 6, 7, dtype=torch.float64, generator=g, requires_grad=True)
    styles = torch.randn(3, 5, dtype=torch.float64, generator=g, requires_grad=True)
    weight = torch.randn(4, 5, 3, 3, dtype=torch.float64, generator=g)
    gain = None if gain_shape is None else torch.rand(gain_shape, dtype=torch.float64, generator=g) + 0.5
    kw = dict(demodulate=demodulate, padding=2, input_gain=gain)
    fused = modulated_conv2d_sg3(x, weight, styles, fused=True, **kw)
    unfused = modulated_conv2d_sg3(x, weight, styles, fused=False, **kw)
    torch.testing.assert_close(unfused, fused, rtol=1e-12, atol=1e-12)
    probe = torch.randn(fused.shape, dtype=torch.float64, generator=g)
    for a, b in zip(torch.autograd.grad((unfused * probe).sum(), (x, styles)),
                    torch.autograd.grad((fused * probe).sum(), (x, styles)), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-12)
    seen = []
    real_conv2d = torch.nn.functional.conv2d

    def spy(inp, w, *args, **kwargs):
        seen.append(kwargs.get("groups", 1))
        return real_conv2d(inp, w, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.nn.functional, "conv2d", spy)
        modulated_conv2d_sg3(x, weight, styles, **kw)  # constant weight, gradients recorded: unfused
        with torch.no_grad():
            modulated_conv2d_sg3(x, weight, styles, **kw)  # rendering: NVIDIA's grouped form
        modulated_conv2d_sg3(x, weight.clone().requires_grad_(True), styles, **kw)  # weight gradient wanted
    assert seen == [1, 3, 3]
