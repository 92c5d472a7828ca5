"""The fused separable modulated convolution equals its op-by-op definition (float64), with gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from latentkit.nets.ops.separable_modconv import separable_modconv


def _reference(x, s, weight, bias, depthwise, padding, noise, slope):
    y = x * s
    if depthwise is not None:
        y = F.conv2d(y, depthwise, padding=padding, groups=x.shape[1])
    y = F.conv2d(y, weight)
    if noise is not None:
        y = y + noise
    if bias is not None:
        y = y + bias
    return y if slope is None else F.leaky_relu(y, slope)


def _inputs(n, ns, nn, seed=0, c=3, c_out=4):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, 5, 6, generator=g, dtype=torch.float64)
    s = torch.randn(ns, c, 1, 1, generator=g, dtype=torch.float64)
    weight = torch.randn(c_out, c, 1, 1, generator=g, dtype=torch.float64)
    bias = torch.randn(1, c_out, 1, 1, generator=g, dtype=torch.float64)
    depthwise = torch.randn(c, 1, 3, 3, generator=g, dtype=torch.float64)
    noise = torch.randn(nn, 1, 5, 6, generator=g, dtype=torch.float64)
    return x, s, weight, bias, depthwise, noise


@pytest.mark.parametrize("n, ns, nn", [(1, 1, 1), (3, 3, 1), (3, 1, 3), (1, 2, 1), (2, 2, 2)])
@pytest.mark.parametrize("with_dw, with_noise, with_bias, slope", [
    (True, True, True, 0.2), (False, False, True, None), (True, False, False, 0.2), (False, True, False, None),
])
def test_matches_the_op_by_op_definition(n, ns, nn, with_dw, with_noise, with_bias, slope):
    x, s, weight, bias, dw, noise = _inputs(n, ns, nn)
    kw = dict(bias=bias if with_bias else None, depthwise=dw if with_dw else None, padding=(1, 1),
              noise=noise if with_noise else None, slope=slope)
    ref = _reference(x, s, weight, kw["bias"], kw["depthwise"], kw["padding"], kw["noise"], slope)
    out = separable_modconv(x, s, weight, **kw)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    buf = torch.full((max(n, ns), 5, 6, 4), float("nan"), dtype=torch.float64)  # a reused buffer is overwritten
    with torch.no_grad():
        torch.testing.assert_close(separable_modconv(x, s, weight, out=buf, **kw), ref, rtol=1e-12, atol=1e-12)


def test_scalar_noise_is_added_to_the_bias():
    x, s, weight, bias, dw, _ = _inputs(2, 2, 1)
    zero = torch.zeros((), dtype=torch.float64)
    torch.testing.assert_close(separable_modconv(x, s, weight, bias, depthwise=dw, padding=(1, 1), noise=zero),
                               _reference(x, s, weight, bias, dw, (1, 1), None, None), rtol=1e-12, atol=1e-12)


def test_gradcheck_in_every_input():
    x, s, weight, bias, dw, noise = (t.requires_grad_(True) for t in _inputs(2, 2, 2, seed=1))

    def fn(x, s, weight, bias, dw, noise):
        return separable_modconv(x, s, weight, bias, depthwise=dw, padding=(1, 1), noise=noise, slope=0.2)

    assert torch.autograd.gradcheck(fn, (x, s, weight, bias, dw, noise))


@pytest.mark.parametrize("n, ns, nn", [(1, 1, 1), (3, 3, 1), (3, 1, 3), (1, 2, 1), (2, 2, 2)])
@pytest.mark.parametrize("with_dw, with_noise, with_bias, slope", [
    (True, True, True, 0.2), (False, False, True, None), (True, False, False, 0.2), (False, True, False, None),
])
@pytest.mark.parametrize("c, c_out", [(3, 4), (9, 2)])  # the second: the few-outputs (to-image) backward
def test_style_gradient_without_weight_gradient(n, ns, nn, with_dw, with_noise, with_bias, slope, c, c_out):
    """Constant weights (a loaded network) take the backward pass that skips the weight gradient."""
    x, s, weight, bias, dw, noise = _inputs(n, ns, nn, seed=2, c=c, c_out=c_out)
    inputs = [x, s] + ([bias] if with_bias else []) + ([noise] if with_noise else [])
    for t in inputs:
        t.requires_grad_(True)

    def fn(x, s, *rest):
        rest = list(rest)
        b = rest.pop(0) if with_bias else None
        nz = rest.pop(0) if with_noise else None
        return separable_modconv(x, s, weight, b, depthwise=dw if with_dw else None, padding=(1, 1), noise=nz,
                                 slope=slope)

    assert torch.autograd.gradcheck(fn, tuple(inputs))
    # The same gradients as autograd through the op-by-op definition.
    probe = torch.randn(max(n, ns), c_out, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    ours = torch.autograd.grad((fn(*inputs) * probe).sum(), inputs)
    ref = _reference(x, s, weight, bias if with_bias else None, dw if with_dw else None, (1, 1),
                     noise if with_noise else None, slope)
    expected = torch.autograd.grad((ref * probe).sum(), inputs)
    for a, b in zip(ours, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
