"""StyleGAN2 pickles (stylegan2-ada-pytorch and the stylegan3 repo) against the original code's outputs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_matches_reference, reference_arrays

from latentkit.errors import CheckpointError, InputError, ShapeError
from latentkit.load.nvidia_stylegan2 import build_stylegan2, translate_key
from latentkit.load.safe_pickle import ModuleRecord, read_network_pickle
from latentkit.nets.stylegan2 import MappingConfig, StyleGAN2Generator, default_blocks

REFERENCE_NETS = Path(__file__).resolve().parents[1] / "data" / "reference-nets"

FILES = ["sg2ada_uncond_map8_res32", "sg2ada_cond_map2_res32", "sg2_sg3repo_uncond_map8_res64"]
_CACHE: dict[str, StyleGAN2Generator] = {}


def _record(name: str):
    return read_network_pickle(REFERENCE_NETS / f"{name}.pkl")["G_ema"]


def _generator(name: str) -> StyleGAN2Generator:
    if name not in _CACHE:
        _CACHE[name] = build_stylegan2(_record(name))
    return _CACHE[name]




def _inputs(name: str):
    ref = reference_arrays(name)
    G = _generator(name)
    z = torch.from_numpy(ref["z"])
    c = torch.from_numpy(ref["c"]) if G.c_dim else None
    return G, ref, z, c


@pytest.mark.parametrize("name", FILES)
def test_configuration_read_from_the_record(name):
    G = _generator(name)
    record = _record(name)
    assert G.architecture == "stylegan2"
    for attr in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "num_ws"):
        assert getattr(G, attr) == record.attr(attr)
    assert not G.training and not any(p.requires_grad for p in G.parameters())
    assert all(t.dtype == torch.float32 and t.device.type == "cpu" for t in G.state_dict().values())
    # Every tensor, FIR filters and noise buffers included, is the stored one.
    stored = {translate_key(k): v for k, v in record.state_dict().items()}
    assert set(stored) == set(G.state_dict())
    for key, value in G.state_dict().items():
        assert torch.equal(value, stored[key].float()), key


def test_effective_per_layer_values():
    """ADA's cifar file: conv_clamp 1.5 on every layer; fp16 blocks as marked; no per-file switches."""
    G = _generator("sg2ada_cond_map2_res32")
    blocks = G.synthesis_net.blocks()
    assert [b.resolution for b in blocks] == [4, 8, 16, 32]
    assert [b.config.use_fp16 for b in blocks] == [False, True, True, True]
    assert all(layer.conv_clamp == 1.5 for b in blocks for layer in b.conv_layers().values())
    assert all(b.torgb.conv_clamp == 1.5 for b in blocks)
    assert G.mapping_net.num_layers == 2 and G.mapping_net.embed is not None
    sg3repo = _generator("sg2_sg3repo_uncond_map8_res64")
    assert all(b.config.conv_clamp == 256 for b in sg3repo.synthesis_net.blocks())  # the stylegan3-repo default
    assert all(b.config.fused_modconv is True for b in sg3repo.synthesis_net.blocks())
    assert _generator("sg2ada_uncond_map8_res32").synthesis_net.b4.config.conv_clamp == 256


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("psi,key", [(1.0, "ws_psi1"), (0.7, "ws_psi07")])
def test_mapping_matches_reference(name, psi, key):
    G, ref, z, c = _inputs(name)
    with torch.no_grad():
        assert_matches_reference(G.mapping(z, c, truncation_psi=psi), ref[key], f"{name} {key}")


@pytest.mark.parametrize("name", FILES)
def test_last_preactivation_and_w_avg(name):
    G, ref, z, c = _inputs(name)
    with torch.no_grad():
        pre = G.last_preactivation(z, c)
    assert_matches_reference(pre, ref["mapping_last_preact"], f"{name} mapping_last_preact")
    assert_matches_reference(G.w_avg, ref["w_avg"], f"{name} w_avg")
    act = G.mapping_activation
    torch.testing.assert_close(act.gain * torch.nn.functional.leaky_relu(pre, act.slope),
                               torch.from_numpy(ref["ws_psi1"][:, 0]), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("psi", ["1", "07"])
def test_synthesis_and_end_to_end_match_reference(name, psi):
    G, ref, z, c = _inputs(name)
    with torch.no_grad():
        img = G.synthesis(torch.from_numpy(ref[f"ws_psi{psi}"]), noise_mode="const")
        end_to_end = G(z, c, truncation_psi=float(psi.replace("07", "0.7")))
    assert_matches_reference(img, ref[f"img_synth_psi{psi}"], f"{name} img_synth_psi{psi}")
    assert_matches_reference(end_to_end, ref[f"img_G_psi{psi}"], f"{name} img_G_psi{psi}")


@pytest.mark.parametrize("name", ["sg2ada_uncond_map8_res32", "sg2ada_cond_map2_res32"])
def test_noise_none_matches_reference_and_zero_override(name):
    G, ref, _, _ = _inputs(name)
    ws = torch.from_numpy(ref["ws_psi1"])
    with torch.no_grad():
        none = G.synthesis(ws, noise_mode="none")
        zeros = G.synthesis(ws, noise={k: torch.zeros_like(v) for k, v in G.const_noise().items()})
    assert_matches_reference(none, ref["img_synth_psi1_noise_none"], f"{name} img_synth_psi1_noise_none")
    torch.testing.assert_close(zeros, none, rtol=0, atol=0)


def test_clamp_is_active_in_the_cifar_file():
    """Removing conv_clamp=1.5 changes the image by several units (README: 4.6): the clamp is really used."""
    G, ref, _, _ = _inputs("sg2ada_cond_map2_res32")
    ws = torch.from_numpy(ref["ws_psi1"])
    saved = {}
    for b in G.synthesis_net.blocks():
        for layer in [*b.conv_layers().values(), b.torgb]:
            saved[layer] = layer.conv_clamp
            layer.conv_clamp = None
    try:
        with torch.no_grad():
            unclamped = G.synthesis(ws)
    finally:
        for layer, clamp in saved.items():
            layer.conv_clamp = clamp
    assert float((unclamped - torch.from_numpy(ref["img_synth_psi1"])).abs().max()) > 1.0


def test_noise_override_with_const_buffers_equals_const_mode():
    G, ref, _, _ = _inputs("sg2_sg3repo_uncond_map8_res64")
    ws = torch.from_numpy(ref["ws_psi1"])
    noise = G.const_noise()
    assert list(noise) == ["b4.conv1"] + [f"b{r}.conv{i}" for r in (8, 16, 32, 64) for i in (0, 1)]
    assert noise["b8.conv0"].shape == (1, 1, 8, 8)
    with torch.no_grad():
        const = G.synthesis(ws, noise_mode="const")
        override = G.synthesis(ws, noise_mode="random", noise=noise)
        per_sample = G.synthesis(ws, noise={k: v.expand(4, -1, -1, -1) for k, v in noise.items()})
        partial = G.synthesis(ws, noise_mode="none", noise={"b64.conv1": noise["b64.conv1"]})
        none = G.synthesis(ws, noise_mode="none")
        random = G.synthesis(ws, noise_mode="random")
    assert torch.equal(override, const) and torch.equal(per_sample, const)
    assert not torch.equal(partial, none) and not torch.equal(partial, const)
    assert float((random - const).abs().max()) > 0.1 and random.shape == const.shape


@pytest.mark.parametrize("name", ["sg2ada_uncond_map8_res32", "sg2ada_cond_map2_res32"])
def test_w_broadcast_to_w_plus_renders_the_same_image(name):
    G, ref, z, c = _inputs(name)
    with torch.no_grad():
        w = G.map_latent(z, G.prepare_labels(c, 4))  # [N, w_dim]
        ws = G.mapping(z, c)
        assert torch.equal(ws, w.unsqueeze(1).expand(-1, G.num_ws, -1))
        broadcast = G.synthesis(w.unsqueeze(1).expand(-1, G.num_ws, -1))  # non-contiguous view
        assert torch.equal(broadcast, G.synthesis(ws.contiguous()))
        assert torch.equal(broadcast, G(z, c))


@pytest.mark.parametrize("name", FILES)
def test_batch_size_independence(name):
    G, ref, _, _ = _inputs(name)
    ws = torch.from_numpy(ref["ws_psi07"])
    with torch.no_grad():
        batch = G.synthesis(ws)
        single = torch.cat([G.synthesis(ws[i : i + 1]) for i in range(ws.shape[0])])
        pair = torch.cat([G.synthesis(ws[:2]), G.synthesis(ws[2:])])
    tol = 1e-5 * max(1.0, float(batch.abs().max()))
    assert float((batch - single).abs().max()) <= tol
    assert float((batch - pair).abs().max()) <= tol


def test_fp16_is_opt_in_and_ignored_on_cpu():
    G, ref, _, _ = _inputs("sg2ada_uncond_map8_res32")
    assert G.fp16 is False
    G.fp16 = True
    try:
        assert G.fp16 is True
        with torch.no_grad():
            img = G.synthesis(torch.from_numpy(ref["ws_psi1"]))
    finally:
        G.fp16 = False
    assert_matches_reference(img, ref["img_synth_psi1"], "fp16 flag on the CPU")


@pytest.mark.parametrize("name", ["sg2ada_uncond_map8_res32", "sg2ada_cond_map2_res32"])
def test_half_precision_path_stays_within_float16_precision(name):
    """ADA runs its use_fp16 blocks in float16 even on the CPU unless force_fp32. Our half path (forced here
    on the CPU) must really run in float16 and stay within what float16 can promise; float32 stays exact.

    How far a float16 pass lands from float32 depends on the CPU's float16 kernels (0.0215 here, 0.0324 on
    the machine that wrote the reference nets), so the bounds follow from float16's unit round-off
    u = 2**-11: at most 100 accumulated roundings of relative size u of the output scale, and at least ten
    times the float32 tolerance (so the half path did run)."""
    G, ref, _, _ = _inputs(name)
    scale = max(1.0, float(np.abs(ref["img_synth_psi1"]).max()))
    G.fp16 = True
    try:
        with torch.no_grad():
            half = G.synthesis_net(torch.from_numpy(ref["ws_psi1"]), force_fp32=False)
            full = G.synthesis_net(torch.from_numpy(ref["ws_psi1"]), force_fp32=True)
    finally:
        G.fp16 = False
    assert half.dtype == torch.float32
    err = float(np.abs(half.numpy() - ref["img_synth_psi1"]).max())
    unit_roundoff = 2.0**-11
    assert 1e-4 * scale < err <= 100 * unit_roundoff * scale
    assert_matches_reference(full, ref["img_synth_psi1"], f"{name} float32 path with fp16 switched on")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fp16_on_cuda_close_to_reference():
    G, ref, _, _ = _inputs("sg2ada_uncond_map8_res32")
    G = build_stylegan2(_record("sg2ada_uncond_map8_res32")).to("cuda")
    ws = torch.from_numpy(ref["ws_psi1"]).cuda()
    with torch.no_grad():
        assert_matches_reference(G.synthesis(ws).cpu(), ref["img_synth_psi1"], "float32 on CUDA")
        G.fp16 = True
        half = G.synthesis(ws).cpu()
    assert half.dtype == torch.float32
    assert float((half - torch.from_numpy(ref["img_synth_psi1"])).abs().max()) < 0.1  # README: 0.005-0.03


def test_load_generator_dispatches_here():
    from latentkit import load_generator

    G = load_generator(REFERENCE_NETS / "sg2ada_cond_map2_res32.pkl")
    assert isinstance(G, StyleGAN2Generator) and G.sha256
    ref = reference_arrays("sg2ada_cond_map2_res32")
    with torch.no_grad():
        assert_matches_reference(G(torch.from_numpy(ref["z"]), torch.from_numpy(ref["c"]), truncation_psi=0.7),
                        ref["img_G_psi07"], "load_generator img_G_psi07")


# --------------------------------------------------------------------------------------------------
# Errors


def test_synthesis_errors():
    G = _generator("sg2ada_uncond_map8_res32")
    ws = torch.zeros(2, G.num_ws, G.w_dim)
    with pytest.raises(ShapeError, match=r"ws must have shape \[N, 8, 64\]"):
        G.synthesis(torch.zeros(2, G.num_ws + 1, G.w_dim))
    with pytest.raises(InputError, match="noise_mode must be one of"):
        G.synthesis(ws, noise_mode="constant")
    with pytest.raises(InputError, match=r"noise has unknown keys \['b4.conv0'\]"):
        G.synthesis(ws, noise={"b4.conv0": torch.zeros(1, 1, 4, 4)})
    expected = r"noise\['b8.conv0'\] must have shape \[2 or 1, 1, 8, 8\], got \[3, 1, 8, 8\]"
    with pytest.raises(ShapeError, match=expected):
        G.synthesis(ws, noise={"b8.conv0": torch.zeros(3, 1, 8, 8)})
    with pytest.raises(ShapeError, match=r"z must have shape \[N, 64\]"):
        G.last_preactivation(torch.zeros(2, 3))


def _drop(record, path: str, name: str) -> None:
    node = record[path]
    for table in ("_parameters", "_buffers"):
        node.state[table].pop(name, None)


def test_missing_tensor_is_named():
    record = _record("sg2ada_uncond_map8_res32")
    _drop(record, "synthesis.b16.conv0", "noise_const")
    with pytest.raises(CheckpointError, match=r"missing \['synthesis_net\.b16\.conv0\.noise_const'\]"):
        build_stylegan2(record)


def test_unexpected_tensor_is_named():
    record = _record("sg2ada_uncond_map8_res32")
    record["synthesis.b8"].state["_buffers"]["extra"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match=r"unexpected \['synthesis_net\.b8\.extra'\]"):
        build_stylegan2(record)


def test_wrong_shape_is_named():
    record = _record("sg2ada_uncond_map8_res32")
    record["synthesis.b8.conv1"].state["_buffers"]["noise_const"] = torch.zeros(4, 4)
    expected = r"synthesis_net\.b8\.conv1\.noise_const has shape \[4, 4\], expected \[8, 8\]"
    with pytest.raises(CheckpointError, match=expected):
        build_stylegan2(record)


def test_missing_sub_network_and_attribute():
    record = _record("sg2ada_uncond_map8_res32")
    record.state["_modules"].pop("mapping")
    with pytest.raises(CheckpointError, match="no child 'mapping'"):
        build_stylegan2(record)
    record = _record("sg2ada_uncond_map8_res32")
    record["synthesis"].state.pop("block_resolutions")
    with pytest.raises(CheckpointError, match="no attribute or constructor argument 'block_resolutions'"):
        build_stylegan2(record)


def test_num_ws_mismatch():
    record = _record("sg2ada_uncond_map8_res32")
    record.state["num_ws"] = 9
    with pytest.raises(CheckpointError, match="num_ws=9 but its synthesis blocks"):
        build_stylegan2(record)


def test_per_layer_record_values_win_over_constructor_kwargs():
    """Options come from the sub-module that uses them; the generator's kwargs are not consulted."""
    record = _record("sg2ada_uncond_map8_res32")
    record["synthesis.b8.conv0"].state["conv_clamp"] = 0.5
    record.state["_init_kwargs"] = {}  # neither nested synthesis_kwargs nor anything else is needed
    G = build_stylegan2(record)
    assert G.synthesis_net.b8.conv0.conv_clamp == 0.5
    assert G.synthesis_net.b8.conv1.conv_clamp == 256


def _as_record(module: torch.nn.Module, name: str, attrs: dict) -> ModuleRecord:
    """Package one of our modules the way NVIDIA's pickles store it (tests only)."""
    children = {k: _as_record(m, f"{name}.{k}" if name else k, attrs) for k, m in module.named_children()}
    state = {"_parameters": dict(module._parameters), "_buffers": dict(module._buffers), "_modules": children}
    state.update(attrs.get(name, {}))
    return ModuleRecord(class_name=type(module).__name__, state=state)


@pytest.mark.parametrize("architecture", ["orig", "resnet"])
def test_other_architectures_round_trip_through_records(architecture):
    """A resnet / orig generator with a 3-tap filter, stored with NVIDIA's names and attributes, loads back."""
    rng = torch.Generator().manual_seed(0)
    blocks = [dataclasses.replace(b, resample_filter_shape=(3, 3), conv_clamp=2.0)
              for b in default_blocks(img_resolution=16, channel_base=64, channel_max=8, architecture=architecture)]
    G = StyleGAN2Generator(z_dim=6, c_dim=2, w_dim=5, img_resolution=16,
                           mapping=MappingConfig(num_layers=3, layer_features=7), blocks=blocks)
    G = G.eval().requires_grad_(False)
    G.w_avg.normal_(generator=rng)
    for block in G.synthesis_net.blocks():
        for layer in block.conv_layers().values():
            layer.noise_strength.fill_(0.3)
    attrs = {"": dict(z_dim=6, c_dim=2, w_dim=5, img_resolution=16, img_channels=3, num_ws=G.num_ws),
             "synthesis": dict(block_resolutions=[4, 8, 16]), "mapping": dict(num_layers=3)}
    for b in blocks:
        attrs[f"synthesis.b{b.resolution}"] = dict(resolution=b.resolution, in_channels=b.in_channels,
                                                   is_last=b.is_last, architecture=architecture, use_fp16=False)
        for conv in ("conv0", "conv1"):
            attrs[f"synthesis.b{b.resolution}.{conv}"] = dict(conv_clamp=2.0, use_noise=True, activation="lrelu")
    for i in range(3):
        attrs[f"mapping.fc{i}"] = dict(activation="lrelu", bias_gain=0.01)
    root = _as_record(torch.nn.Module(), "", attrs)
    root.state["_modules"] = {
        "synthesis": _as_record(G.synthesis_net, "synthesis", attrs),
        "mapping": _as_record(G.mapping_net, "mapping", attrs),
    }
    root.state["_modules"]["mapping"].state["_buffers"]["w_avg"] = G.w_avg
    loaded = build_stylegan2(root)
    assert [hasattr(b, "skip") for b in loaded.synthesis_net.blocks()] == [False] + [architecture == "resnet"] * 2
    assert loaded.synthesis_net.b8.resample_filter.shape == (3, 3)
    z, c = torch.randn(3, 6, generator=rng), torch.eye(2)[[0, 1, 1]]
    with torch.no_grad():
        assert torch.equal(loaded(z, c, truncation_psi=0.5), G(z, c, truncation_psi=0.5))
