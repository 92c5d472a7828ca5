"""MobileStyleGAN from OpenVINO IR: the IR reader, the IR executor and the loader.

Fast tests build tiny IR models here (a 2-layer mapping network and a MobileStyleGAN-shaped synthesis
network with two modulated layers, stored noise and an inverse Haar transform made of transposed
convolutions) and compare with OpenVINO's own inference of the same bytes. Slow tests load the real
model (the random-face wheel, pip-downloaded once into ~/.cache/latentkit-tests) and compare with
OpenVINO at 1024x1024.
"""

from __future__ import annotations

import math
import os
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import roundoff_tolerance
import torch.nn.functional as F

from latentkit import hub
from latentkit.errors import CheckpointError, InputError, ShapeError, WeightsUnavailableError
from latentkit.load.mobilestylegan import IR_FILES, load_mobilestylegan
from latentkit.load.openvino_ir import read_ir, read_ir_files
from latentkit.nets.ir import ops as irp
from latentkit.nets.ir.program import IRProgram
from latentkit.nets.mobilestylegan import MobileStyleGAN

_PRECISION = {"f32": "FP32", "i64": "I64", "i32": "I32"}
_NP = {"f32": np.float32, "i64": np.int64, "i32": np.int32}


class TinyIR:
    """Writes OpenVINO IR v11 (.xml text and .bin bytes) layer by layer."""

    def __init__(self, name: str = "tiny") -> None:
        self.name, self.layers, self.edges, self.blob = name, [], [], bytearray()

    def _add(self, type_, name, inputs, outputs, data="", prec="FP32", version="opset1"):
        lid = len(self.layers)
        ins = "".join(
            f'<port id="{k}" precision="{p}">' + "".join(f"<dim>{d}</dim>" for d in dims) + "</port>"
            for k, (_, dims, p) in enumerate(inputs)
        )
        outs = "".join(
            f'<port id="{len(inputs) + k}" precision="{prec}">' + "".join(f"<dim>{d}</dim>" for d in dims) + "</port>"
            for k, dims in enumerate(outputs)
        )
        body = (f"<data {data}/>" if data else "") + (f"<input>{ins}</input>" if inputs else "")
        body += f"<output>{outs}</output>" if outputs else ""
        self.layers.append(f'<layer id="{lid}" name="{name}" type="{type_}" version="{version}">{body}</layer>')
        for k, (ref, _, _) in enumerate(inputs):
            self.edges.append((ref[0], ref[1], lid, k))
        return [(lid, len(inputs) + k, dims, prec) for k, dims in enumerate(outputs)]

    def param(self, dims):
        (out,) = self._add("Parameter", "x", [], [dims], f'shape="{",".join(map(str, dims))}" element_type="f32"')
        return out

    def const(self, value, etype="f32", name=None):
        value = np.asarray(value, dtype=_NP[etype])
        offset = len(self.blob)
        self.blob += value.tobytes()
        data = (f'element_type="{etype}" shape="{",".join(map(str, value.shape))}" offset="{offset}" '
                f'size="{value.nbytes}"')
        (out,) = self._add("Const", name or f"c{len(self.layers)}", [], [list(value.shape)], data, _PRECISION[etype])
        return out

    def op(self, type_, inputs, outputs, data="", prec="FP32", name=None):
        ins = [((r[0], r[1]), r[2], r[3]) for r in inputs]
        version = {"Broadcast": "opset3", "ShapeOf": "opset3", "Gather": "opset7"}.get(type_, "opset1")
        outs = self._add(type_, name or f"{type_}{len(self.layers)}", ins, outputs, data, prec, version)
        return outs if len(outs) != 1 else outs[0]

    def result(self, ref):
        self._add("Result", "out", [((ref[0], ref[1]), ref[2], ref[3])], [])

    def bytes(self) -> tuple[bytes, bytes]:
        edges = "".join(
            f'<edge from-layer="{a}" from-port="{b}" to-layer="{c}" to-port="{d}"/>' for a, b, c, d in self.edges
        )
        xml = (f'<?xml version="1.0" ?>\n<net name="{self.name}" version="11"><layers>{"".join(self.layers)}'
               f"</layers><edges>{edges}</edges></net>")
        return xml.encode(), bytes(self.blob)


def tiny_mapping(seed: int = 0, dim: int = 4, *, last="lrelu") -> tuple[bytes, bytes]:
    rng = np.random.RandomState(seed)
    ir = TinyIR("MappingNetwork")
    z = ir.param([1, dim])
    sq = ir.op("Power", [z, ir.const([[2.0]])], [[1, dim]])
    mean = ir.op("ReduceMean", [sq, ir.const([1], "i64")], [[1, 1]], 'keep_dims="true"')
    rs = ir.op("Power", [ir.op("Add", [mean, ir.const([[1e-8]])], [[1, 1]]), ir.const([[-0.5]])], [[1, 1]])
    x = ir.op("Multiply", [z, rs], [[1, dim]])
    for _ in range(2):
        x = ir.op("MatMul", [x, ir.const(rng.randn(dim, dim) / 2)], [[1, dim]],
                  'transpose_a="false" transpose_b="true"')
        x = ir.op("Add", [x, ir.const(rng.randn(1, dim) / 10)], [[1, dim]])
        if last == "lrelu":
            x = ir.op("PReLU", [x, ir.const([0.2])], [[1, dim]])
        x = ir.op("Multiply", [x, ir.const([[math.sqrt(2)]])], [[1, dim]])
    ir.result(x)
    return ir.bytes()


def _batch_shape(ir, p, tail):
    """Concat([batch of p], tail): the dynamic-shape idiom of the exported graph."""
    shape = ir.op("ShapeOf", [p], [[2]], 'output_type="i64"', "I64")
    n = ir.op("Gather", [shape, ir.const(0, "i32"), ir.const(0, "i64")], [[]], 'batch_dims="0"', "I64")
    n = ir.op("Unsqueeze", [n, ir.const([0], "i64")], [[1]], prec="I64")
    return ir.op("Concat", [n, ir.const(tail, "i64")], [[1 + len(tail)]], 'axis="0"', "I64")


def _modulate(ir, p, x, rng, channels, dims, name):
    a = ir.op("MatMul", [p, ir.const(rng.randn(channels, 4), name=f"m.{name}.modulation.weight")], [[1, channels]],
              'transpose_a="false" transpose_b="true"')
    a = ir.op("Add", [a, ir.const(1 + rng.randn(1, channels) / 10)], [[1, channels]])
    a = ir.op("Reshape", [a, _batch_shape(ir, p, [-1, 1, 1])], [[1, channels, 1, 1]], 'special_zero="true"')
    a = ir.op("Multiply", [a, ir.const(np.full((1, 1, 1, 1), 0.5))], [[1, channels, 1, 1]])
    return ir.op("Multiply", [a, x], [dims])


def tiny_synthesis(seed: int = 1) -> tuple[bytes, bytes]:
    """w [1, 4] -> two modulated layers at 4x4 -> 12 wavelet channels -> inverse Haar -> [1, 3, 8, 8]."""
    rng = np.random.RandomState(seed)
    ir = TinyIR("SynthesisNetwork")
    p = ir.param([1, 4])
    const_in = ir.op("Broadcast", [ir.const(rng.randn(1, 2, 4, 4)), ir.const([1, 1, 1, 1], "i64")], [[1, 2, 4, 4]],
                     'mode="bidirectional"')
    x = ir.op("Tile", [const_in, _batch_shape(ir, p, [1, 1, 1])], [[1, 2, 4, 4]])
    x = _modulate(ir, p, x, rng, 2, [1, 2, 4, 4], "conv1.conv")
    x = ir.op("GroupConvolution", [x, ir.const(rng.randn(2, 1, 1, 3, 3))], [[1, 2, 4, 4]],
              'strides="1,1" pads_begin="1,1" pads_end="1,1" dilations="1,1" auto_pad="explicit"')
    x = ir.op("Convolution", [x, ir.const(rng.randn(3, 2, 1, 1))], [[1, 3, 4, 4]],
              'strides="1,1" pads_begin="0,0" pads_end="0,0" dilations="1,1" auto_pad="explicit"')
    x = ir.op("Add", [x, ir.const(0.3 * rng.randn(1, 1, 4, 4))], [[1, 3, 4, 4]])  # noise * strength
    x = ir.op("Add", [x, ir.const(rng.randn(1, 3, 1, 1) / 10)], [[1, 3, 4, 4]])
    x = ir.op("PReLU", [x, ir.const([0.2])], [[1, 3, 4, 4]])
    x = _modulate(ir, p, x, rng, 3, [1, 3, 4, 4], "to_img.conv")
    x = ir.op("Convolution", [x, ir.const(rng.randn(12, 3, 1, 1))], [[1, 12, 4, 4]],
              'strides="1,1" pads_begin="0,0" pads_end="0,0" dilations="1,1" auto_pad="explicit"')
    x = ir.op("Add", [x, ir.const(rng.randn(1, 12, 1, 1) / 10)], [[1, 12, 4, 4]])
    low, high = ir.op("VariadicSplit", [x, ir.const(1, "i64"), ir.const([3, 9], "i64")], [[1, 3, 4, 4], [1, 9, 4, 4]])
    high = ir.op("Reshape", [high, _batch_shape(ir, p, [3, 3, 4, 4])], [[1, 3, 3, 4, 4]], 'special_zero="true"')
    parts = ir.op("VariadicSplit", [high, ir.const(2, "i64"), ir.const([1, 1, 1], "i64")], [[1, 3, 1, 4, 4]] * 3)
    h1, h2, h3 = (ir.op("Squeeze", [t, ir.const([2], "i64")], [[1, 3, 4, 4]]) for t in parts)
    s = 1 / math.sqrt(2)

    def up(t, k, strides, dims):
        return ir.op("GroupConvolutionBackpropData", [t, ir.const(np.tile(np.asarray(k, np.float32), (3, 1, 1, 1, 1)))],
                     [dims], f'strides="{strides}" pads_begin="0,0" pads_end="0,0" dilations="1,1" auto_pad="explicit" '
                     'output_padding="0,0"')

    lo_v, hi_v = [[[[s], [s]]]], [[[[s], [-s]]]]  # [1, 1, 2, 1]
    lo_h, hi_h = [[[[s, s]]]], [[[[s, -s]]]]  # [1, 1, 1, 2]
    a = ir.op("Add", [up(low, lo_v, "2,1", [1, 3, 8, 4]), up(h1, hi_v, "2,1", [1, 3, 8, 4])], [[1, 3, 8, 4]])
    b = ir.op("Add", [up(h2, lo_v, "2,1", [1, 3, 8, 4]), up(h3, hi_v, "2,1", [1, 3, 8, 4])], [[1, 3, 8, 4]])
    img = ir.op("Add", [up(a, lo_h, "1,2", [1, 3, 8, 8]), up(b, hi_h, "1,2", [1, 3, 8, 8])], [[1, 3, 8, 8]])
    ir.result(img)
    return ir.bytes()


def tiny_generator() -> MobileStyleGAN:
    return MobileStyleGAN(read_ir(*tiny_mapping()), read_ir(*tiny_synthesis())).eval().requires_grad_(False)


def _openvino(xml: bytes, weights: bytes):
    ov = pytest.importorskip("openvino")
    core = ov.Core()
    compiled = core.compile_model(core.read_model(xml, weights), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return lambda x: np.asarray(compiled([x])[0])


def _write_wheel(path: Path, mapping=None, synthesis=None, *, skip: str = "") -> Path:
    mapping, synthesis = mapping or tiny_mapping(), synthesis or tiny_synthesis()
    data = dict(zip(IR_FILES, (*mapping, *synthesis), strict=True))
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in data.items():
            if name != skip:
                zf.writestr(f"random_face/data/{name}", content)
        zf.writestr("random_face-2021.7.21.1.dist-info/METADATA", "Metadata-Version: 2.1\nName: random-face\n"
                    "Version: 2021.7.21.1\nLicense: UNKNOWN\n")
        zf.writestr("random_face-2021.7.21.1.dist-info/LICENSE", "\n  Apache License\n  Version 2.0\n")
    return path


# --------------------------------------------------------------------------------------------------
# The IR reader.


def test_read_ir_parses_layers_edges_and_constants():
    graph = read_ir(*tiny_mapping())
    assert graph.name == "MappingNetwork" and graph.version == "11"
    order = [layer.type for layer in graph.topological_order()]
    assert order[0] == "Parameter" and order[-1] == "Result"
    matmuls = graph.of_type("MatMul")
    weight = graph.layers[graph.producers(matmuls[0].id)[1][0]]
    expected = (np.random.RandomState(0).randn(4, 4) / 2).astype(np.float32)
    np.testing.assert_array_equal(weight.value, expected)
    assert not weight.value.flags.writeable
    assert graph.layers[graph.producers(graph.of_type("ReduceMean")[0].id)[1][0]].value.dtype == np.int64


def test_read_ir_files_reads_the_bin_beside_the_xml(tmp_path):
    xml, weights = tiny_mapping()
    (tmp_path / "m.xml").write_bytes(xml)
    (tmp_path / "m.bin").write_bytes(weights)
    assert len(read_ir_files(tmp_path / "m.xml").layers) == len(read_ir(xml, weights).layers)
    (tmp_path / "m.bin").unlink()
    with pytest.raises(CheckpointError, match="not found"):
        read_ir_files(tmp_path / "m.xml")


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda x, b: (b'<?xml version="1.0"?><!DOCTYPE net [<!ENTITY a "aaaa">]><net version="11">&a;</net>', b),
         "DTD"),
        (lambda x, b: (x[:-10], b), "malformed XML"),
        (lambda x, b: (b"\xff\xfe<net/>", b), "not UTF-8"),
        (lambda x, b: (x.replace(b"<net ", b"<model ").replace(b"</net>", b"</model>"), b), "expected <net>"),
        (lambda x, b: (x.replace(b'version="11"', b'version="7"', 1), b), "IR version"),
        (lambda x, b: (x, b[:20]), "outside the .bin"),
        (lambda x, b: (x.replace(b'size="64"', b'size="60"', 1), b), "needs 64 bytes"),
        (lambda x, b: (x.replace(b'element_type="f32" shape="4,4"', b'element_type="q4" shape="4,4"', 1), b),
         "unsupported constant element_type"),
        (lambda x, b: (x.replace(b'from-layer="0"', b'from-layer="999"', 1), b), "does not exist"),
        (lambda x, b: (x.replace(b'to-port="1"/>', b'to-port="7"/>', 1), b), "port that does not exist"),
        (lambda x, b: (x.replace(b'<layer id="2"', b'<layer id="1"', 1), b), "duplicate layer id"),
    ],
)
def test_read_ir_rejects_malformed_or_hostile_files(mutate, match):
    with pytest.raises(CheckpointError, match=match):
        read_ir(*mutate(*tiny_mapping()))


def test_read_ir_rejects_unconnected_inputs_and_cycles():
    xml, weights = tiny_mapping()
    first_edge = xml.index(b"<edge ")
    unconnected = xml[:first_edge] + xml[xml.index(b"/>", first_edge) + 2:]
    with pytest.raises(CheckpointError, match="not connected"):
        read_ir(unconnected, weights)
    graph = read_ir(xml, weights)
    graph.edges.append(type(graph.edges[0])(graph.of_type("Result")[0].id, 0, 0, 0))
    with pytest.raises(CheckpointError, match="cycle"):
        graph.topological_order()


# --------------------------------------------------------------------------------------------------
# The executor and the generator, against OpenVINO and against the math.


def test_mapping_matches_openvino_and_the_formula():
    xml, weights = tiny_mapping()
    G = tiny_generator()
    z = np.random.RandomState(5).randn(6, 4).astype(np.float32)
    ours = G.map_latent(torch.from_numpy(z), torch.zeros(6, 0)).numpy()
    ref = np.concatenate([_openvino(xml, weights)(z[i:i + 1]) for i in range(6)])
    np.testing.assert_allclose(ours, ref, atol=1e-6, rtol=0)
    rng = np.random.RandomState(0)
    x = torch.from_numpy(z) * (torch.from_numpy(z).square().mean(1, keepdim=True) + 1e-8).rsqrt()
    for _ in range(2):
        weight, bias = (torch.from_numpy((rng.randn(4, 4) / 2).astype(np.float32)),
                        torch.from_numpy((rng.randn(1, 4) / 10).astype(np.float32)))
        x = F.leaky_relu(x @ weight.T + bias, 0.2) * math.sqrt(2)
    np.testing.assert_allclose(ours, x.numpy(), atol=1e-5, rtol=1e-5)


def test_generator_attributes_come_from_the_graphs():
    G = tiny_generator()
    assert (G.z_dim, G.w_dim, G.c_dim, G.num_ws, G.img_resolution, G.img_channels) == (4, 4, 0, 2, 8, 3)
    assert G.architecture == "mobilestylegan"
    assert G.ws_layers == ("conv1.conv", "to_img.conv")
    assert G.mapping_activation.slope == pytest.approx(0.2) and G.mapping_activation.gain == pytest.approx(math.sqrt(2))
    info = G.info()
    assert info["distilled"] is True and "leaky_relu(x, 0.2)" in info["mapping_last_activation"]
    assert info["ws_layers"] == ["conv1.conv", "to_img.conv"]


@pytest.mark.parametrize("n", [1, 3])
def test_synthesis_matches_openvino_for_every_sample(n):
    xml, weights = tiny_synthesis()
    G = tiny_generator()
    w = torch.randn(n, 4, generator=torch.Generator().manual_seed(n))
    img = G.synthesis(w.unsqueeze(1).repeat(1, G.num_ws, 1))
    assert img.shape == (n, 3, 8, 8)
    run = _openvino(xml, weights)
    ref = np.concatenate([run(w[i:i + 1].numpy()) for i in range(n)])
    np.testing.assert_allclose(img.numpy(), ref, atol=1e-5, rtol=0)


def test_w_plus_rows_feed_separate_layers():
    G = tiny_generator()
    ws = torch.randn(2, 2, 4, generator=torch.Generator().manual_seed(0))
    base = G.synthesis(ws)
    for row in range(G.num_ws):
        moved = ws.clone()
        moved[:, row] += 1.0
        assert not torch.allclose(G.synthesis(moved), base)
    same = ws[:, :1].repeat(1, 2, 1)
    torch.testing.assert_close(G(torch.zeros(2, 4)), G.synthesis(G.mapping(torch.zeros(2, 4))))
    whole = G.synthesis(same)
    torch.testing.assert_close(whole[1:], G.synthesis(same[1:]), rtol=0, atol=roundoff_tolerance(whole, 64))


def test_synthesis_is_differentiable_in_ws():
    G = tiny_generator()
    ws = torch.randn(1, 2, 4, generator=torch.Generator().manual_seed(1), requires_grad=True)
    G.synthesis(ws).square().sum().backward()
    assert ws.grad is not None and bool((ws.grad.abs().sum(dim=2) > 0).all())


def test_noise_modes_and_explicit_noise():
    G = tiny_generator()
    ws = torch.randn(2, 2, 4, generator=torch.Generator().manual_seed(2))
    stored = G.const_noise()
    assert list(stored) == ["noise0"] and stored["noise0"].shape == (1, 1, 4, 4)
    assert float(stored["noise0"].std(correction=0)) == pytest.approx(1.0, rel=1e-4)
    const = G.synthesis(ws, noise_mode="const")
    torch.testing.assert_close(G.synthesis(ws, noise=stored), const, rtol=0, atol=1e-5)
    none = G.synthesis(ws, noise_mode="none")
    torch.testing.assert_close(G.synthesis(ws, noise={"noise0": torch.zeros(1, 1, 4, 4)}), none)
    assert not torch.allclose(none, const)
    assert G.synthesis(ws, noise_mode="random").shape == (2, 3, 8, 8)


def test_synthesis_errors():
    G = tiny_generator()
    ws = torch.zeros(2, 2, 4)
    with pytest.raises(ShapeError, match="ws must have shape"):
        G.synthesis(torch.zeros(2, 3, 4))
    with pytest.raises(InputError, match="noise_mode must be one of"):
        G.synthesis(ws, noise_mode="fixed")
    with pytest.raises(InputError, match="unknown keys"):
        G.synthesis(ws, noise={"noise9": torch.zeros(1, 1, 4, 4)})
    with pytest.raises(ShapeError, match="noise\\['noise0'\\]"):
        G.synthesis(ws, noise={"noise0": torch.zeros(3, 1, 4, 4)})
    with pytest.raises(InputError, match="num_samples must be >= 1"):
        G.estimate_w_avg(0)


def test_estimate_w_avg_is_seeded_and_batch_independent():
    G = tiny_generator()
    a = G.estimate_w_avg(1000, seed=3, batch_size=1000).clone()
    b = G.estimate_w_avg(1000, seed=3, batch_size=300).clone()
    torch.testing.assert_close(a, b, rtol=0, atol=roundoff_tolerance(a, 64))
    z = torch.randn(1000, 4, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, G.map_latent(z, z[:, :0]).double().mean(0).float(), rtol=0, atol=roundoff_tolerance(a, 64))


def test_executor_refuses_unknown_ops_and_non_lrelu_mapping():
    xml, weights = tiny_mapping()
    with pytest.raises(CheckpointError, match="cannot execute: \\['Sigmoid'\\]"):
        IRProgram(read_ir(xml.replace(b'type="PReLU"', b'type="Sigmoid"'), weights))
    with pytest.raises(CheckpointError, match="not gain \\* leaky_relu"):
        MobileStyleGAN(read_ir(*tiny_mapping(last="linear")), read_ir(*tiny_synthesis()))


def test_disjoint_transposed_convolution_fast_path_is_exact_and_differentiable():
    attrs = {"grouped": True, "disjoint": True, "strides": (2, 1), "dilations": (1, 1), "pads_begin": (0, 0),
             "pads_end": (0, 0), "output_padding": (0, 0)}
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 1, 1, 2, 1, dtype=torch.float64, requires_grad=True)
    fast = irp._conv_transpose(attrs, [x, w])[0]
    slow = irp._conv_transpose({**attrs, "disjoint": False}, [x, w])[0]
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-12)
    torch.testing.assert_close(fast, F.conv_transpose2d(x, w.reshape(3, 1, 2, 1), stride=(2, 1), groups=3))
    assert torch.autograd.gradcheck(lambda a, b: irp._conv_transpose(attrs, [a, b])[0], (x, w))


def test_shape_ops_follow_openvino_semantics():
    x = torch.arange(24.0).reshape(2, 3, 4)
    assert irp._reshape({"special_zero": True}, [x, torch.tensor([0, -1])])[0].shape == (2, 12)
    assert irp._tile({}, [x, torch.tensor([2, 1])])[0].shape == (2, 6, 4)
    assert irp._broadcast({"mode": "numpy"}, [torch.tensor([1]), torch.tensor([3])])[0].tolist() == [1, 1, 1]
    assert irp._gather({}, [torch.tensor([5, 6, 7]), torch.tensor(-1), torch.tensor(0)])[0].tolist() == 7
    assert [t.shape[1] for t in irp._variadic_split({}, [x, torch.tensor(1), torch.tensor([1, -1])])] == [1, 2]
    assert irp._squeeze({}, [torch.zeros(1, 3, 1)])[0].shape == (3,)
    y = torch.tensor([[[-1.0, 2.0]], [[-3.0, 4.0]]]).reshape(1, 2, 1, 2)  # channel 0: [-1, 2], channel 1: [-3, 4]
    per_channel = irp._prelu({}, [y, torch.tensor([0.5, 0.1])])[0]
    assert per_channel.flatten().tolist() == pytest.approx([-0.5, 2.0, -0.3, 4.0])
    assert irp._prelu({"slope": 0.2}, [y, torch.tensor([0.2])])[0].flatten().tolist() == pytest.approx(
        [-0.2, 2.0, -0.6, 4.0])


# --------------------------------------------------------------------------------------------------
# The loader.


def test_load_from_wheel_folder_and_xml_agree_and_cache_w_avg(tmp_path, monkeypatch):
    wheel = _write_wheel(tmp_path / "random_face-2021.7.21.1-py3-none-any.whl")
    monkeypatch.setattr(MobileStyleGAN, "estimate_w_avg", lambda self, n, *, seed=0, batch_size=4096: (
        self.w_avg.copy_(torch.arange(4.0)), setattr(self, "w_avg_source", "test"))[0])
    G = load_mobilestylegan(wheel)
    assert G.sha256 == hub.file_sha256(wheel) and G.source == str(wheel)
    assert "non-commercial" in G.info()["license"] and "Apache License" in G.info()["license"]
    assert "random-face 2021.7.21.1" in G.info()["package"]
    cached = list(hub.cache_dir("w_avg").glob("mobilestylegan-*.npy"))
    assert len(cached) == 1 and np.load(cached[0]).tolist() == [0.0, 1.0, 2.0, 3.0]

    monkeypatch.setattr(MobileStyleGAN, "estimate_w_avg", lambda *a, **k: pytest.fail("w_avg not read from cache"))
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(tmp_path / "unpacked")
    for source in (tmp_path / "unpacked", tmp_path / "unpacked" / "random_face" / "data" / "MappingNetwork.xml"):
        H = load_mobilestylegan(source)
        assert H.w_avg.tolist() == [0.0, 1.0, 2.0, 3.0]
        assert H.sha256 == G.info()["ir_sha256"]
        z = torch.randn(2, 4, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(H(z), G(z), rtol=0, atol=0)


def test_load_errors(tmp_path):
    with pytest.raises(InputError, match="source not found"):
        load_mobilestylegan(tmp_path / "nothing.whl")
    wheel = _write_wheel(tmp_path / "partial.whl", skip="SynthesisNetwork.bin")
    with pytest.raises(CheckpointError, match="lacks .*SynthesisNetwork.bin"):
        load_mobilestylegan(wheel)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no MobileStyleGAN IR files"):
        load_mobilestylegan(tmp_path / "empty")
    broken = _write_wheel(tmp_path / "broken.whl", mapping=(tiny_mapping()[0], b"\0" * 8))
    with pytest.raises(CheckpointError, match="outside the .bin"):
        load_mobilestylegan(broken)


def test_pip_failure_gives_the_manual_command(monkeypatch):
    def failing_pip(requirement, dest):
        raise subprocess.CalledProcessError(1, ["pip"], stderr=b"ERROR: No matching distribution found")

    monkeypatch.setattr(hub, "_run_pip", failing_pip)
    with pytest.raises(WeightsUnavailableError, match="pip download --no-deps .*random-face==2021.7.21.1 -d .*weights"):
        load_mobilestylegan()


def test_pip_download_goes_to_the_cache(tmp_path, monkeypatch):
    calls = []

    def fake_pip(requirement, dest):
        calls.append(requirement)
        _write_wheel(Path(dest) / "random_face-2021.7.21.1-py3-none-any.whl")

    monkeypatch.setattr(hub, "_run_pip", fake_pip)
    monkeypatch.setitem(hub.REGISTRY, "mobilestylegan-ffhq",
                        hub.REGISTRY["mobilestylegan-ffhq"].__class__(**{**vars(hub.REGISTRY["mobilestylegan-ffhq"]),
                                                                         "sha256": ""}))
    G = load_mobilestylegan("mobilestylegan-ffhq")
    assert calls == ["random-face==2021.7.21.1"] and G.source == "mobilestylegan-ffhq"
    assert hub.weights_path("mobilestylegan-ffhq").is_file()
    load_mobilestylegan()
    assert len(calls) == 1


# --------------------------------------------------------------------------------------------------
# The real model (slow): exactness against OpenVINO at 1024x1024.

PERSISTENT_CACHE = Path(os.environ.get("LATENTKIT_TEST_CACHE", "~/.cache/latentkit-tests")).expanduser()


@pytest.fixture(scope="module")
def real():
    """The real generator (wheel pip-downloaded once into a persistent cache) and OpenVINO's compiled IR."""
    ov = pytest.importorskip("openvino")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LATENTKIT_CACHE", str(PERSISTENT_CACHE))
        G = load_mobilestylegan()
        wheel = hub.weights_path("mobilestylegan-ffhq")
    with zipfile.ZipFile(wheel) as zf:
        files = {name: zf.read("random_face/data/" + name) for name in IR_FILES}
    core = ov.Core()

    def compile_(stem):
        model = core.read_model(files[stem + ".xml"], files[stem + ".bin"])
        return core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})

    return G, compile_("MappingNetwork"), compile_("SynthesisNetwork")


@pytest.mark.slow
def test_real_mapping_matches_openvino(real):
    G, mapping, _ = real
    z = np.random.RandomState(123).randn(32, 512).astype(np.float32)
    ref = np.concatenate([mapping([z[i:i + 1]])[0] for i in range(32)])
    ours = G.map_latent(torch.from_numpy(z), torch.zeros(32, 0)).numpy()
    assert np.abs(ours - ref).max() < 1e-5
    assert G.num_ws == 23 and G.img_resolution == 1024 and G.z_dim == G.w_dim == 512
    assert G.mapping_activation.slope == pytest.approx(0.2) and G.mapping_activation.gain == pytest.approx(math.sqrt(2))


@pytest.mark.slow
def test_real_images_match_openvino_and_w_plus_equal_rows_reproduce_them(real):
    G, mapping, synthesis = real
    z = np.random.RandomState(7).randn(3, 512).astype(np.float32)
    w = np.concatenate([mapping([z[i:i + 1]])[0] for i in range(3)])
    ref = np.concatenate([synthesis([w[i:i + 1]])[0] for i in range(3)])
    with torch.no_grad():
        ws = torch.from_numpy(w).unsqueeze(1).repeat(1, G.num_ws, 1)  # [3, 23, 512], all rows equal
        img = G.synthesis(ws).numpy()
    assert img.shape == (3, 3, 1024, 1024)
    assert np.abs(img - ref).max() < 1e-3


@pytest.mark.slow
def test_real_w_plus_rows_follow_the_network_and_all_get_gradients(real):
    G, _, _ = real
    expected = ["conv1.conv"] + [f"layers.{i}.{part}" for i in range(7) for part in ("up", "conv1.conv", "conv2.conv")]
    assert list(G.ws_layers) == expected + ["layers.6.to_img.conv"]
    ws = G.w_avg.expand(1, G.num_ws, -1).clone().requires_grad_(True)
    G.synthesis(ws).mean().backward()
    assert bool((ws.grad.abs().sum(dim=2) > 0).all())
    assert "non-commercial" in G.info()["license"] and G.info()["distilled"] is True
