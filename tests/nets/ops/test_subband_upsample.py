"""One grouped transposed convolution equals the op-by-op inverse wavelet step (float64, with gradients)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from latentkit.nets.ops.subband_upsample import compose_kernels, subband_upsample


def _up(x, k):  # depthwise transposed convolution with disjoint windows; k [C, kh, kw]
    return F.conv_transpose2d(x, k[:, None], stride=tuple(k.shape[1:]), groups=x.shape[1])


def _assert_same_values_and_gradients(ours, ref, base, g):
    """Equal outputs, and equal gradients w.r.t. ``base`` of a random linear functional of them."""
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    probe = torch.randn(ref.shape, dtype=torch.float64, generator=g)
    (ga,) = torch.autograd.grad((ours * probe).sum(), base)
    (gb,) = torch.autograd.grad((ref * probe).sum(), base)
    torch.testing.assert_close(ga, gb, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("inner_shape, outer_shape", [((2, 1), (1, 2)), ((1, 2), (2, 1)), ((1, 3), (2, 2))])
def test_equals_the_six_upsamplings_and_three_adds(inner_shape, outer_shape):
    g = torch.Generator().manual_seed(0)
    c = 3
    base = torch.randn(2, 4 * c, 5, 4, dtype=torch.float64, generator=g).requires_grad_(True)
    parts = [base[:, :c], *base[:, c:].reshape(2, c, 3, 5, 4).unbind(2)]  # views, as the IR splits them
    inner = [torch.randn(c, *inner_shape, dtype=torch.float64, generator=g) for _ in range(4)]
    outer = [torch.randn(c, *outer_shape, dtype=torch.float64, generator=g) for _ in range(2)]
    lo = _up(parts[0], inner[0]) + _up(parts[1], inner[1])
    hi = _up(parts[2], inner[2]) + _up(parts[3], inner[3])
    ref = _up(lo, outer[0]) + _up(hi, outer[1])
    ours = subband_upsample(parts, [compose_kernels(inner[q], outer[q // 2]) for q in range(4)])
    assert ours.shape == ref.shape == (2, c, 5 * inner_shape[0] * outer_shape[0], 4 * inner_shape[1] * outer_shape[1])
    _assert_same_values_and_gradients(ours, ref, base, g)


def test_composed_kernel_places_each_product():
    inner = torch.tensor([[[2.0], [3.0]]])  # [1, 2, 1]: rows
    outer = torch.tensor([[[5.0, 7.0]]])  # [1, 1, 2]: columns
    torch.testing.assert_close(compose_kernels(inner, outer), torch.tensor([[[10.0, 14.0], [15.0, 21.0]]]))


def test_reading_the_subbands_from_their_source_tensor():
    g = torch.Generator().manual_seed(1)
    c = 3
    base = torch.randn(2, 4 * c, 5, 4, dtype=torch.float64, generator=g).requires_grad_(True)
    parts = [base[:, :c], *base[:, c:].reshape(2, c, 3, 5, 4).unbind(2)]
    kernels = [torch.randn(c, 2, 2, dtype=torch.float64, generator=g) for _ in range(4)]
    channels = tuple(ch for k in range(c) for ch in (k, c + 3 * k, c + 3 * k + 1, c + 3 * k + 2))
    ours = subband_upsample(None, kernels, source=base, channels=channels)
    ref = subband_upsample(parts, kernels)
    _assert_same_values_and_gradients(ours, ref, base, g)


def test_any_channel_order_of_the_source():
    """A permutation that is not MobileStyleGAN's layout takes the general gather: the same result."""
    g = torch.Generator().manual_seed(2)
    c = 2
    base = torch.randn(1, 4 * c, 3, 3, dtype=torch.float64, generator=g).requires_grad_(True)
    channels = tuple(torch.randperm(4 * c, generator=g).tolist())
    parts = [base[:, [channels[k * 4 + q] for k in range(c)]] for q in range(4)]
    kernels = [torch.randn(c, 1, 2, dtype=torch.float64, generator=g) for _ in range(4)]
    torch.testing.assert_close(subband_upsample(None, kernels, source=base, channels=channels),
                               subband_upsample(parts, kernels), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("c, inner_shape, outer_shape", [(3, (2, 1), (1, 2)), (8, (2, 1), (1, 2)), (5, (1, 3), (2, 2))])
def test_one_kernel_for_every_channel_is_a_matrix_product(c, inner_shape, outer_shape):
    """A wavelet (the same kernels in every channel) takes the matrix-product path: the same values and
    gradients as the six transposed convolutions (square kernels through pixel_shuffle, others a copy)."""
    g = torch.Generator().manual_seed(3)
    base = torch.randn(2, 4 * c, 5, 4, dtype=torch.float64, generator=g).requires_grad_(True)
    parts = [base[:, :c], *base[:, c:].reshape(2, c, 3, 5, 4).unbind(2)]
    inner = [torch.randn(1, *inner_shape, dtype=torch.float64, generator=g).expand(c, -1, -1) for _ in range(4)]
    outer = [torch.randn(1, *outer_shape, dtype=torch.float64, generator=g).expand(c, -1, -1) for _ in range(2)]

    def reference():
        lo = _up(parts[0], inner[0]) + _up(parts[1], inner[1])
        hi = _up(parts[2], inner[2]) + _up(parts[3], inner[3])
        return _up(lo, outer[0]) + _up(hi, outer[1])

    kernels = [compose_kernels(inner[q], outer[q // 2]) for q in range(4)]
    ours = subband_upsample(parts, kernels)
    assert ours.shape == reference().shape
    _assert_same_values_and_gradients(ours, reference(), base, g)
    channels = tuple(ch for k in range(c) for ch in (k, c + 3 * k, c + 3 * k + 1, c + 3 * k + 2))
    from_source = subband_upsample(None, kernels, source=base, channels=channels)
    _assert_same_values_and_gradients(from_source, reference(), base, g)


@pytest.mark.parametrize("low, high, extra", [(0, 3, 0), (1, 5, 2), (9, 0, 1)])
def test_stacking_blocks_of_a_wider_source(low, high, extra):
    """MobileStyleGAN's block layout inside a source with channels no sub-band reads: those get a zero
    gradient, the others exactly the gradient of the general gather (gradcheck, float64)."""
    g = torch.Generator().manual_seed(4)
    c = 3
    base = torch.randn(2, 4 * c + extra, 3, 2, dtype=torch.float64, generator=g).requires_grad_(True)
    channels = tuple(ch for k in range(c) for ch in (low + k, high + 3 * k, high + 3 * k + 1, high + 3 * k + 2))
    parts = [base[:, [channels[k * 4 + q] for k in range(c)]] for q in range(4)]
    kernels = [torch.randn(c, 2, 1, dtype=torch.float64, generator=g) for _ in range(4)]
    ours = subband_upsample(None, kernels, source=base, channels=channels)
    (grad,) = torch.autograd.grad(ours.sum(), base, retain_graph=True)
    _assert_same_values_and_gradients(ours, subband_upsample(parts, kernels), base, g)
    unread = sorted(set(range(4 * c + extra)) - set(channels))
    assert len(unread) == extra and (grad[:, unread] == 0).all()
    assert torch.autograd.gradcheck(lambda x: subband_upsample(None, kernels, source=x, channels=channels), (base,))
