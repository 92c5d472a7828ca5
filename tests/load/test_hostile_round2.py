"""The first round's leftovers: network records claiming a class or activation that is not a generator's,
and an IR constant whose shape multiplies to zero times a huge dimension."""

from __future__ import annotations

import pytest

from latentkit.errors import CheckpointError
from latentkit.load import load_generator
from latentkit.load.openvino_ir import read_ir

from conftest import REFERENCE_NETS


@pytest.mark.parametrize("old, new, match", [
    (b"ToRGBLayer", b"breakpoint", "not a class of a StyleGAN generator"),
    (b"MappingNetwork", b"__import__xxxx", "not a class of a StyleGAN generator"),
    (b"lrelu", b"print", "activation is 'print'"),
], ids=["callable-name", "import-name", "unknown-activation"])
def test_records_of_other_classes_or_activations_are_refused(tmp_path, old, new, match):
    data = (REFERENCE_NETS / "sg2ada_uncond_map8_res32.pkl").read_bytes()
    assert old in data and len(old) == len(new)
    path = tmp_path / "forged.pkl"
    path.write_bytes(data.replace(old, new))
    with pytest.raises(CheckpointError, match=match):
        load_generator(path)


@pytest.mark.parametrize("shape", ["0,100000000000000000000", "0,16777217"])
def test_an_empty_constant_with_a_huge_dimension_is_refused(shape):
    xml = ('<?xml version="1.0" ?><net name="n" version="11"><layers>'
           f'<layer id="0" name="c" type="Const" version="opset1"><data element_type="f32" shape="{shape}" offset="0" '
           'size="0"/><output><port id="0" precision="FP32"><dim>1</dim></port></output></layer>'
           '</layers><edges></edges></net>')
    with pytest.raises(CheckpointError, match="dimension outside"):
        read_ir(xml.encode(), b"")
