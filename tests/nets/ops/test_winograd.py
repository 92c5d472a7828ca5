"""Winograd F(4x4, 3x3): the same convolution as ``F.conv2d(padding=1)``, gradients included; LPIPS uses it
only in float32 on the CPU."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from latentkit.nets.ops.winograd import _Tiles, winograd_conv3x3, winograd_filter
from latentkit.projection.lpips import WINOGRAD_MIN_CHANNELS, PerceptualLoss

EPS64 = torch.finfo(torch.float64).eps


@pytest.mark.parametrize("shape", [(1, 3, 8, 8), (2, 5, 7, 9), (1, 4, 1, 13), (3, 2, 4, 5)])
def test_equals_the_direct_convolution_in_float64(shape):
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    w = torch.randn(6, shape[1], 3, 3, generator=g, dtype=torch.float64)
    b = torch.randn(6, generator=g, dtype=torch.float64)
    want = F.conv2d(x, w, b, padding=1)
    got = winograd_conv3x3(x, winograd_filter(w), b)
    assert got.shape == want.shape
    # The transforms' entries are at most 8 and 1/4..1/24: a few hundred ulps of the operands' scale.
    scale = float(x.abs().max() * w.abs().sum(dim=(1, 2, 3)).max())
    torch.testing.assert_close(got, want, rtol=0, atol=1e3 * EPS64 * scale)
    torch.testing.assert_close(winograd_conv3x3(x, winograd_filter(w)), F.conv2d(x, w, padding=1),
                               rtol=0, atol=1e3 * EPS64 * scale)


def test_gradients_match_autograd_of_the_direct_convolution():
    x = torch.randn(2, 3, 6, 11, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    u = winograd_filter(w)
    assert torch.autograd.gradcheck(lambda t: winograd_conv3x3(t, u), (x,))
    assert torch.autograd.gradcheck(lambda t: _Tiles.apply(t), (torch.randn(1, 14, 10, 2, dtype=torch.float64,
                                                                            requires_grad=True),))
    seed = torch.randn(2, 4, 6, 11, dtype=torch.float64)
    (ours,) = torch.autograd.grad((winograd_conv3x3(x, u) * seed).sum(), x)
    (theirs,) = torch.autograd.grad((F.conv2d(x, w, padding=1) * seed).sum(), x)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e4 * EPS64 * float(theirs.abs().max()))


def test_bad_filter_is_refused():
    with pytest.raises(ValueError, match=r"\[K, C, 3, 3\]"):
        winograd_filter(torch.zeros(4, 3, 5, 5))
    with pytest.raises(ValueError, match="does not fit an input of 2 channels"):
        winograd_conv3x3(torch.zeros(1, 2, 8, 8), winograd_filter(torch.zeros(4, 3, 3, 3)))


def _seeded_loss() -> PerceptualLoss:
    torch.manual_seed(0)  # the test's own weights, not the library's
    net = PerceptualLoss()
    for layer in net.trunk.features:
        if isinstance(layer, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(layer.weight)
    for head in net.heads:
        head.uniform_(0, 1)
    return net


def test_lpips_deep_layers_agree_with_direct_convolutions_and_float64_never_uses_them(monkeypatch):
    net = _seeded_loss()
    g = torch.Generator().manual_seed(1)
    a, b = (torch.rand(2, 3, 64, 64, generator=g) * 2 - 1 for _ in range(2))
    net.trunk.fast_convolutions = False
    direct = net(a, b)
    net.trunk.fast_convolutions = True
    calls = []
    import latentkit.projection.lpips as lpips_module

    real = lpips_module.winograd_conv3x3
    monkeypatch.setattr(lpips_module, "winograd_conv3x3", lambda *args: calls.append(args[1].shape) or real(*args))
    fast = net(a, b)
    deep = [m for m in net.trunk.features if isinstance(m, torch.nn.Conv2d) and m.out_channels >= WINOGRAD_MIN_CHANNELS]
    assert len(calls) == 2 * len(deep) == 2 * 9  # conv3_1 .. conv5_3, for each of the two images
    # Both are float32 evaluations of one function; LPIPS distances of unrelated images are O(1).
    torch.testing.assert_close(fast, direct, rtol=1e-4, atol=1e-5)
    calls.clear()
    net.double()(a.double(), b.double())
    assert not calls  # float64 (PPL's default) stays on direct convolutions


def test_lpips_filters_follow_new_weights():
    net = _seeded_loss()
    a, b = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    before = net(a, b)
    with torch.no_grad():
        for layer in net.trunk.features:
            if isinstance(layer, torch.nn.Conv2d):
                layer.weight.mul_(-1.5)  # in place: the cached transformed filters are now stale
    after = net(a, b)
    net.trunk.fast_convolutions = False
    torch.testing.assert_close(after, net(a, b), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(before, after)
