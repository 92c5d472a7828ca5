"""``latentkit project`` end to end on a reference net (random-weight perceptual net, marked as such)."""

from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import invoke_cli
from PIL import Image

import latentkit.cli.project as cli_project
from latentkit.cli import main
from latentkit.io import load_latents

api = importlib.import_module("latentkit.projection.project")  # the module; latentkit.projection.project is the function

NET = Path(__file__).parents[1] / "data" / "reference-nets" / "sg2ada_uncond_map8_res32.pkl"


run = invoke_cli


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    rgba = np.zeros((48, 40, 4), np.uint8)
    rgba[..., 1], rgba[..., 3] = 180, 255
    Image.fromarray(rgba, "RGBA").save(folder / "a.png")
    Image.fromarray((np.arange(32 * 32).reshape(32, 32) * 60).astype(np.uint16)).save(folder / "b.png")
    Image.fromarray(np.full((32, 32, 3), 30, np.uint8)).save(folder / "c.jpg")
    return folder


def test_defaults_match_the_api():
    """The command's defaults are read from the API's settings module, so they cannot drift."""
    from latentkit.projection import settings as defaults

    s = api.ProjectionSettings()
    options = {p.name: p.default for p in cli_project.project.params}
    assert options["space"] == s.space and options["num_steps"] == s.num_steps and options["seed"] == s.seed
    assert options["prior_weight"] == s.prior_weight == api.DEFAULT_PRIOR_WEIGHT
    assert options["perceptual_weights"] == s.perceptual_weights and options["parametrization"] == s.parametrization
    assert options["checkpoint_every"] == defaults.DEFAULT_CHECKPOINT_EVERY
    assert options["batch_size"] == defaults.DEFAULT_BATCH_SIZE
    assert options["latent_noise"] == s.initial_noise_factor == 0.0  # off by default (bench_time_to_quality.py)
    import inspect

    assert inspect.signature(api.project).parameters["checkpoint_every"].default == defaults.DEFAULT_CHECKPOINT_EVERY


def test_project_folder_end_to_end(images, tmp_path):
    out = tmp_path / "out"
    args = [
        "project",
        str(images),
        "--network",
        str(NET),
        "--perceptual-weights",
        "random",
        "--prior",
        "none",
        "--steps",
        "3",
        "--batch-size",
        "2",
        "--outdir",
        str(out),
        "--device",
        "cpu",
    ]
    result = run(args)
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [str(out / n) for n in ("a", "b", "c")]
    assert "random (seed 0; not a perceptual metric)" in result.stderr
    for name in ("a", "b", "c"):
        folder = out / name
        w = load_latents(folder / "projected_w.npz")
        assert w.shape == (1, 8, 64)
        with np.load(folder / "projected_noise.npz", allow_pickle=False) as noise:
            assert noise["b32.conv1"].shape == (1, 1, 32, 32)
        assert Image.open(folder / "proj.png").size == (32, 32)
        assert Image.open(folder / "target.png").size == (32, 32)
        record = json.loads((folder / "losses.json").read_text())
        assert record["perceptual_weights"].startswith("random")
        assert record["settings"]["num_steps"] == 3 and len(record["losses"]) == 3
        assert record["prior"] == "none" and record["network"] == str(NET)
    assert not list(out.glob(".checkpoint-*"))  # removed once outputs are written
    # The saved latents and noise reproduce proj.png.
    from latentkit import load_generator
    from latentkit.io import to_uint8

    G = load_generator(NET)
    with np.load(out / "a" / "projected_noise.npz") as noise:
        img = G.synthesis(
            load_latents(out / "a" / "projected_w.npz"), noise={k: torch.from_numpy(noise[k]) for k in noise}
        )
    np.testing.assert_array_equal(to_uint8(img.clamp(-1, 1))[0], np.asarray(Image.open(out / "a" / "proj.png")))
    again = run(args)
    assert again.exit_code == 0 and "already done" in again.stderr


def test_latent_noise_option_reaches_the_settings_and_the_run(images, tmp_path):
    """``--latent-noise 0.05`` (NVIDIA's) is recorded and changes the optimisation; the default adds none."""
    def project_once(name: str, *extra: str) -> tuple[dict, np.ndarray]:
        out = tmp_path / name
        result = run(["project", str(images / "c.jpg"), "--network", str(NET), "--perceptual-weights", "random",
                      "--prior", "none", "--steps", "3", "--outdir", str(out), "--device", "cpu", *extra])
        assert result.exit_code == 0, result.output
        record = json.loads((out / "c" / "losses.json").read_text())
        return record, load_latents(out / "c" / "projected_w.npz").numpy()

    plain, w_plain = project_once("plain")
    noisy, w_noisy = project_once("noisy", "--latent-noise", "0.05")
    assert plain["settings"]["initial_noise_factor"] == 0.0 and noisy["settings"]["initial_noise_factor"] == 0.05
    assert not np.array_equal(w_plain, w_noisy)


def test_bare_command_announces_defaults(images, tmp_path, monkeypatch):
    """`latentkit project img.png` alone: default network, outdir and prior auto, each announced."""
    import latentkit.load as load
    from latentkit.projection.batch import ESTIMATE_TIMED_STEPS, ESTIMATE_WARMUP_STEPS
    import latentkit.projection.lpips as perceptual

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(load, "default_network", lambda: str(NET))
    real_lpips, real_project = perceptual.lpips_vgg, api.project
    monkeypatch.setattr(perceptual, "lpips_vgg", lambda weights, **kw: real_lpips("random", **kw))

    seen = []

    def short(*args, settings, **kw):  # keep the test fast: 2 steps instead of the default 1000
        seen.append(settings.num_steps)
        if settings.num_steps == ESTIMATE_WARMUP_STEPS + ESTIMATE_TIMED_STEPS:  # the timed probe of the estimate
            return real_project(*args, settings=settings, **kw)
        assert settings.num_steps == 1000 and settings.prior_weight == api.DEFAULT_PRIOR_WEIGHT
        return real_project(*args, settings=dataclasses.replace(settings, num_steps=2), **kw)

    monkeypatch.setattr(api, "project", short)
    result = run(["project", str(images / "c.jpg")])
    assert result.exit_code == 0, result.output
    assert f"using the default {str(NET)!r}" in result.stderr
    assert "out/project" in result.stderr and "prior: the cached Gaussian prior" in result.stderr
    assert "1 image(s) x 1000 steps on cpu" in result.stderr and "s per step" in result.stderr  # the estimate
    assert seen == [ESTIMATE_WARMUP_STEPS + ESTIMATE_TIMED_STEPS, 1000]
    record = json.loads((tmp_path / "out" / "project" / "c" / "losses.json").read_text())
    assert record["prior"].startswith("auto") and record["final_terms"]["prior"] > 0


def test_resume_through_the_cli(images, tmp_path, monkeypatch, caplog):
    """An interrupted run leaves a checkpoint; the rerun resumes from it and matches a clean run."""
    out_a, out_b = tmp_path / "a", tmp_path / "b"
    base = [
        "project",
        str(images / "c.jpg"),
        "--network",
        str(NET),
        "--perceptual-weights",
        "random",
        "--prior",
        "none",
        "--steps",
        "6",
        "--checkpoint-every",
        "2",
        "--device",
        "cpu",
    ]
    assert run(base + ["--outdir", str(out_a)]).exit_code == 0
    real_project = api.project

    def interrupted(*args, **kw):
        def stop(step, ws):
            if step == 4:
                raise KeyboardInterrupt

        return real_project(*args, **dict(kw, callback=stop))

    monkeypatch.setattr(api, "project", interrupted)
    stopped = run(base + ["--outdir", str(out_b)])  # Ctrl-C: a checkpoint at the current step, one line
    assert stopped.exit_code == 130 and "interrupted at step 5 of 6" in stopped.output and "resume" in stopped.output
    assert len(stopped.output.strip().splitlines()[-1:]) == 1 and "Traceback" not in stopped.output
    assert not (out_b / "c" / "losses.json").exists()
    assert len(list(out_b.glob(".checkpoint-*.pt"))) == 1
    monkeypatch.setattr(api, "project", real_project)
    with caplog.at_level("INFO", logger="latentkit.projection.project"):
        assert run(base + ["--outdir", str(out_b)]).exit_code == 0
    assert "resuming from" in caplog.text and "at step 5 of 6" in caplog.text
    assert torch.equal(load_latents(out_a / "c" / "projected_w.npz"), load_latents(out_b / "c" / "projected_w.npz"))


def test_errors_are_one_line(images, tmp_path):
    common = ["--network", str(NET), "--perceptual-weights", "random", "--steps", "1", "--outdir", str(tmp_path / "o")]
    result = CliRunner().invoke(main, ["project", str(images / "a.png"), "--prior", "none", "--class", "2", *common])
    assert result.exit_code == 1 and "unconditional" in result.output
    result = CliRunner().invoke(
        main, ["project", str(images / "a.png"), "--prior", str(tmp_path / "nope.npz"), *common]
    )
    assert result.exit_code == 1 and "nope.npz" in result.output
    result = CliRunner().invoke(
        main,
        [
            "project",
            str(images / "a.png"),
            "--prior",
            "none",
            "--network",
            str(NET),
            "--perceptual-weights",
            "vgg19",
            "--outdir",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 1 and "neither one of" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(main, ["project", str(empty), *common])
    assert result.exit_code == 1 and "holds no images" in result.output


def test_save_video(images, tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    out = tmp_path / "out"
    result = run(
        [
            "project",
            str(images / "c.jpg"),
            "--network",
            str(NET),
            "--perceptual-weights",
            "random",
            "--prior",
            "none",
            "--steps",
            "3",
            "--outdir",
            str(out),
            "--save-video",
            "--device",
            "cpu",
        ]
    )
    assert result.exit_code == 0, result.output
    import imageio

    frames = imageio.mimread(out / "c" / "proj.mp4")
    assert len(frames) == 3 and frames[0].shape[1] == 2 * frames[0].shape[0]  # target | projection


@pytest.mark.parametrize("with_prior", [True, False])
def test_long_run_estimate_suggests_the_shorter_roads(images, monkeypatch, capsys, with_prior):
    """Over two minutes of work, the estimate line names --num-steps, and --prior none where a prior is used."""
    import latentkit.projection.batch as batch
    from latentkit import load_generator

    monkeypatch.setattr(batch, "estimate_step_seconds", lambda *a, **kw: 1.0)
    G = load_generator(NET)
    cli_project._announce_cost(G, [images / "c.jpg"], api.ProjectionSettings(num_steps=200),
                               object() if with_prior else None, None, None, None)
    line = capsys.readouterr().err
    assert "in all (shorter: --num-steps N, e.g. 100, or --device cuda" in line, line
    assert ("--prior none reaches the photo sooner" in line) == with_prior
