"""The restricted unpickler reads every NVIDIA-family reference pickle as data, bit for bit."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from latentkit.errors import CheckpointError
from latentkit.load.safe_pickle import ModuleRecord, loads_network_pickle, read_network_pickle

from conftest import REFERENCE_NETS

MANIFEST = json.loads((REFERENCE_NETS / "MANIFEST.json").read_text())
PICKLES = [f for f in MANIFEST["files"] if f["checkpoint"].endswith(".pkl")]


@pytest.mark.parametrize("entry", PICKLES, ids=lambda f: f["name"])
def test_state_dict_keys_and_shapes_match_the_original(entry):
    data = read_network_pickle(REFERENCE_NETS / entry["checkpoint"])
    assert list(data) == entry["top_level_keys"]
    g_ema = data["G_ema"]
    assert isinstance(g_ema, ModuleRecord) and g_ema.class_name == "Generator"
    state = g_ema.state_dict()
    expected = entry["G_ema_state_dict"]
    assert list(state) == [name for name, _ in expected]
    assert [list(t.shape) for t in state.values()] == [shape for _, shape in expected]
    assert all(t.dtype == torch.float32 for t in state.values())


@pytest.mark.parametrize("entry", PICKLES, ids=lambda f: f["name"])
def test_tensors_and_numpy_attributes_are_exact(entry):
    g_ema = read_network_pickle(REFERENCE_NETS / entry["checkpoint"])["G_ema"]
    ref = np.load(REFERENCE_NETS / entry["reference"])
    np.testing.assert_array_equal(g_ema["mapping"].buffers["w_avg"].numpy(), ref["w_avg"])
    # numpy float64 scalars come back as Python floats
    fc0 = g_ema["mapping.fc0"]
    assert isinstance(fc0.attr("weight_gain"), float)
    assert fc0.attr("missing", 7) == 7
    with pytest.raises(CheckpointError, match="no attribute 'missing'"):
        fc0.attr("missing")
    with pytest.raises(CheckpointError, match="no child 'nope'"):
        g_ema["mapping.nope"]


def test_constructor_kwargs_are_plain_dicts():
    g_ema = read_network_pickle(REFERENCE_NETS / "sg2ada_uncond_map8_res32.pkl")["G_ema"]
    kwargs = g_ema.init_kwargs
    assert type(kwargs["synthesis_kwargs"]) is dict
    assert kwargs["synthesis_kwargs"]["conv_clamp"] == 256


def test_xl_plain_embedding_and_cuda_tagged_storages_load_on_cpu():
    data = read_network_pickle(REFERENCE_NETS / "sgxl_cond_t_res16.pkl")
    embed = data["G_ema"]["mapping.embed"]
    assert embed.class_name == "torch.nn.modules.sparse.Embedding"
    assert list(embed.parameters["weight"].shape) == [1000, 320]
    assert data["D"] is None
    assert data["progress"]["cur_nimg"].dtype == torch.int64


def test_refuses_unknown_global_and_names_it():
    payload = pickle.dumps({"x": __import__("fractions").Fraction(1, 3)}, protocol=4)
    with pytest.raises(CheckpointError, match="refused global fractions.Fraction"):
        loads_network_pickle(payload)


@pytest.mark.parametrize("data, match", [(b"", "not a pickle"), (b"hello", "not a pickle"),
                                          (pickle.dumps({"a": 1})[:-3], "truncated")])
def test_garbage_is_a_checkpoint_error(data, match):
    with pytest.raises(CheckpointError, match=match):
        loads_network_pickle(data)


def test_truncated_reference_file(tmp_path):
    source = (REFERENCE_NETS / "sg3t_uncond_res32.pkl").read_bytes()
    path = tmp_path / "cut.pkl"
    path.write_bytes(source[: len(source) // 2])
    with pytest.raises(CheckpointError, match="truncated|corrupt"):
        read_network_pickle(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_network_pickle(tmp_path / "nope.pkl")


def test_protocol_2_spellings_are_mapped():
    data = pickle.dumps({"s": {1, 2}, "o": __import__("collections").OrderedDict(a=1)}, protocol=2)
    assert b"__builtin__" in data
    loaded = loads_network_pickle(data)
    assert loaded["s"] == {1, 2} and loaded["o"] == {"a": 1}
