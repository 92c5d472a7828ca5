"""Fusing MobileStyleGAN's layer chains changes no value: the tiny IR with and without fusion (float64)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "load"))
from test_mobilestylegan import tiny_synthesis  # noqa: E402

from latentkit.load.openvino_ir import read_ir  # noqa: E402
from latentkit.nets.ir.fuse import find_separable_modconvs, find_subband_upsamples  # noqa: E402
from latentkit.nets.ir.program import IRProgram  # noqa: E402


def _programs():
    graph = read_ir(*tiny_synthesis())
    return graph, IRProgram(graph).double(), IRProgram(graph, fuse=False).double()


def test_both_modulated_layers_of_the_tiny_ir_are_found():
    graph, fused, plain = _programs()
    matches = find_separable_modconvs(graph)
    assert [graph.layers[m.layers[-1]].type for m in matches] == ["PReLU", "Add"]
    assert set(matches[0].inputs) == {"x", "styles", "depthwise", "weight", "noise", "bias"}
    assert set(matches[1].inputs) == {"x", "styles", "weight", "bias"} and matches[1].slope is None
    (up,) = find_subband_upsamples(graph)  # the inverse Haar step: 6 up-samplings, 3 Adds
    assert sorted(graph.layers[lid].type for lid in up.layers).count("GroupConvolutionBackpropData") == 6
    # The four sub-bands are read straight from the tensor the two splits, the reshape and the squeezes view.
    assert set(up.inputs) == {"x"} | {f"inner{q}" for q in range(4)} | {"outer0", "outer1"}
    assert up.channels == (0, 3, 4, 5, 1, 6, 7, 8, 2, 9, 10, 11)  # (ll_c, lh_c, hl_c, hh_c) for c = 0, 1, 2
    assert up.shared_kernels  # Haar: the same kernels in every channel, decided once from the constants
    assert fused.fused_layers == 9 + 9 + 6 and len(fused._steps) == len(plain._steps) - 7 - 8 - 6


def test_fused_program_equals_the_op_by_op_program_with_gradients():
    _, fused, plain = _programs()
    w = torch.randn(3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64, requires_grad=True)
    a, b = fused(w), plain(w)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    (ga,) = torch.autograd.grad(a.square().sum(), w)
    (gb,) = torch.autograd.grad(b.square().sum(), w)
    torch.testing.assert_close(ga, gb, rtol=1e-10, atol=1e-12)


def test_kernels_that_differ_between_channels_take_the_convolution_path():
    graph = read_ir(*tiny_synthesis())
    (up,) = find_subband_upsamples(graph)
    layer = graph.layers[up.inputs["inner1"][1][0]]
    layer.value = layer.value.copy()
    layer.value[1] *= 3.0  # channel 1 of one kernel: no longer a wavelet
    (changed,) = find_subband_upsamples(graph)
    assert not changed.shared_kernels
    fused, plain = IRProgram(graph).double(), IRProgram(graph, fuse=False).double()
    w = torch.randn(2, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    torch.testing.assert_close(fused(w), plain(w), rtol=1e-12, atol=1e-12)


def test_replaced_noise_reaches_the_fused_layer():
    graph, fused, plain = _programs()
    (m,) = [m for m in find_separable_modconvs(graph) if "noise" in m.inputs]
    key = m.inputs["noise"][0]
    noise = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    w = torch.randn(2, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for value in (noise, torch.zeros((), dtype=torch.float64)):
        torch.testing.assert_close(fused(w, {key: value}), plain(w, {key: value}), rtol=1e-12, atol=1e-12)


def test_reused_buffers_never_leak_into_results():
    _, fused, _ = _programs()
    g = torch.Generator().manual_seed(3)
    w1, w2 = (torch.randn(2, 4, generator=g, dtype=torch.float64) for _ in range(2))
    with torch.no_grad():
        first = fused(w1)
        kept = first.clone()
        second = fused(w2)  # writes the same buffers again
        assert fused._workspace  # buffers are kept between calls
        torch.testing.assert_close(first, kept, rtol=0, atol=0)
        torch.testing.assert_close(fused(w1), kept, rtol=0, atol=0)
        fused.reuse_buffers = False
        torch.testing.assert_close(fused(w2), second, rtol=0, atol=0)
    fused.release_buffers()
    assert not fused._workspace
