"""filtered_lrelu: semantics against direct computations, output sizes, float64 gradcheck, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal
import torch

from latentkit.errors import ShapeError
from latentkit.nets.ops.filtered_lrelu import filtered_lrelu, filtered_lrelu_output_size
from latentkit.nets.ops.upfirdn2d import parse_padding


def _lowpass(taps: int) -> torch.Tensor:
    f = torch.from_numpy(scipy.signal.firwin(taps, 0.25)).float()
    return f / f.sum()


def test_no_filters_is_biased_scaled_clamped_lrelu():
    g = torch.Generator().manual_seed(0)
    x, b = torch.randn(2, 3, 5, 5, generator=g), torch.randn(3, generator=g)
    out = filtered_lrelu(x, b=b, gain=1.7, slope=0.3, clamp=1.1)
    expected = (torch.nn.functional.leaky_relu(x + b[:, None, None], 0.3) * 1.7).clamp(-1.1, 1.1)
    assert torch.equal(out, expected)


def test_down_filter_is_a_true_convolution_then_decimation():
    """Single 2-D down filter, no upsampling: scipy's 'valid' convolution, every 2nd sample."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 2, 12, 12, generator=g, dtype=torch.float64)
    fd = torch.rand(4, 3, generator=g, dtype=torch.float64)
    out = filtered_lrelu(x, fd=fd, down=2, gain=1.0, slope=1.0)
    for ch in range(2):
        ref = scipy.signal.convolve2d(x[0, ch].numpy(), fd.numpy(), mode="valid")[::2, ::2]
        np.testing.assert_allclose(out[0, ch].numpy(), ref, rtol=0, atol=1e-12)


def test_up_filter_keeps_a_constant_signal():
    """Zero insertion with gain up**2 and a DC-normalised filter preserves a constant (inside the border)."""
    x = torch.full([1, 1, 8, 8], 0.5, dtype=torch.float64)
    f = _lowpass(8).double()
    out = filtered_lrelu(x, fu=f, up=2, padding=0, gain=1.0, slope=1.0)
    inner = out[0, 0, 4:-4, 4:-4]
    assert torch.allclose(inner, torch.full_like(inner, 0.5), atol=1e-12)


@pytest.mark.parametrize(
    ("in_size", "up", "down", "padding", "fu_taps", "fd_taps"),
    [((36, 36), 2, 2, (9, 8, 9, 8), 12, 12), ((36, 36), 2, 4, (10, 9, 10, 9), 12, 24), ((16, 20), 1, 1, 0, 1, 1)],
)
def test_output_size_matches_the_result(in_size, up, down, padding, fu_taps, fd_taps):
    x = torch.randn(1, 2, *in_size)
    fu = _lowpass(fu_taps) if fu_taps > 1 else None
    fd = _lowpass(fd_taps) if fd_taps > 1 else None
    out = filtered_lrelu(x, fu, fd, up=up, down=down, padding=padding)
    predicted = filtered_lrelu_output_size(in_size, fu_size=(fu_taps, fu_taps), fd_size=(fd_taps, fd_taps),
                                           up=up, down=down, padding=padding)
    assert tuple(out.shape[2:]) == predicted


def test_radial_and_separable_filters_agree_for_an_outer_product():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 10, 10, generator=g, dtype=torch.float64)
    f = _lowpass(12).double()
    sep = filtered_lrelu(x, f, f, up=2, down=2, padding=(11, 10, 11, 10))
    full = filtered_lrelu(x, f, torch.outer(f, f), up=2, down=2, padding=(11, 10, 11, 10))
    assert torch.allclose(sep, full, atol=1e-12)


@pytest.mark.parametrize("radial", [False, True])
def test_gradcheck_float64(radial):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 2, 6, 6, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, generator=g, dtype=torch.float64, requires_grad=True)
    fu = _lowpass(8).double()
    fd = torch.outer(fu, fu) if radial else fu

    def op(x, b):
        return filtered_lrelu(x, fu, fd, b, up=2, down=2, padding=(7, 6, 7, 6), gain=math.sqrt(2), slope=0.2,
                              clamp=100.0)

    assert torch.autograd.gradcheck(op, (x, b), eps=1e-6, atol=1e-5)


def test_parse_padding_forms():
    assert parse_padding(3) == (3, 3, 3, 3)
    assert parse_padding([1, 2]) == (1, 1, 2, 2)
    assert parse_padding((1, 2, 3, 4)) == (1, 2, 3, 4)


def test_errors():
    x = torch.zeros(1, 2, 8, 8)
    with pytest.raises(ShapeError, match=r"x must be a \[N, C, H, W\]"):
        filtered_lrelu(torch.zeros(2, 8, 8))
    with pytest.raises(ShapeError, match=r"b must have shape \[2\]"):
        filtered_lrelu(x, b=torch.zeros(3))
    with pytest.raises(ShapeError, match="fu must be"):
        filtered_lrelu(x, fu=torch.zeros(2, 2, 2))
    with pytest.raises(ValueError, match="up and down must be integers >= 1"):
        filtered_lrelu(x, up=0)
    with pytest.raises(ValueError, match="gain must be positive"):
        filtered_lrelu(x, gain=0.0)
    with pytest.raises(ValueError, match="slope must be >= 0"):
        filtered_lrelu(x, slope=-0.1)
    with pytest.raises(ValueError, match="clamp must be >= 0"):
        filtered_lrelu(x, clamp=-1.0)
    with pytest.raises(ShapeError, match="padding must be an int"):
        filtered_lrelu(x, padding=(1, 2, 3))
    with pytest.raises(ShapeError, match="would be empty"):
        filtered_lrelu(x, fd=torch.ones(12) / 12)
