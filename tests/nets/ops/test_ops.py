"""Tests of the pure-PyTorch ops: hand-computed cases, independent re-derivations and float64 gradcheck."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from latentkit.errors import InputError, LatentkitError, ShapeError
from latentkit.nets import ops


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# --------------------------------------------------------------------------------------------------
# upfirdn2d


def test_upfirdn2d_identity_without_filter():
    x = _rand(2, 3, 5, 6)
    assert torch.equal(ops.upfirdn2d(x, None), x)


def test_upfirdn2d_zero_insertion():
    x = torch.arange(1.0, 5.0).reshape(1, 1, 2, 2)
    y = ops.upfirdn2d(x, None, up=2)
    expected = torch.tensor([[1.0, 0, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]])
    assert torch.equal(y[0, 0], expected)


def test_upfirdn2d_is_convolution_unless_flip_filter():
    row = np.array([0.0, 1.0, 0.0, 2.0, -1.0])
    taps = np.array([1.0, 2.0, 5.0])
    x = torch.tensor(row).reshape(1, 1, 1, -1)
    f = torch.tensor(taps).reshape(1, -1)  # 2-D filter [1, 3]
    conv = ops.upfirdn2d(x, f, padding=(2, 0))[0, 0, 0].numpy()
    corr = ops.upfirdn2d(x, f, padding=(2, 0), flip_filter=True)[0, 0, 0].numpy()
    np.testing.assert_allclose(conv, np.convolve(row, taps))  # padding (px=2, py=0): the full convolution
    np.testing.assert_allclose(corr, np.correlate(np.pad(row, 2), taps, mode="valid"))


def test_upfirdn2d_negative_padding_crops():
    x = _rand(1, 2, 6, 6)
    y = ops.upfirdn2d(x, None, padding=(-1, -2, -2, 0))
    assert torch.equal(y, x[:, :, 2:, 1:4])


def test_upfirdn2d_separable_equals_outer_product_with_gain():
    x = _rand(2, 3, 7, 5)
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=torch.float64) / 8
    sep = ops.upfirdn2d(x, taps, up=2, down=1, padding=(2, 1), gain=4)
    full = ops.upfirdn2d(x, torch.outer(taps, taps), up=2, padding=(2, 1), gain=4)
    torch.testing.assert_close(sep, full, rtol=1e-12, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    up=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    down=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    pad=st.tuples(*[st.integers(-2, 3)] * 4),
    taps=st.lists(st.floats(-2, 2, allow_nan=False, width=32), min_size=1, max_size=5),
    gain=st.floats(0.5, 4),
)
def test_upfirdn2d_separable_matches_2d_and_size_formula(up, down, pad, taps, gain):
    f = torch.tensor(taps, dtype=torch.float64)
    h, w = 5, 6
    out_h = (h * up[1] + pad[2] + pad[3] - len(taps)) // down[1] + 1
    out_w = (w * up[0] + pad[0] + pad[1] - len(taps)) // down[0] + 1
    assume(out_h >= 1 and out_w >= 1)
    x = _rand(2, 2, h, w)
    sep = ops.upfirdn2d(x, f, up=up, down=down, padding=pad, gain=gain)
    full = ops.upfirdn2d(x, torch.outer(f, f), up=up, down=down, padding=pad, gain=gain)
    assert sep.shape == (2, 2, out_h, out_w)
    torch.testing.assert_close(sep, full, rtol=1e-10, atol=1e-10)


def test_upfirdn2d_gain_scales_by_gain_for_2d_filter():
    x = _rand(1, 1, 6, 6)
    f = ops.setup_filter([1, 3, 3, 1]).double()
    torch.testing.assert_close(ops.upfirdn2d(x, f, gain=4.0), 4 * ops.upfirdn2d(x, f))


def test_upfirdn2d_per_axis_factors_and_output_size():
    x = _rand(1, 1, 5, 7)
    f = torch.ones(3, 2, dtype=torch.float64)
    y = ops.upfirdn2d(x, f, up=(2, 1), down=(1, 3), padding=(1, 0, 2, 1))
    assert y.shape == (1, 1, (5 * 1 + 2 + 1 - 3) // 3 + 1, (7 * 2 + 1 + 0 - 2) // 1 + 1)


def test_upsample2d_preserves_constants():
    f = ops.setup_filter([1, 3, 3, 1]).double()
    x = torch.full((1, 1, 6, 6), 2.5, dtype=torch.float64)
    up = ops.upsample2d(x, f)
    assert up.shape == (1, 1, 12, 12)
    torch.testing.assert_close(up[..., 2:-2, 2:-2], torch.full((1, 1, 8, 8), 2.5, dtype=torch.float64))
    down = ops.upfirdn2d(torch.full((1, 1, 8, 8), 2.5, dtype=torch.float64), f, down=2, padding=1)
    assert down.shape == (1, 1, 4, 4)
    torch.testing.assert_close(down[..., 1:-1, 1:-1], torch.full((1, 1, 2, 2), 2.5, dtype=torch.float64))


def test_setup_filter_matches_nvidia_rules():
    f = ops.setup_filter([1, 3, 3, 1])
    assert f.shape == (4, 4) and f.dtype == torch.float32
    torch.testing.assert_close(f, torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])) / 64)
    assert ops.setup_filter(list(range(1, 9))).shape == (8,)  # 8+ taps stay separable
    torch.testing.assert_close(ops.setup_filter([1, 1], gain=4).sum(), torch.tensor(4.0))
    torch.testing.assert_close(ops.setup_filter([1, 1], gain=4, separable=True).sum(), torch.tensor(2.0))


def test_upfirdn2d_errors():
    with pytest.raises(ShapeError, match=r"x must have shape \[N, C, H, W\]"):
        ops.upfirdn2d(torch.zeros(3, 4, 4), None)
    with pytest.raises(ShapeError, match="f must be 1-D or 2-D"):
        ops.upfirdn2d(torch.zeros(1, 1, 4, 4), torch.ones(2, 2, 2))
    with pytest.raises(ShapeError, match="padding must be"):
        ops.upfirdn2d(torch.zeros(1, 1, 4, 4), None, padding=(1, 2, 3))
    with pytest.raises(ShapeError, match="up must be an int or a pair"):
        ops.upfirdn2d(torch.zeros(1, 1, 4, 4), None, up=(1, 2, 3))
    with pytest.raises(ShapeError, match="up and down must be >= 1"):
        ops.upfirdn2d(torch.zeros(1, 1, 4, 4), None, down=0)
    with pytest.raises(ShapeError, match="output would be empty"):
        ops.upfirdn2d(torch.zeros(1, 1, 2, 2), torch.ones(5, 5))
    with pytest.raises(ShapeError, match="taps must be"):
        ops.setup_filter(torch.ones(2, 2, 2))
    with pytest.raises(LatentkitError):
        ops.conv2d_resample(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 3))
    with pytest.raises(ShapeError, match="up and down must be ints"):
        ops.conv2d_resample(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 3, 3), up=0)


@pytest.mark.parametrize("up,down,taps", [(1, 1, [1, 3, 3, 1]), (2, 1, [1, 3, 3, 1]), (1, 2, [1, 2, 1]),
                                          (2, 2, list(range(1, 9)))])
def test_upfirdn2d_gradcheck(up, down, taps):
    x = _rand(1, 2, 5, 4).requires_grad_(True)
    f = ops.setup_filter(taps).double()
    assert torch.autograd.gradcheck(lambda t: ops.upfirdn2d(t, f, up=up, down=down, padding=(1, 2, 0, 1)), (x,))


# --------------------------------------------------------------------------------------------------
# bias_act, normalize_2nd_moment


def test_bias_act_lrelu_defaults_and_clamp_after_gain():
    x = torch.tensor([[-1.0, 0.5, 10.0]])
    y = ops.bias_act(x, act="lrelu")
    torch.testing.assert_close(y, torch.tensor([[-0.2 * math.sqrt(2), 0.5 * math.sqrt(2), 10 * math.sqrt(2)]]))
    clamped = ops.bias_act(x, act="lrelu", clamp=5.0)
    torch.testing.assert_close(clamped, torch.tensor([[-0.2 * math.sqrt(2), 0.5 * math.sqrt(2), 5.0]]))
    torch.testing.assert_close(ops.bias_act(x, act="lrelu", alpha=0.5, gain=1.0), torch.tensor([[-0.5, 0.5, 10.0]]))


@pytest.mark.parametrize("act,expected", [
    ("linear", lambda t: t), ("relu", lambda t: F.relu(t) * math.sqrt(2)), ("tanh", torch.tanh),
    ("sigmoid", torch.sigmoid), ("elu", F.elu), ("selu", F.selu), ("softplus", F.softplus),
    ("swish", lambda t: torch.sigmoid(t) * t * math.sqrt(2)),
])
def test_bias_act_table(act, expected):
    x, b = _rand(2, 3, 4), _rand(3, seed=1)
    torch.testing.assert_close(ops.bias_act(x, b, act=act), expected(x + b[None, :, None]))


@pytest.mark.parametrize("act, alpha, gain, clamp", [
    ("lrelu", None, None, 0.7), ("lrelu", 0.2, 1.0, 0.5), ("relu", None, None, None), ("lrelu", 1.0, 1.0, 0.6),
    ("lrelu", 0.3, 2.0, None),
])
def test_bias_act_scaled_leaky_relu_equals_the_op_chain_with_gradients(act, alpha, gain, clamp):
    """The one-buffer leaky ReLU + gain + clamp: the same values and first and second derivatives as
    ``clamp(func(x + b) * gain)`` (float64; inputs kept off the kinks and the clamp bounds)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, generator=g)
    x = torch.where(x.abs() < 0.05, x + 0.1, x).requires_grad_(True)
    b = (torch.randn(3, dtype=torch.float64, generator=g) * 0.01).requires_grad_(True)
    spec = ops.ACTIVATIONS[act]
    a = spec.alpha if alpha is None else alpha
    k = spec.gain if gain is None else gain

    def unclamped(x, b):
        return spec.func(x + b[None, :, None, None], a) * k

    def chain(x, b):
        return unclamped(x, b) if clamp is None else unclamped(x, b).clamp(-clamp, clamp)

    def fused(x, b):
        return ops.bias_act(x, b, act=act, alpha=alpha, gain=gain, clamp=clamp)

    ref = chain(x, b)
    if clamp is not None:  # off the bound, where the two differ on a set of measure zero; some clamped
        pre = unclamped(x, b).detach()
        assert ((pre.abs() - clamp).abs() > 1e-9).all() and (pre.abs() > clamp).any()
    torch.testing.assert_close(fused(x, b), ref, rtol=0, atol=0)
    probe = torch.randn(ref.shape, dtype=torch.float64, generator=g)
    ours = torch.autograd.grad((fused(x, b) * probe).sum(), (x, b))
    expected = torch.autograd.grad((ref * probe).sum(), (x, b))
    for u, v in zip(ours, expected, strict=True):
        torch.testing.assert_close(u, v, rtol=1e-14, atol=1e-14)
    assert torch.autograd.gradgradcheck(fused, (x, b))


def test_bias_act_bias_along_other_dim():
    x, b = _rand(2, 3, 4), _rand(4, seed=1)
    torch.testing.assert_close(ops.bias_act(x, b, dim=2), x + b)


def test_bias_act_errors():
    with pytest.raises(InputError, match="unknown act='gelu'"):
        ops.bias_act(torch.zeros(2, 3), act="gelu")
    with pytest.raises(ShapeError, match=r"b must have shape \[3\]"):
        ops.bias_act(torch.zeros(2, 3), torch.zeros(4))


def test_bias_act_gradcheck():
    x, b = _rand(2, 3, 4).requires_grad_(True), _rand(3, seed=1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t, u: ops.bias_act(t, u, act="lrelu", clamp=1.0), (x, b))


def test_normalize_2nd_moment():
    x = _rand(5, 16)
    y = ops.normalize_2nd_moment(x)
    torch.testing.assert_close(y.square().mean(1), torch.ones(5, dtype=torch.float64))
    torch.testing.assert_close(y, x / x.square().mean(1, keepdim=True).add(1e-8).sqrt())


# --------------------------------------------------------------------------------------------------
# modulated convolution


def _modconv_loop(x, weight, styles, demodulate, padding):
    """Independent per-sample reference: scale the kernel, demodulate, plain conv2d."""
    out = []
    for xi, si in zip(x, styles):
        w = weight * si[None, :, None, None]
        if demodulate:
            w = w / (w.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
        out.append(F.conv2d(xi[None], w, padding=padding))
    return torch.cat(out)


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("fused", [True, False])
def test_modulated_conv2d_matches_per_sample_loop(n, demodulate, fused):
    x, weight, styles = _rand(n, 4, 6, 6), _rand(5, 4, 3, 3, seed=1), _rand(n, 4, seed=2)
    noise = _rand(n, 1, 6, 6, seed=3)
    y = ops.modulated_conv2d(x, weight, styles, padding=1, demodulate=demodulate, fused_modconv=fused)
    ref = _modconv_loop(x, weight, styles, demodulate, padding=1)
    torch.testing.assert_close(y, ref)
    y_noise = ops.modulated_conv2d(x, weight, styles, noise=noise, padding=1, demodulate=demodulate,
                                   fused_modconv=fused)
    torch.testing.assert_close(y_noise, ref + noise)


@pytest.mark.parametrize("fused", [True, False])
def test_modulated_conv2d_upsampling_equals_upsample_then_convolve(fused):
    """Away from the borders, up=2 is the filtered upsampling followed by the (flipped) convolution."""
    x, weight, styles = _rand(2, 3, 5, 5), _rand(4, 3, 3, 3, seed=1), _rand(2, 3, seed=2)
    f = ops.setup_filter([1, 3, 3, 1]).double()
    y = ops.modulated_conv2d(x, weight, styles, up=2, padding=1, resample_filter=f, flip_weight=False,
                             fused_modconv=fused)
    assert y.shape == (2, 4, 10, 10)
    ref = _modconv_loop(ops.upsample2d(x, f), weight.flip([2, 3]), styles, True, padding=1)
    torch.testing.assert_close(y[..., 2:-2, 2:-2], ref[..., 2:-2, 2:-2])


def test_modulated_conv2d_shape_errors():
    with pytest.raises(ShapeError, match=r"styles \[2, 4\]"):
        ops.modulated_conv2d(torch.zeros(2, 4, 5, 5), torch.zeros(3, 4, 3, 3), torch.zeros(2, 5))
    with pytest.raises(ShapeError, match="weight \\[O, I, kh, kw\\]"):
        ops.modulated_conv2d(torch.zeros(2, 4, 5, 5), torch.zeros(3, 4, 3), torch.zeros(2, 4))


@pytest.mark.parametrize("up,fused", [(1, True), (2, True), (2, False)])
def test_modulated_conv2d_gradcheck(up, fused):
    x = _rand(2, 2, 4, 4).requires_grad_(True)
    weight = _rand(3, 2, 3, 3, seed=1).requires_grad_(True)
    styles = _rand(2, 2, seed=2).requires_grad_(True)
    f = ops.setup_filter([1, 3, 3, 1]).double()
    assert torch.autograd.gradcheck(
        lambda a, b, c: ops.modulated_conv2d(a, b, c, up=up, padding=1, resample_filter=f, flip_weight=up == 1,
                                             fused_modconv=fused),
        (x, weight, styles),
    )


def test_conv2d_resample_downsampling_paths_agree():
    """The strided fast path and the 1x1 fast path against filter-then-decimate-then-conv."""
    x, f = _rand(1, 3, 8, 8), ops.setup_filter([1, 3, 3, 1]).double()
    w3, w1 = _rand(2, 3, 3, 3, seed=1), _rand(2, 3, 1, 1, seed=2)
    y1 = ops.conv2d_resample(x, w1, f, down=2)
    torch.testing.assert_close(y1, F.conv2d(ops.upfirdn2d(x, f, down=2, padding=1), w1))  # NVIDIA's downsample2d padding for 4 taps
    y3 = ops.conv2d_resample(x, w3, f, down=2, padding=1)
    assert y3.shape == (1, 2, 4, 4)
    full = F.conv2d(ops.upfirdn2d(x, f, padding=2), w3)  # [1, 2, 7, 7]: filter, convolve, then decimate
    torch.testing.assert_close(y3, full[..., ::2, ::2])
