"""Hostile OpenVINO IR and wheels: every bad input is a CheckpointError naming the layer, with bounded
memory, and a large IR is indexed in linear time."""

from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys
import textwrap
import zipfile
import zlib

import numpy as np
import pytest
import torch

from latentkit.errors import CheckpointError
from latentkit.load.openvino_ir import read_ir
from latentkit.nets.ir.program import IRProgram

from conftest import PEAK_RSS_KIB
from test_mobilestylegan import TinyIR, _write_wheel

# The worktree's package (not an installed one, whatever the current directory), single-threaded.
_SUBPROCESS_ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "OMP_NUM_THREADS": "1"}


def _chain_ir(n: int, *, dim: int = 4) -> tuple[bytes, bytes]:
    """Parameter -> n Add layers (each adding one shared constant) -> Result, written as text directly."""
    ports = lambda start: "".join(f'<port id="{start + k}" precision="FP32"><dim>1</dim><dim>{dim}</dim></port>' for k in range(1))
    layers = [f'<layer id="0" name="x" type="Parameter" version="opset1"><data shape="1,{dim}" element_type="f32"/>'
              f'<output>{ports(0)}</output></layer>',
              f'<layer id="1" name="c" type="Const" version="opset1"><data element_type="f32" shape="1,{dim}" '
              f'offset="0" size="{4 * dim}"/><output>{ports(0)}</output></layer>']
    edges = []
    prev, prev_port = 0, 0
    for k in range(n):
        lid = k + 2
        layers.append(f'<layer id="{lid}" name="add{k}" type="Add" version="opset1"><input>'
                      f'{ports(0)}{ports(1)}</input><output>{ports(2)}</output></layer>')
        edges.append(f'<edge from-layer="{prev}" from-port="{prev_port}" to-layer="{lid}" to-port="0"/>'
                     f'<edge from-layer="1" from-port="0" to-layer="{lid}" to-port="1"/>')
        prev, prev_port = lid, 2
    rid = n + 2
    layers.append(f'<layer id="{rid}" name="out" type="Result" version="opset1"><input>{ports(0)}</input></layer>')
    edges.append(f'<edge from-layer="{prev}" from-port="2" to-layer="{rid}" to-port="0"/>')
    xml = f'<?xml version="1.0" ?><net name="chain" version="11"><layers>{"".join(layers)}</layers><edges>{"".join(edges)}</edges></net>'
    return xml.encode(), np.full(dim, 0.5, dtype=np.float32).tobytes()


def test_a_12_mb_ir_is_indexed_and_runs():
    xml, blob = _chain_ir(30_000)
    assert len(xml) > 12_000_000
    program = IRProgram(read_ir(xml, blob))
    with torch.no_grad():
        out = program(torch.zeros(1, 4))
    torch.testing.assert_close(out, torch.full((1, 4), 0.5 * 30_000), rtol=0, atol=0)


def test_overlapping_constants_are_budgeted():
    ir = TinyIR()
    x = ir.param([1, 4])
    big = np.zeros(256 * 1024, dtype=np.float32)  # 1 MiB in the BIN
    ir.const(big)
    xml, blob = ir.bytes()
    text = xml.decode()
    const = text[text.index('<layer id="1"'):text.index("</layer>", text.index('<layer id="1"')) + 8]
    extra = "".join(const.replace('id="1"', f'id="{100 + k}"').replace('offset="0"', f'offset="{4 * k}"')
                    .replace(f'size="{big.nbytes}"', f'size="{big.nbytes - 4 * 1024}"')
                    .replace(f"<dim>{big.size}</dim>", f"<dim>{big.size - 1024}</dim>")
                    .replace(f'shape="{big.size}"', f'shape="{big.size - 1024}"') for k in range(1, 40))
    hostile = text.replace("</layers>", extra + "</layers>").encode()
    with pytest.raises(CheckpointError, match="overlapping byte ranges"):
        read_ir(hostile, blob)
    del x


def _conv_ir(data: str) -> tuple[bytes, bytes]:
    ir = TinyIR()
    x = ir.param([1, 1, 4, 4])
    w = ir.const(np.ones((1, 1, 3, 3)))
    ir.result(ir.op("Convolution", [x, w], [[1, 1, 2, 2]], data))
    return ir.bytes()


@pytest.mark.parametrize("data, match", [
    ('strides="a,b" dilations="1,1" pads_begin="0,0" pads_end="0,0"', "malformed attributes"),
    ('strides="0,1" dilations="1,1" pads_begin="0,0" pads_end="0,0"', r"strides=\[0, 1\]"),
    ('strides="1" dilations="1,1" pads_begin="0,0" pads_end="0,0"', "strides"),
    ('strides="1,1" dilations="1,1" pads_begin="-3,0" pads_end="0,0"', "pads_begin"),
])
def test_bad_attributes_name_the_layer(data, match):
    with pytest.raises(CheckpointError, match=rf"IR layer 2 \('Convolution2'.*{match}"):
        IRProgram(read_ir(*_conv_ir(data)))


def test_huge_port_dims_are_refused():
    xml, blob = _conv_ir('strides="1,1" dilations="1,1" pads_begin="0,0" pads_end="0,0"')
    with pytest.raises(CheckpointError, match=r"outside \[-1"):
        read_ir(xml.replace(b"<dim>4</dim>", b"<dim>10000000000</dim>", 1), blob)


def test_run_errors_name_the_layer():
    ir = TinyIR()
    x = ir.param([1, 4])
    ir.result(ir.op("MatMul", [x, ir.const(np.ones((3, 3)))], [[1, 3]], 'transpose_a="false" transpose_b="true"'))
    program = IRProgram(read_ir(*ir.bytes()))
    with pytest.raises(CheckpointError, match=r"IR layer 2 \(MatMul\) failed"):
        program(torch.zeros(1, 4))


_RSS_SCRIPT = PEAK_RSS_KIB + textwrap.dedent("""
    import resource, sys, warnings
    warnings.simplefilter("ignore")
    from latentkit.load.mobilestylegan import load_mobilestylegan
    G = load_mobilestylegan(sys.argv[1])
    print(G.provenance["license"][-80:].replace(" ", "_"), peak_rss_kib())
""")


def test_wheel_metadata_zip_bomb_is_never_inflated(tmp_path):
    wheel = _write_wheel(tmp_path / "random_face-2021.7.21.1-py3-none-any.whl")
    with zipfile.ZipFile(wheel, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for member in ("bomb.dist-info/METADATA", "bomb.dist-info/LICENSE"):
            with zf.open(member, "w", force_zip64=True) as fh:
                chunk = b"License: x\n" + bytes(64 << 20)
                for _ in range(8):  # 512 MiB each, a few MB on disk
                    fh.write(chunk)
    assert wheel.stat().st_size < 20 << 20
    out = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(wheel)], capture_output=True, text=True,
                         timeout=300, env=_SUBPROCESS_ENV)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.split()[-1]) < 1_000_000  # KiB: far below one inflated member


def test_corrupt_deflate_stream_is_a_checkpoint_error(tmp_path):
    from latentkit.load.mobilestylegan import load_mobilestylegan

    wheel = tmp_path / "w.whl"
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in ("MappingNetwork.xml", "MappingNetwork.bin", "SynthesisNetwork.xml", "SynthesisNetwork.bin"):
            zf.writestr(f"random_face/data/{name}", b"<net/>" * 1000)
    data = bytearray(wheel.read_bytes())
    start = data.index(zlib.compress(b"<net/>" * 1000)[2:12]) if False else 60
    data[start:start + 40] = b"\xff" * 40
    wheel.write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        load_mobilestylegan(wheel)
