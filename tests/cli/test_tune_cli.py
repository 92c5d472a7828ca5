"""``latentkit project --tune-steps``, ``latentkit tune`` and ``--delta`` / ``--projected-w`` end to end on a
reference net (random-weight perceptual net, marked as such)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REFERENCE_NETS, invoke_cli
from PIL import Image

NET = REFERENCE_NETS / "sg2ada_uncond_map8_res32.pkl"


@pytest.fixture(scope="module")
def projected(tmp_path_factory) -> Path:
    """One photo-like image projected (3 steps) and tuned (2 steps) by ``project --tune-steps``."""
    root = tmp_path_factory.mktemp("tune")
    g = np.random.default_rng(0)
    small = g.integers(40, 220, (8, 8, 3)).astype(np.uint8)
    Image.fromarray(small).resize((32, 32), Image.BILINEAR).save(root / "photo.png")
    out = root / "out"
    result = invoke_cli(["project", root / "photo.png", "--network", NET, "--num-steps", 3, "--tune-steps", 2,
                         "--perceptual-weights", "random", "--prior", "none", "--outdir", out, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return out


def _rows(outdir: Path) -> list[dict]:
    return [json.loads(line) for line in (outdir / "manifest.jsonl").read_text().splitlines()]


def test_project_with_tune_steps_writes_the_delta_image_and_manifest(projected):
    folder = projected / "photo"
    for name in ("projected_w.npz", "proj.png", "proj_tuned.png", "tuned.safetensors", "tune.json"):
        assert (folder / name).is_file(), name
    last = _rows(projected)[-1]
    for key in ("pivot_lpips", "pivot_psnr", "tuned_lpips", "tuned_psnr", "delta_bytes", "tune_fingerprint", "fingerprint"):
        assert key in last, key
    params = sum(p.numel() for p in __import__("latentkit").load_generator(NET).parameters())
    assert (folder / "tuned.safetensors").stat().st_size <= 0.05 * 4 * params + 20_000  # header of the narrow test net


def test_tune_command_gains_3_db_and_the_delta_reproduces_proj_tuned(projected):
    folder = projected / "photo"
    result = invoke_cli(["tune", folder, "--network", NET, "--tune-steps", 30, "--learning-rate", 0.01,
                         "--perceptual-weights", "random", "--restart", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "tune: 1 image(s) x 30 steps" in result.output  # the estimate line
    last = _rows(projected)[-1]
    assert last["tuned_psnr"] - last["pivot_psnr"] >= 3, last

    from latentkit import GeneratorDelta, load_generator
    from latentkit.generate import render_latents
    from latentkit.io import to_uint8

    G = load_generator(NET)
    tuned = GeneratorDelta.load(folder / "tuned.safetensors", G).apply(G)
    ours = to_uint8(render_latents(tuned, folder / "projected_w.npz"))[0].astype(int)
    saved = np.asarray(Image.open(folder / "proj_tuned.png")).astype(int)
    assert np.abs(ours - saved).max() <= 1

    again = invoke_cli(["tune", folder, "--network", NET, "--tune-steps", 30, "--learning-rate", 0.01,
                        "--perceptual-weights", "random", "--device", "cpu"])
    assert again.exit_code == 0 and "tuned.safetensors" not in again.stdout  # done: skipped


def test_generate_projected_w_with_delta_renders_proj_tuned(projected, tmp_path):
    folder = projected / "photo"
    result = invoke_cli(["generate", "--network", NET, "--projected-w", folder / "projected_w.npz", "--delta",
                         folder / "tuned.safetensors", "--outdir", tmp_path, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    ours = np.asarray(Image.open(tmp_path / "proj00.png")).astype(int)
    saved = np.asarray(Image.open(folder / "proj_tuned.png")).astype(int)
    assert np.abs(ours - saved).max() <= 1
    plain = invoke_cli(["generate", "--network", NET, "--projected-w", folder / "projected_w.npz", "--outdir",
                        tmp_path / "plain", "--device", "cpu"])
    assert plain.exit_code == 0
    proj = np.asarray(Image.open(folder / "proj.png")).astype(int)
    assert np.abs(np.asarray(Image.open(tmp_path / "plain" / "proj00.png")).astype(int) - proj).max() <= 1


def test_edit_and_interpolate_run_on_the_tuned_generator(projected, tmp_path):
    folder = projected / "photo"
    w = folder / "projected_w.npz"
    result = invoke_cli(["edit", w, "--component", 0, "--amounts=-2,0,2", "--network", NET, "--samples", 500,
                         "--delta", folder / "tuned.safetensors", "--out", tmp_path / "edit", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "edit" / "grid.png").is_file()
    result = invoke_cli(["interpolate", w, w, "--steps", 2, "--network", NET, "--delta", folder / "tuned.safetensors",
                         "--out", tmp_path / "i.png", "--device", "cpu"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("kind", ["pickle", "truncated", "other"])
def test_bad_delta_files_get_one_line(projected, tmp_path, kind):
    folder = projected / "photo"
    path = tmp_path / "bad.safetensors"
    if kind == "pickle":
        path.write_bytes(pickle.dumps({"x": 1}))
    elif kind == "truncated":
        path.write_bytes((folder / "tuned.safetensors").read_bytes()[:-7])
    else:
        path = folder / "tuned.safetensors"
    network = REFERENCE_NETS / ("sg2ada_cond_map2_res32.pkl" if kind == "other" else NET.name)
    result = invoke_cli(["generate", "--network", network, "--seeds", "0", "--class", "0", "--delta", path,
                         "--outdir", tmp_path / "g", "--device", "cpu"] if kind == "other" else
                        ["generate", "--network", network, "--seeds", "0", "--delta", path, "--outdir", tmp_path / "g",
                         "--device", "cpu"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in result.output
    assert {"pickle": "pickle", "truncated": "truncated", "other": "another network"}[kind] in lines[0]


def test_tune_refuses_a_folder_that_is_not_a_projection(tmp_path):
    result = invoke_cli(["tune", tmp_path, "--network", NET, "--device", "cpu"])
    assert result.exit_code == 1 and "not a projected folder" in result.output
    torch.manual_seed(0)  # nothing else to check: the refusal came before any model work


def test_tune_prior_draws_the_locality_samples_and_a_bad_prior_is_one_line(projected, tmp_path):
    folder = projected / "photo"
    result = invoke_cli(["tune", folder, "--network", NET, "--tune-steps", 2, "--perceptual-weights", "random",
                         "--prior", "auto", "--restart", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "locality samples drawn from the cached prior" in result.output
    with_prior = _rows(projected)[-1]["tune_fingerprint"]
    plain = invoke_cli(["tune", folder, "--network", NET, "--tune-steps", 2, "--perceptual-weights", "random",
                        "--restart", "--device", "cpu"])
    assert plain.exit_code == 0, plain.output
    assert _rows(projected)[-1]["tune_fingerprint"] != with_prior  # the prior is part of the run's identity
    (tmp_path / "bad.npz").write_bytes(b"not a prior")
    bad = invoke_cli(["tune", folder, "--network", NET, "--tune-steps", 2, "--prior", tmp_path / "bad.npz",
                      "--device", "cpu"])
    lines = [line for line in bad.output.splitlines() if line.startswith("Error:")]
    assert bad.exit_code != 0 and len(lines) == 1 and "Traceback" not in bad.output, bad.output
