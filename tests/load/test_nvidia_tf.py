"""NVIDIA's TensorFlow StyleGAN2 pickles: written by the test helper from reference weights, read back."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_matches_reference, reference_arrays

from latentkit import load_generator
from latentkit.errors import CheckpointError
from latentkit.load import sniff_format
from latentkit.load.nvidia_stylegan2 import build_stylegan2
from latentkit.load.nvidia_tf import convert_tf_generator, load_tf_pickle
from latentkit.load.safe_pickle import read_network_pickle
from latentkit.load.tf_pickle import TFNetwork, loads_tf_pickle
from latentkit.nets.stylegan2 import MappingConfig, StyleGAN2Generator, default_blocks

import tf_writer

REFERENCE_NETS = Path(__file__).resolve().parents[1] / "data" / "reference-nets"
FILES = ["sg2ada_uncond_map8_res32", "sg2ada_cond_map2_res32", "sg2_sg3repo_uncond_map8_res64"]
_CACHE: dict[str, StyleGAN2Generator] = {}


def _pytorch(name: str) -> StyleGAN2Generator:
    if name not in _CACHE:
        _CACHE[name] = build_stylegan2(read_network_pickle(REFERENCE_NETS / f"{name}.pkl")["G_ema"])
    return _CACHE[name]




def _write(tmp_path: Path, obj, name: str = "net.pkl", protocol: int = 3) -> Path:
    path = tmp_path / name
    path.write_bytes(tf_writer.dumps(obj, protocol=protocol))
    return path


@pytest.mark.parametrize("name", FILES)
def test_tf_pickle_reproduces_the_reference_outputs(tmp_path, name):
    """The reference weights as TF variables. TF pickles store no FIR filters (they are rebuilt from
    ``resample_kernel``) while the reference nets' filters are perturbed: with those filters put back, every
    reference output is reproduced; with the standard ones, the PyTorch path with the same weights is."""
    source = _pytorch(name)
    path = _write(tmp_path, tf_writer.tf_snapshot(source, kwargs=tf_writer.static_kwargs(source, num_fp16_res=4)))
    assert sniff_format(path) == "nvidia-tf"
    G = load_generator(path)
    assert isinstance(G, StyleGAN2Generator) and G.sha256 and G.info()["architecture"] == "stylegan2"
    ref = reference_arrays(name)
    z = torch.from_numpy(ref["z"])
    c = torch.from_numpy(ref["c"]) if G.c_dim else None
    assert_matches_reference(G.mapping(z, c), ref["ws_psi1"], "ws_psi1")
    assert_matches_reference(G.mapping(z, c, truncation_psi=0.7), ref["ws_psi07"], "ws_psi07")
    assert_matches_reference(G.last_preactivation(z, c), ref["mapping_last_preact"], "mapping_last_preact")
    standard = {k: v for k, v in G.state_dict().items() if k.endswith("resample_filter")}
    same_weights = copy.deepcopy(source)
    same_weights.load_state_dict(standard, strict=False)
    assert_matches_reference(G(z, c, truncation_psi=0.7), same_weights(z, c, truncation_psi=0.7).numpy(), "vs PyTorch path")
    G.load_state_dict({k: v for k, v in source.state_dict().items() if k.endswith("resample_filter")}, strict=False)
    assert_matches_reference(G.synthesis(torch.from_numpy(ref["ws_psi1"])), ref["img_synth_psi1"], "img_synth_psi1")
    assert_matches_reference(G(z, c, truncation_psi=0.7), ref["img_G_psi07"], "img_G_psi07")
    if "img_synth_psi1_noise_none" in ref:
        assert_matches_reference(G.synthesis(torch.from_numpy(ref["ws_psi1"]), noise_mode="none"),
                        ref["img_synth_psi1_noise_none"], "noise none")


def _toy(architecture: str, *, c_dim: int = 0, mapping: MappingConfig = MappingConfig(num_layers=3),
         conv_clamp=None, seed: int = 3, use_noise: bool = True) -> StyleGAN2Generator:
    blocks = default_blocks(img_resolution=16, channel_base=128, channel_max=16, conv_clamp=conv_clamp,
                            architecture=architecture)
    blocks = [dataclasses.replace(b, use_noise=use_noise) for b in blocks]
    G = StyleGAN2Generator(z_dim=8, c_dim=c_dim, w_dim=12, img_resolution=16, mapping=mapping, blocks=blocks,
                           seed=seed)
    with torch.no_grad():  # non-trivial values everywhere the conversion could go wrong
        gen = torch.Generator().manual_seed(seed)
        for key, value in G.state_dict().items():
            if key.endswith(("bias", "noise_strength")) or key == "w_avg":
                value.add_(0.3 * torch.randn(value.shape, generator=gen))
    return G.eval().requires_grad_(False)


@pytest.mark.parametrize("architecture", ["skip", "resnet", "orig"])
@pytest.mark.parametrize("conditional", [False, True])
def test_config_variants_render_what_the_pytorch_path_renders(tmp_path, architecture, conditional):
    mapping = MappingConfig(num_layers=2, layer_features=10, embed_features=6) if conditional else MappingConfig(num_layers=4)
    source = _toy(architecture, c_dim=5 if conditional else 0, mapping=mapping, conv_clamp=0.8 if conditional else None)
    G = load_tf_pickle(_write(tmp_path, tf_writer.tf_snapshot(source)))
    assert [b.config.architecture for b in G.synthesis_net.blocks()] == [architecture] * 3
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
    c = torch.eye(5)[[0, 3, 4]] if conditional else None
    ref = source(z, c, truncation_psi=0.6).numpy()
    assert_matches_reference(G(z, c, truncation_psi=0.6), ref, architecture)
    assert set(G.state_dict()) == set(source.state_dict())


def test_without_noise_and_with_another_resample_kernel(tmp_path):
    from latentkit.nets.ops import setup_filter

    kernel = [1.0, 2.0, 1.0]
    blocks = [dataclasses.replace(b, use_noise=False, resample_filter_shape=(3, 3))
              for b in default_blocks(img_resolution=16, channel_base=128, channel_max=16)]
    source = StyleGAN2Generator(z_dim=8, c_dim=0, w_dim=12, img_resolution=16, mapping=MappingConfig(num_layers=3),
                                blocks=blocks, seed=5).eval().requires_grad_(False)
    with torch.no_grad():
        for key, value in source.state_dict().items():
            if key.endswith("resample_filter"):
                value.copy_(setup_filter(kernel))
    kwargs = {**tf_writer.static_kwargs(source, resample_kernel=kernel), "use_noise": False}
    G = load_tf_pickle(_write(tmp_path, tf_writer.tf_snapshot(source, kwargs=kwargs)))
    assert not G.const_noise()
    z = torch.randn(2, 8, generator=torch.Generator().manual_seed(2))
    assert_matches_reference(G(z), source(z).numpy(), "kernel [1, 2, 1], no noise")


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_pickle_protocols_and_single_network(tmp_path, protocol):
    source = _toy("skip")
    _, _, Gs = tf_writer.tf_snapshot(source)
    G = load_generator(_write(tmp_path, Gs, protocol=protocol))
    z = torch.randn(2, 8, generator=torch.Generator().manual_seed(0))
    assert_matches_reference(G(z), source(z).numpy(), f"protocol {protocol}")


def test_torgb_lod_names_mean_orig(tmp_path):
    source = _toy("orig")
    top, mapping, synthesis = tf_writer.tf_variables(source)
    synthesis = [(k.replace("16x16/ToRGB", "ToRGB_lod0"), v) for k, v in synthesis]
    kwargs = tf_writer.static_kwargs(source)
    del kwargs["architecture"]
    net = tf_writer.Network("Gs", kwargs, top, {"mapping": tf_writer.Network("G_mapping", kwargs, mapping),
                                                "synthesis": tf_writer.Network("G_synthesis", kwargs, synthesis)})
    G = load_tf_pickle(_write(tmp_path, net))
    z = torch.randn(2, 8, generator=torch.Generator().manual_seed(0))
    assert_matches_reference(G(z), source(z).numpy(), "ToRGB_lod")


def test_the_state_is_read_as_data(tmp_path):
    source = _toy("skip")
    net = loads_tf_pickle(tf_writer.dumps(tf_writer.tf_snapshot(source)))
    assert isinstance(net, TFNetwork) and net.name == "Gs" and net.version == 4
    assert set(net.components) == {"mapping", "synthesis"}
    assert net.static_kwargs["latent_size"] == 8
    assert net.all_variables()["mapping/Dense0/weight"].shape == (8, 12)
    assert not hasattr(net, "build_module_src")


# ---------------------------------------------------------------------------------------------------
# Hostile and broken files: each a CheckpointError, nothing executes.


class _Boom:
    """Pickles as a call to os.system."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os
        return os.system, (f"touch {self.marker}",)


def test_a_global_outside_the_allow_list_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    source = _toy("skip")
    snapshot = tf_writer.tf_snapshot(source, extra_synthesis_vars=[("evil", _Boom(marker))])
    path = _write(tmp_path, snapshot)
    with pytest.raises(CheckpointError, match="refused global (posix|os|nt).system"):
        load_generator(path)
    assert not marker.exists()


def test_build_module_src_never_runs(tmp_path):
    marker = tmp_path / "ran"
    src = f"open({str(marker)!r}, 'w').write('x')\nraise SystemExit('executed')\n"
    source = _toy("skip")
    G = load_generator(_write(tmp_path, tf_writer.tf_snapshot(source, synthesis_src=src)))
    assert not marker.exists()
    z = torch.randn(1, 8, generator=torch.Generator().manual_seed(0))
    assert_matches_reference(G(z), source(z).numpy(), "with build_module_src")


def test_object_arrays_are_refused(tmp_path):
    obj = np.empty(3, dtype=object)
    obj[:] = [1, "a", None]
    snapshot = tf_writer.tf_snapshot(_toy("skip"), extra_synthesis_vars=[("obj", obj)])
    with pytest.raises(CheckpointError, match="object dtype"):
        load_generator(_write(tmp_path, snapshot))


def test_wrong_shapes_and_missing_variables_are_named(tmp_path):
    source = _toy("skip")
    top, mapping, synthesis = tf_writer.tf_variables(source)
    kwargs = tf_writer.static_kwargs(source)

    def write(mapping_vars, synthesis_vars, name):
        net = tf_writer.Network("Gs", kwargs, top, {"mapping": tf_writer.Network("G_mapping", kwargs, mapping_vars),
                                                    "synthesis": tf_writer.Network("G_synthesis", kwargs, synthesis_vars)})
        return _write(tmp_path, net, name)

    bad = [(k, v[:, :-1] if k == "Dense1/weight" else v) for k, v in mapping]
    with pytest.raises(CheckpointError, match=r"mapping_net\.fc1\.weight.*shape"):
        load_generator(write(bad, synthesis, "shape.pkl"))
    missing = [(k, v) for k, v in synthesis if k != "8x8/Conv1/noise_strength"]
    with pytest.raises(CheckpointError, match="lacks the variable 'synthesis/8x8/Conv1/noise_strength'"):
        load_generator(write(mapping, missing, "missing.pkl"))
    wrong_ndim = [(k, v.ravel() if k == "16x16/Conv1/weight" else v) for k, v in synthesis]
    with pytest.raises(CheckpointError, match="16x16/Conv1/weight"):
        load_generator(write(mapping, wrong_ndim, "ndim.pkl"))


@pytest.mark.parametrize("state, match", [
    ({"version": 3}, "pickle version 3"),
    ({"static_kwargs": {"latent_size": 8, "fmap_decay": 0.5}}, "static keyword 'fmap_decay'"),
    ({"version": "4"}, "version '4'"),
    ({"variables": [("a", [1.0, 2.0])]}, "is a list, expected a numpy array"),
    ({"components": {"mapping": {"not": "a network"}}}, "components"),
    ({"static_kwargs": {"latent_size": object}}, "refused global builtins.object"),
])
def test_malformed_states_are_refused(tmp_path, state, match):
    net = tf_writer.Network("Gs", {"latent_size": 8}, [], extra_state=state)
    with pytest.raises(CheckpointError, match=match):
        load_generator(_write(tmp_path, net))


def test_other_top_level_objects_and_truncation(tmp_path):
    net = tf_writer.Network("Gs", {}, [])
    with pytest.raises(CheckpointError, match="expected NVIDIA's TensorFlow snapshot"):
        load_generator(_write(tmp_path, [net, net], "list.pkl"))
    data = tf_writer.dumps(tf_writer.tf_snapshot(_toy("skip")))
    (tmp_path / "cut.pkl").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_generator(tmp_path / "cut.pkl")


def test_convert_refuses_a_resolution_that_is_not_a_power_of_two():
    net = loads_tf_pickle(tf_writer.dumps(tf_writer.Network("Gs", {"resolution": 24}, [])))
    with pytest.raises(CheckpointError, match="power of two"):
        convert_tf_generator(net)


class _DictNetwork(dict):
    """A stub written as a dict subclass (state as dict items, as legacy.py's EasyDict stub would pickle)."""


_DictNetwork.__module__ = "dnnlib.tflib.network"
_DictNetwork.__qualname__ = _DictNetwork.__name__ = "Network"


def test_a_dict_subclass_stub_reads_the_same(tmp_path, monkeypatch):
    source = _toy("resnet")
    G_stub, D_stub, Gs_stub = tf_writer.tf_snapshot(source)

    def as_dict(net):
        state = dict(net.state)
        state["components"] = {k: as_dict(v) for k, v in state["components"].items()}
        return _DictNetwork(state)

    monkeypatch.setattr(tf_writer, "Network", _DictNetwork)
    G = load_generator(_write(tmp_path, (as_dict(G_stub), as_dict(D_stub), as_dict(Gs_stub))))
    z = torch.randn(2, 8, generator=torch.Generator().manual_seed(0))
    assert_matches_reference(G(z), source(z).numpy(), "dict stub")


def test_info_recognises_a_tf_pickle_by_content(tmp_path):
    import json

    from click.testing import CliRunner

    from latentkit.cli import main

    path = _write(tmp_path, tf_writer.tf_snapshot(_toy("skip")), name="no-suffix")
    result = CliRunner().invoke(main, ["info", "--network", str(path), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["architecture"] == "stylegan2" and summary["z_dim"] == 8 and summary["num_ws"] == 6


@pytest.mark.parametrize("payload", [
    b"\x80\x02\x82\x01\x00.",  # EXT2: served from copyreg's extension cache without find_class
    b"\x80\x04j\x00\x00\x00\x10.",  # LONG_BINGET of memo index 2**28 from a 9-byte file
    b"\x80\x02cos\nsystem\nq\x00.",  # a global outside the allow-list, refused before unpickling
], ids=["ext2", "memo-bomb", "os.system"])
def test_tf_loader_shares_the_opcode_prescan(payload):
    from latentkit.load.tf_pickle import loads_tf_pickle

    with pytest.raises(CheckpointError):
        loads_tf_pickle(payload + b"dnnlib.tflib.network", name="hostile.pkl")
