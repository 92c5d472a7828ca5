"""StyleGAN3 (T, R) and StyleGAN-XL pickles: rebuilt networks reproduce the original code's outputs.

Criterion (reference-nets README, section 5): ``max |ours - ref| <= 1e-5 * max(1, max |ref|)``.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from latentkit.errors import CheckpointError, InputError, ShapeError
from latentkit.load.nvidia_stylegan3 import build_stylegan3, build_stylegan_xl, translate_key
from latentkit.load.safe_pickle import read_network_pickle

REFERENCE_NETS = Path(__file__).resolve().parents[1] / "data" / "reference-nets"
PSI = {"1": 1.0, "07": 0.7}

FILES = {
    "sg3t_uncond_res32": ("stylegan3-t", build_stylegan3),
    "sg3r_cond_res32": ("stylegan3-r", build_stylegan3),
    "sgxl_cond_t_res16": ("stylegan-xl", build_stylegan_xl),
}


def _record(name: str):
    return read_network_pickle(REFERENCE_NETS / f"{name}.pkl")["G_ema"]


@pytest.fixture(scope="module")
def nets():
    """name -> (generator, reference arrays); built once per module."""
    out = {}
    for name, (_, build) in FILES.items():
        with np.load(REFERENCE_NETS / f"{name}.npz", allow_pickle=False) as ref:
            out[name] = (build(_record(name)), {k: ref[k] for k in ref.files})
    return out


def _labels(G, ref):
    return torch.from_numpy(ref["c"]) if G.c_dim > 0 else None


def _assert_close(ours: torch.Tensor, ref: np.ndarray, what: str) -> None:
    tol = 1e-5 * max(1.0, float(np.abs(ref).max()))
    err = float(np.abs(ours.detach().cpu().numpy() - ref).max())
    assert ours.shape == ref.shape, f"{what}: shape {list(ours.shape)} != {list(ref.shape)}"
    assert err <= tol, f"{what}: max abs error {err:.3g} > tolerance {tol:.3g}"


@pytest.mark.parametrize("name", FILES)
def test_attributes(nets, name):
    G, ref = nets[name]
    assert G.architecture == FILES[name][0]
    assert (G.z_dim, G.w_dim, G.num_ws) == (ref["z"].shape[1], ref["ws_psi1"].shape[2], ref["ws_psi1"].shape[1])
    assert G.c_dim == ref["c"].shape[1]
    assert (G.img_resolution, G.img_channels) == (ref["img_G_psi1"].shape[2], 3)
    assert G.const_noise() == {}
    assert not any(p.requires_grad for p in G.parameters())


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("psi_key", [("ws_psi1", 1.0), ("ws_psi07", 0.7)])
def test_mapping_matches_reference(nets, name, psi_key):
    G, ref = nets[name]
    key, psi = psi_key
    with torch.no_grad():
        ws = G.mapping(torch.from_numpy(ref["z"]), _labels(G, ref), truncation_psi=psi)
    _assert_close(ws, ref[key], f"{name} {key}")


@pytest.mark.parametrize("name", FILES)
def test_last_preactivation_and_buffers(nets, name):
    G, ref = nets[name]
    z, c = torch.from_numpy(ref["z"]), _labels(G, ref)
    with torch.no_grad():
        pre = G.last_preactivation(z, c)
        w = G.map_latent(z, G.prepare_labels(c, z.shape[0]))
    _assert_close(pre, ref["mapping_last_preact"], f"{name} mapping_last_preact")
    act = G.mapping_activation
    assert torch.equal(act.gain * torch.nn.functional.leaky_relu(pre, act.slope), w)
    _assert_close(G.w_avg, ref["w_avg"], f"{name} w_avg")
    _assert_close(G.synthesis_net.input.transform, ref["input_transform"], f"{name} input_transform")


@pytest.mark.parametrize("name", FILES)
def test_synthesis_input_matches_reference(nets, name):
    G, ref = nets[name]
    with torch.no_grad():
        x = G.synthesis_net.input(torch.from_numpy(ref["ws_psi1"][:, 0]))
    _assert_close(x[:1, :8], ref["synthesis_input_out_sample0_first8ch"], f"{name} synthesis input")


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("psi", PSI)
def test_images_match_reference(nets, name, psi):
    G, ref = nets[name]
    with torch.no_grad():
        img_synth = G.synthesis(torch.from_numpy(ref[f"ws_psi{psi}"]), noise_mode="const")
        img_g = G(torch.from_numpy(ref["z"]), _labels(G, ref), truncation_psi=PSI[psi])
    _assert_close(img_synth, ref[f"img_synth_psi{psi}"], f"{name} img_synth_psi{psi}")
    _assert_close(img_g, ref[f"img_G_psi{psi}"], f"{name} img_G_psi{psi}")


@pytest.mark.parametrize("name", FILES)
def test_w_broadcast_equals_w_plus_with_equal_rows(nets, name):
    G, ref = nets[name]
    z, c = torch.from_numpy(ref["z"]), _labels(G, ref)
    with torch.no_grad():
        ws = G.mapping(z, c)
        w = G.map_latent(z, G.prepare_labels(c, z.shape[0]))
        broadcast = G.synthesis(w.unsqueeze(1).expand(-1, G.num_ws, -1))
        img = G.synthesis(ws)
    assert torch.equal(ws, w.unsqueeze(1).expand_as(ws))
    assert torch.equal(broadcast, img)


@pytest.mark.parametrize("name", FILES)
def test_batch_size_independence(nets, name):
    """Per-sample rendering agrees with the batch up to the style-RMS epsilon effect (~5e-7, README 11)."""
    G, ref = nets[name]
    ws = torch.from_numpy(ref["ws_psi1"])
    with torch.no_grad():
        batch = G.synthesis(ws)
        single = torch.cat([G.synthesis(ws[i : i + 1]) for i in range(ws.shape[0])])
    assert float((batch - single).abs().max()) <= 1e-6


@pytest.mark.parametrize("noise_mode", ["const", "random", "none"])
def test_noise_mode_has_no_effect(nets, noise_mode):
    G, ref = nets["sg3t_uncond_res32"]
    ws = torch.from_numpy(ref["ws_psi1"][:1])
    with torch.no_grad():
        assert torch.equal(G.synthesis(ws, noise_mode=noise_mode), G.synthesis(ws))


def test_synthesis_errors(nets):
    G, ref = nets["sg3t_uncond_res32"]
    ws = torch.from_numpy(ref["ws_psi1"])
    with pytest.raises(InputError, match="noise_mode must be one of"):
        G.synthesis(ws, noise_mode="fixed")
    with pytest.raises(InputError, match="has no noise inputs"):
        G.synthesis(ws, noise={"b4.conv1": torch.zeros(1, 1, 4, 4)})
    with pytest.raises(ShapeError, match="ws must have shape"):
        G.synthesis(ws[:, :-1])
    with pytest.raises(ShapeError, match="z must have shape"):
        G.last_preactivation(torch.zeros(2, 3))


def test_xl_per_class_truncation(nets):
    """Truncation pulls each sample towards the w_avg row of its own class (argmax of c)."""
    G, ref = nets["sgxl_cond_t_res16"]
    z, c = torch.from_numpy(ref["z"]), torch.from_numpy(ref["c"])
    labels = torch.from_numpy(ref["labels"])
    assert G.w_avg.shape == (G.c_dim, G.w_dim)
    with torch.no_grad():
        w = G.mapping(z, c)
        ws0 = G.mapping(z, c, truncation_psi=0.0)
    assert torch.equal(ws0, G.w_avg[labels].unsqueeze(1).expand_as(w))
    assert G.info()["per_class_w_avg"] is True
    assert G.info()["class_embedding"] == [1000, 320]
    assert G.info()["superres_head_layers"] == []


def test_xl_class_embedding_uses_argmax(nets):
    G, ref = nets["sgxl_cond_t_res16"]
    z = torch.from_numpy(ref["z"][:2])
    soft = torch.tensor([[0.1, 0.7, 0.2] + [0.0] * 7, [0.3, 0.2, 0.5] + [0.0] * 7])
    hard = torch.nn.functional.one_hot(soft.argmax(1), G.c_dim).float()
    with torch.no_grad():
        assert torch.equal(G.mapping(z, soft), G.mapping(z, hard))


def test_xl_superres_stage_records_head_layers():
    """A SuperresGenerator record loads the same way; the layers its stage added are listed."""
    record = _record("sgxl_cond_t_res16")
    record.class_name = "SuperresGenerator"
    record.state["head_layer_names"] = ["L9_16_16", "L10_16_3"]
    G = build_stylegan_xl(record)
    assert G.head_layer_names == ("L9_16_16", "L10_16_3")


def test_translate_key():
    assert translate_key("mapping.w_avg") == "w_avg"
    assert translate_key("mapping.fc0.weight") == "mapping_net.fc0.weight"
    assert translate_key("synthesis.input.freqs") == "synthesis_net.input.freqs"
    assert translate_key("synthesis.L0_36_32.up_filter") == "synthesis_net.layers.L0_36_32.up_filter"


def test_strict_loading_missing_tensor():
    record = _record("sg3t_uncond_res32")
    del record["synthesis.L0_36_32"].state["_buffers"]["magnitude_ema"]
    with pytest.raises(CheckpointError, match=r"missing tensor for 'synthesis_net\.layers\.L0_36_32\.magnitude_ema'"):
        build_stylegan3(record)


def test_strict_loading_unexpected_tensor():
    record = _record("sg3t_uncond_res32")
    record["synthesis.L3_36_32"].state["_buffers"]["up_filter16"] = torch.zeros(12)
    with pytest.raises(CheckpointError, match=r"unexpected tensor 'synthesis\.L3_36_32\.up_filter16'"):
        build_stylegan3(record)


def test_strict_loading_wrong_shape():
    record = _record("sg3r_cond_res32")
    record["synthesis.L2_36_64"].state["_buffers"]["down_filter"] = torch.zeros(12)  # radial: [12, 12]
    with pytest.raises(CheckpointError, match=r"'synthesis\.L2_36_64\.down_filter' has shape \[12\].*\[12, 12\]"):
        build_stylegan3(record)


def test_wrong_builder_and_wrong_layer_class():
    with pytest.raises(CheckpointError, match="not a StyleGAN-XL generator"):
        build_stylegan_xl(_record("sg3t_uncond_res32"))
    record = _record("sg3t_uncond_res32")
    record["synthesis.L1_36_32"].class_name = "SynthesisBlock"
    with pytest.raises(CheckpointError, match=r"G_ema\.synthesis\.L1_36_32 is a 'SynthesisBlock'"):
        build_stylegan3(record)
    record = _record("sg3t_uncond_res32")
    record.state["num_ws"] = 17
    with pytest.raises(CheckpointError, match="num_ws is 17"):
        build_stylegan3(record)


def test_build_stylegan3_hands_xl_records_to_the_xl_builder():
    assert build_stylegan3(_record("sgxl_cond_t_res16")).architecture == "stylegan-xl"


@pytest.mark.parametrize("name", FILES)
def test_load_generator_dispatch(name):
    import latentkit

    G = latentkit.load_generator(REFERENCE_NETS / f"{name}.pkl")
    assert G.architecture == FILES[name][0]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", FILES)
def test_cuda_matches_reference_and_fp16_is_close(nets, name):
    G, ref = nets[name]
    G = copy.deepcopy(G).to("cuda")
    ws = torch.from_numpy(ref["ws_psi1"]).cuda()
    with torch.no_grad():
        _assert_close(G.synthesis(ws).cpu(), ref["img_synth_psi1"], f"{name} cuda")
        G.fp16 = True
        try:
            half = G.synthesis(ws).cpu()
        finally:
            G.fp16 = False
    assert half.dtype == torch.float32
    assert math.isfinite(float(half.abs().max()))
    assert float((half - torch.from_numpy(ref["img_synth_psi1"])).abs().max()) < 0.05
