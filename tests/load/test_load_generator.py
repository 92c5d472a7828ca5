"""load_generator: every reference net end to end, format sniffing, registry names, clear errors."""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest
import torch

from latentkit import hub, load_generator
from latentkit.errors import CheckpointError, InputError, WeightsUnavailableError
from latentkit.load import default_network, sniff_format
from latentkit.load.nvidia import detect_architecture
from latentkit.load.safe_pickle import read_network_pickle

from conftest import REFERENCE_NETS

MANIFEST = {f["checkpoint"]: f for f in json.loads((REFERENCE_NETS / "MANIFEST.json").read_text())["files"]}
FAMILY = {
    "sg2ada_uncond_map8_res32.pkl": ("stylegan2", "stylegan2"),
    "sg2ada_cond_map2_res32.pkl": ("stylegan2", "stylegan2"),
    "sg2_sg3repo_uncond_map8_res64.pkl": ("stylegan2", "stylegan2"),
    "sg3t_uncond_res32.pkl": ("stylegan3", "stylegan3-t"),
    "sg3r_cond_res32.pkl": ("stylegan3", "stylegan3-r"),
    "sgxl_cond_t_res16.pkl": ("stylegan-xl", "stylegan-xl"),
}


@pytest.mark.parametrize("name", sorted(FAMILY))
def test_architecture_is_read_from_the_record_tree(name):
    g_ema = read_network_pickle(REFERENCE_NETS / name)["G_ema"]
    assert detect_architecture(g_ema) == FAMILY[name][0]


@pytest.mark.filterwarnings("ignore:.*stores no 'latent_avg'")
@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_reference_net_end_to_end(name):
    entry = MANIFEST[name]
    G = load_generator(REFERENCE_NETS / name)
    assert G.sha256 == entry["checkpoint_sha256"]
    assert G.source == str(REFERENCE_NETS / name)
    assert not G.training and not any(p.requires_grad for p in G.parameters())
    assert all(t.device.type == "cpu" and t.dtype != torch.float16 for t in G.state_dict().values())
    if name in FAMILY:
        assert G.architecture == FAMILY[name][1]
    ref = np.load(REFERENCE_NETS / entry["reference"])
    z = torch.from_numpy(ref["z"])
    c = torch.from_numpy(ref["c"]) if "c" in ref and ref["c"].shape[1] else None
    # rosinality's train.py files store no truncation centre (the reference used a random one): psi = 1
    psi, key = (0.7, "img_G_psi07") if "img_G_psi07" in ref else (1.0, "img_z_psi1")
    with torch.no_grad():
        img = G(z, c, truncation_psi=psi, noise_mode="const")
    atol = entry["suggested_image_atol"]
    np.testing.assert_allclose(img.numpy(), ref[key], rtol=0, atol=atol)


def test_device_argument(tmp_path):
    G = load_generator(REFERENCE_NETS / "sg3t_uncond_res32.pkl", device=torch.device("cpu"))
    assert G.w_avg.device.type == "cpu"


def test_sniffing_ignores_misleading_suffixes(tmp_path):
    pt = tmp_path / "weights.pkl"
    shutil.copy(REFERENCE_NETS / "rosinality_convert_res16.pt", pt)
    assert sniff_format(pt) == "rosinality"
    pkl = tmp_path / "snapshot.bin"
    shutil.copy(REFERENCE_NETS / "sg3t_uncond_res32.pkl", pkl)
    assert sniff_format(pkl) == "nvidia"
    assert load_generator(pkl).architecture == "stylegan3-t"
    assert sniff_format(REFERENCE_NETS / "rosinality_trainpt_res32.pt") == "rosinality"
    assert sniff_format(tmp_path / "model.whl") == "mobilestylegan"


def test_pickle_without_g_ema_lists_its_keys(tmp_path):
    path = tmp_path / "partial.pkl"
    path.write_bytes(pickle.dumps({"G": None, "D": None, "training_set_kwargs": {"resolution": 32}}, protocol=4))
    with pytest.raises(CheckpointError, match=r"has no generator 'G_ema' \(keys found: 'G', 'D', 'training_set_kwargs'\)"):
        load_generator(path)
    path.write_bytes(pickle.dumps([1, 2, 3], protocol=4))
    with pytest.raises(CheckpointError, match="holding a dict with 'G_ema', got a list"):
        load_generator(path)


def test_missing_file_and_unknown_name(tmp_path):
    with pytest.raises(InputError, match=r"checkpoint file not found: .*nothere\.pkl"):
        load_generator(tmp_path / "nothere.pkl")
    with pytest.raises(InputError, match=r"checkpoint file not found: nothere\.pt"):
        load_generator("nothere.pt")
    with pytest.raises(InputError, match=r"unknown model 'stylegan3-t-ffhq'.*did you mean 'stylegan3-t-ffhq-1024'"):
        load_generator("stylegan3-t-ffhq")


def _register(monkeypatch, name, src, **overrides):
    fields = dict(name=name, url=f"https://example.org/{name}.pkl", filename=f"{name}.pkl",
                  architecture="stylegan3-t", resolution=32, dataset="test", license="test only")
    fields.update(overrides)
    monkeypatch.setitem(hub.REGISTRY, name, hub.ModelInfo(**fields))
    return hub.weights_path(name)


def test_registry_name_from_cache(monkeypatch):
    src = REFERENCE_NETS / "sg3t_uncond_res32.pkl"
    digest = MANIFEST["sg3t_uncond_res32.pkl"]["checkpoint_sha256"]
    target = _register(monkeypatch, "tiny-sg3", src, sha256=digest)
    with pytest.raises(WeightsUnavailableError, match=r"https://example.org/tiny-sg3\.pkl.*tiny-sg3\.pkl"):
        load_generator("tiny-sg3")  # not cached, sockets blocked
    shutil.copy(src, target)
    G = load_generator("tiny-sg3")
    assert G.source == "tiny-sg3" and G.sha256 == digest and G.architecture == "stylegan3-t"


def test_url_source_is_downloaded_once(tmp_path):
    src = tmp_path / "remote" / "net.pkl"
    src.parent.mkdir()
    shutil.copy(REFERENCE_NETS / "sgxl_cond_t_res16.pkl", src)
    G = load_generator(src.as_uri())
    assert G.architecture == "stylegan-xl" and G.sha256 == MANIFEST["sgxl_cond_t_res16.pkl"]["checkpoint_sha256"]
    assert hub.url_cache_path(src.as_uri()).is_file()


def test_default_network(monkeypatch):
    assert default_network() == "mobilestylegan-ffhq"
    hub.weights_path("stylegan2-ffhq-1024").write_bytes(b"placeholder")
    assert default_network() == "stylegan2-ffhq-1024"
