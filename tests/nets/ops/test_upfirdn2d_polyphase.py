"""Separable upfirdn2d (polyphase up, strided down) equals the zero-insertion path of the same 2-D filter."""

from __future__ import annotations

import itertools

import pytest
import torch

import importlib

from latentkit.nets.ops.upfirdn2d import upfirdn2d

upfirdn2d_module = importlib.import_module("latentkit.nets.ops.upfirdn2d")  # the package re-exports the function


@pytest.fixture(autouse=True)
def fast_paths(monkeypatch):
    """The 1-D filters take the polyphase / strided path; the 2-D ones the zero-insertion reference."""
    monkeypatch.setattr(upfirdn2d_module, "SEPARABLE_FAST_PATHS", True)


CASES = list(itertools.product([1, 2, 3, 4], [1, 2], [(0, 0, 0, 0), (5, 4, 5, 4), (3, 2, 1, 4), (-2, 3, 1, -1)], [4, 5, 12]))


@pytest.mark.parametrize("up, down, padding, taps", CASES)
@pytest.mark.parametrize("flip", [False, True])
def test_separable_equals_the_two_d_filter(up, down, padding, taps, flip):
    g = torch.Generator().manual_seed(taps * 7 + up)
    x = torch.randn(2, 3, 7, 6, generator=g, dtype=torch.float64)
    f = torch.randn(taps, generator=g, dtype=torch.float64)
    try:
        ref = upfirdn2d(x, f[:, None] * f[None, :], up=up, down=down, padding=padding, flip_filter=flip, gain=up * up)
    except Exception:  # an empty output is refused the same way by both paths
        with pytest.raises(Exception):
            upfirdn2d(x, f, up=up, down=down, padding=padding, flip_filter=flip, gain=up * up)
        return
    out = upfirdn2d(x, f, up=up, down=down, padding=padding, flip_filter=flip, gain=up * up)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)


def test_anisotropic_up_and_down():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 5, 9, generator=g, dtype=torch.float64)
    f = torch.randn(6, generator=g, dtype=torch.float64)
    for up, down in (((2, 1), 1), ((1, 3), (2, 1)), (1, (2, 3))):
        ref = upfirdn2d(x, f[:, None] * f[None, :], up=up, down=down, padding=(3, 2, 4, 1))
        torch.testing.assert_close(upfirdn2d(x, f, up=up, down=down, padding=(3, 2, 4, 1)), ref, rtol=1e-12, atol=1e-12)


def test_gradcheck_polyphase():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 2, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    f = torch.randn(5, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: upfirdn2d(t, f, up=2, down=1, padding=(3, 2, 3, 2)), (x,))
    assert torch.autograd.gradcheck(lambda t: upfirdn2d(t, f, up=1, down=2, padding=(2, 1, 2, 1)), (x,))
