"""``latentkit identity | evaluate | interpolate | ppl | tradeoff`` end to end with CliRunner, offline:
a reference net from tests/data/reference-nets, dlib identity, pixel-space distances, random LPIPS/facenet
weights where the real ones cannot be downloaded (marked as such)."""

from __future__ import annotations

import inspect
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import invoke_cli
from PIL import Image

import latentkit.cli.evaluate as cli_eval
from latentkit import io

DATA = Path(__file__).parents[1] / "data"
NET = str(DATA / "reference-nets" / "sg2ada_uncond_map8_res32.pkl")
ASTRONAUT = DATA / "photos" / "astronaut.jpg"
HOPPER = DATA / "photos" / "grace_hopper.jpg"


run = invoke_cli


@pytest.fixture(scope="module")
def G():
    from latentkit.load import load_generator

    return load_generator(NET)


@pytest.fixture(scope="module")
def prior_file(G, tmp_path_factory):
    from latentkit.latent.prior import GaussianPrior

    path = tmp_path_factory.mktemp("prior") / "prior.npz"
    GaussianPrior.from_generator(G, 3000, progress=False).save(path)
    return path


def test_cli_defaults_match_the_api():
    from latentkit.metrics.ppl import EPSILON, perceptual_path_length
    from latentkit.metrics.quality import FEATURES, METRICS, evaluate
    from latentkit.metrics.tradeoff import TradeoffSettings

    ev = {p.name: p for p in cli_eval.evaluate.params}
    assert ev["metrics"].default == ",".join(METRICS)
    assert list(ev["features"].type.choices) == ["auto"] + [f for f in FEATURES if f != "precomputed"]
    assert ev["nearest_k"].default == inspect.signature(evaluate).parameters["nearest_k"].default
    ppl_params = inspect.signature(perceptual_path_length).parameters
    ppl = {p.name: p.default for p in cli_eval.ppl.params}
    assert ppl["num_samples"] == ppl_params["num_samples"].default
    assert ppl["batch_size"] == ppl_params["batch_size"].default
    assert ppl["epsilon"] == EPSILON == ppl_params["epsilon"].default
    s = TradeoffSettings()
    tradeoff = {p.name: p.default for p in cli_eval.tradeoff.params}
    assert tradeoff["taus"] == ",".join(f"{t:g}" for t in s.taus)
    assert tradeoff["psis"] == ",".join(f"{p:g}" for p in s.psis)
    assert (tradeoff["num_samples"], tradeoff["prior_samples"]) == (s.num_samples, s.prior_samples)


# --------------------------------------------------------------------------------------------------
# identity


def test_identity_two_images_dlib():
    pytest.importorskip("dlib")
    result = run(["identity", ASTRONAUT, HOPPER, "--backend", "dlib"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["backend"] == "dlib" and out["faces_missing"] == 0
    assert 0 < out["similarity"] < 0.93


def test_identity_pairs_dlib(tmp_path):
    pytest.importorskip("dlib")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    for src in (ASTRONAUT, HOPPER):
        shutil.copy(src, a / src.name)
        Image.open(src).transpose(Image.FLIP_LEFT_RIGHT).save(b / src.name)  # same person, mirrored
    Image.new("RGB", (64, 64), (90, 90, 90)).save(a / "lonely.png")  # no partner in b: skipped
    result = run(["identity", "--pairs", a, b, "--backend", "dlib"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [Path(p["a"]).name for p in out["pairs"]] == ["astronaut.jpg", "grace_hopper.jpg"]
    assert all(p["similarity"] > 0.95 for p in out["pairs"])
    assert "1 images of" in result.stderr and "skipped" in result.stderr


def test_identity_missing_face_nan_is_null(tmp_path):
    pytest.importorskip("dlib")
    grey = tmp_path / "grey.png"
    Image.new("RGB", (96, 96), (128, 128, 128)).save(grey)
    failed = run(["identity", ASTRONAUT, grey, "--backend", "dlib"])
    assert failed.exit_code == 1 and "no face found in" in failed.output and "--on-missing nan" in failed.output
    result = run(["identity", ASTRONAUT, grey, "--backend", "dlib", "--on-missing", "nan"])
    assert result.exit_code == 0
    out = json.loads(result.stdout)
    assert out["similarity"] is None and out["faces_missing"] == 1 and out["mean"] is None


def test_identity_usage_errors(tmp_path):
    assert run(["identity"]).exit_code == 2
    both = run(["identity", ASTRONAUT, HOPPER, "--pairs", tmp_path, tmp_path])
    assert both.exit_code == 2 and "not both" in both.output
    empty = run(["identity", "--pairs", tmp_path, tmp_path, "--backend", "dlib"])
    assert empty.exit_code == 2 and "no image of" in empty.output


def test_identity_facenet_offline_and_random_local_weights(tmp_path):
    result = run(["identity", ASTRONAUT, HOPPER, "--backend", "facenet"])
    assert result.exit_code == 1
    assert "Error: facenet weights" in result.output and "--face-weights" in result.output
    auto = run(["identity", ASTRONAUT, HOPPER])  # offline default: dlib, said on stderr, with a verdict
    assert auto.exit_code == 0, auto.output
    assert "identity backend: dlib" in auto.stderr
    verdict = json.loads(auto.stdout)
    assert verdict["backend"] == "dlib" and verdict["threshold"] == 0.6 and verdict["same_person"] is False
    assert verdict["distance"] > 0.6  # two different people, by dlib's published operating point
    from facenet_pytorch import InceptionResnetV1

    weights = tmp_path / "RANDOM-facenet.pt"  # random weights: tests the plumbing only
    torch.save(InceptionResnetV1().state_dict(), weights)
    ok = run(["identity", ASTRONAUT, ASTRONAUT, "--face-weights", weights])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["similarity"] == pytest.approx(1.0, abs=1e-5)


# --------------------------------------------------------------------------------------------------
# evaluate


def _folder(path: Path, n: int, seed: int, size: int = 32) -> Path:
    path.mkdir()
    imgs = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    for i, img in enumerate(imgs):
        io.save_image(path / f"{i:02d}.png", img)
    return path


def test_evaluate_folders_and_network(tmp_path):
    real, fake = _folder(tmp_path / "real", 8, 0), _folder(tmp_path / "fake", 8, 1)
    result = run(["evaluate", "--real", real, "--fake", fake, "--features", "pixels", "--nearest-k", "3"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["features"] == "pixels" and out["nearest_k"] == 3 and "fid" not in out["metrics"]
    assert set(out["metrics"]) == {"fd_pixels", "kd_pixels", "kd_pixels_std", "precision", "recall", "density", "coverage"}
    assert "not comparable" in result.stderr
    same = json.loads(run(["evaluate", "--real", real, "--fake", real, "--features", "pixels", "--metrics", "fid,precision,recall"]).stdout)
    assert abs(same["metrics"]["fd_pixels"]) < 1e-4  # ~0 up to round-off (trace of the covariances ~ 60)
    assert same["metrics"]["precision"] == same["metrics"]["recall"] == 1.0
    net = run(["evaluate", "--real", real, "--network", NET, "-n", "6", "--features", "pixels", "--metrics", "kid,coverage",
                "--nearest-k", "3"])
    assert net.exit_code == 0, net.output
    assert json.loads(net.stdout)["num_fake"] == 6


def test_evaluate_errors(tmp_path):
    real = _folder(tmp_path / "real", 4, 0)
    both = run(["evaluate", "--real", real, "--fake", real, "--network", NET])
    assert both.exit_code == 2 and "either --fake DIR or --network SOURCE" in both.output
    no_n = run(["evaluate", "--real", real, "--network", NET, "--features", "pixels"])
    assert no_n.exit_code == 1 and "num_samples" in no_n.output
    bad_metric = run(["evaluate", "--real", real, "--fake", real, "--features", "pixels", "--metrics", "fid,is"])
    assert bad_metric.exit_code == 1 and "metrics must be" in bad_metric.output
    offline = run(["evaluate", "--real", real, "--fake", real])
    assert offline.exit_code == 1 and "weights-inception-2015-12-05-6726825d.pth" in offline.output


# --------------------------------------------------------------------------------------------------
# interpolate


def test_interpolate_v_grid_and_video(G, prior_file, tmp_path):
    ws = G.mapping(torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(0)))
    io.save_latents(tmp_path / "a.npz", ws[:2])
    io.save_latents(tmp_path / "b.npz", ws[2:])
    args = ["interpolate", tmp_path / "a.npz", tmp_path / "b.npz", "--steps", 4, "--space", "v", "--network", NET,
            "--prior", prior_file, "--out", tmp_path / "grid.png", "--video", tmp_path / "path.gif"]
    result = run(args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"grid": str(tmp_path / "grid.png"), "video": str(tmp_path / "path.gif"),
                                         "steps": 4, "space": "v", "pairs": 2}
    grid = np.asarray(Image.open(tmp_path / "grid.png"))
    # The labelled grid of the rendered path: rows = pairs, columns = t; ends are the given latents exactly.
    from latentkit.grid import labelled_grid
    from latentkit.latent.interpolate import render_interpolation
    from latentkit.latent.prior import GaussianPrior

    frames = render_interpolation(G, ws[:2], ws[2:], 4, space="v", prior=GaussianPrior.load(prior_file))
    expected = labelled_grid(frames.transpose(0, 1).flatten(0, 1), cols=[f"t={k / 3:.2f}" for k in range(4)],
                             rows=["pair 0", "pair 1"], title="interpolation in v")
    np.testing.assert_array_equal(grid, np.asarray(expected))
    first = io.to_uint8(G.synthesis(ws[:1], noise_mode="const"))[0]
    np.testing.assert_array_equal(io.to_uint8(frames[0, 0:1])[0], first)  # row 0 starts at a[0]
    import imageio.v3 as iio

    assert iio.imread(tmp_path / "path.gif", index=None).shape[0] == 4


def test_interpolate_w_and_z(G, tmp_path):
    w = G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(1)))[:, 0]  # [2, w_dim]
    np.save(tmp_path / "a.npy", w[:1].numpy())
    np.save(tmp_path / "b.npy", w[1:].numpy())
    result = run(["interpolate", tmp_path / "a.npy", tmp_path / "b.npy", "--steps", 3, "--network", NET,
                  "--out", tmp_path / "w.png"])
    assert result.exit_code == 0, result.output
    height, width, _ = np.asarray(Image.open(tmp_path / "w.png")).shape  # 1 row x 3 tiles of 32 px, labelled
    assert 3 * 32 < width < 3 * 36 + 100 and 32 < height < 36 + 60
    z = torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(2)).numpy()
    np.savez(tmp_path / "za.npz", z=z[:1])
    np.savez(tmp_path / "zb.npz", z=z[1:])
    zres = run(["interpolate", tmp_path / "za.npz", tmp_path / "zb.npz", "--space", "z", "--steps", 5, "--network", NET,
                "--out", tmp_path / "z.png"])
    assert zres.exit_code == 0, zres.output
    height, width, _ = np.asarray(Image.open(tmp_path / "z.png")).shape  # 1 row x 5 tiles, labelled
    assert 5 * 32 < width < 5 * 36 + 100 and 32 < height < 36 + 60
    wrong_key = run(["interpolate", tmp_path / "za.npz", tmp_path / "zb.npz", "--network", NET, "--out", tmp_path / "x.png"])
    assert wrong_key.exit_code == 1 and "has no array 'w'" in wrong_key.output


def test_interpolate_picks_rows_and_broadcasts_one(G, tmp_path):
    ws = G.mapping(torch.randn(8, G.z_dim, generator=torch.Generator().manual_seed(3)))
    io.save_latents(tmp_path / "eight.npz", ws)
    io.save_latents(tmp_path / "one.npz", ws[:1])
    io.save_latents(tmp_path / "three.npz", ws[:3])
    base = ["interpolate", "--steps", 2, "--network", NET, "--out", tmp_path / "g.png"]
    refused = run([*base[:1], tmp_path / "eight.npz", tmp_path / "three.npz", *base[1:]])
    assert refused.exit_code == 1 and "--row-a K --row-b K" in refused.output
    picked = run([*base[:1], tmp_path / "eight.npz", tmp_path / "three.npz", *base[1:], "--row-a", 5, "--row-b", 2])
    assert picked.exit_code == 0 and json.loads(picked.stdout)["pairs"] == 1
    fan = run([*base[:1], tmp_path / "one.npz", tmp_path / "eight.npz", *base[1:]])
    assert fan.exit_code == 0 and json.loads(fan.stdout)["pairs"] == 8
    out_of_range = run([*base[:1], tmp_path / "one.npz", tmp_path / "eight.npz", *base[1:], "--row-a", 3])
    assert out_of_range.exit_code == 1 and "A holds 1 latents" in out_of_range.output


# --------------------------------------------------------------------------------------------------
# ppl


def test_ppl_random_lpips_is_labelled():
    result = run(["ppl", "--network", NET, "-n", 4, "--perceptual", "random", "--batch-size", 2])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["num_samples"] == 4 and out["space"] == "w" and out["lpips_weights"].endswith("(NOT pretrained)")
    assert out["ppl"] > 0


def test_ppl_does_not_depend_on_batch_size():
    # The acceptance of the any-CPU issue: batch sizes 1, 4, 8 on the same seeds agree within 1e-4 relative
    # (float64 by default; float64 round-off leaves them ~1e-10 apart on any CPU).
    means = []
    for batch in (1, 4, 8):
        result = run(["ppl", "--network", NET, "-n", 8, "--perceptual", "random", "--batch-size", batch,
                      "--sampling", "full"])
        assert result.exit_code == 0, result.output
        out = json.loads(result.stdout)
        assert out["precision"] == "fp64"
        means.append(out["ppl"])
    assert max(means) - min(means) <= 1e-4 * max(means)


def test_ppl_offline_weights_error():
    result = run(["ppl", "--network", NET, "-n", 4, "--perceptual", "torchvision"])
    assert result.exit_code == 1 and "vgg16-397923af.pth" in result.output


# --------------------------------------------------------------------------------------------------
# tradeoff


def test_tradeoff_end_to_end(prior_file, tmp_path):
    pytest.importorskip("dlib")
    real = _folder(tmp_path / "real", 6, 3)
    out_dir = tmp_path / "study"
    result = run(["tradeoff", "--network", NET, "--prior", prior_file, "--taus", "2", "--psis", "0.5,0.8", "-n", 4,
                  "--features", "pixels", "--identity-backend", "dlib", "--real", real, "--out", out_dir])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [(r["method"], r["value"]) for r in out["rows"]] == [("none", 1.0), ("tau", 2.0), ("psi", 0.5), ("psi", 0.8)]
    assert out["reference"].startswith("real images") and out["distance_key"] == "fd_pixels"
    assert out["rows"][0]["identity"] == pytest.approx(1.0, abs=1e-5)
    for name in ("tradeoff.csv", "tradeoff.json", "tradeoff.png"):
        assert (out_dir / name).is_file()
    assert json.loads((out_dir / "tradeoff.json").read_text())["rows"] == out["rows"]


def test_tradeoff_errors(prior_file, tmp_path):
    bad = run(["tradeoff", "--network", NET, "--prior", prior_file, "--taus", "x", "-n", 4, "--out", tmp_path])
    assert bad.exit_code == 1 and "--taus must be comma-separated numbers" in bad.output
    neg = run(["tradeoff", "--network", NET, "--prior", prior_file, "--psis", "2", "-n", 4, "--out", tmp_path])
    assert neg.exit_code == 1 and "psis must be in [0, 1]" in neg.output
