"""Every conditional CLI path on the conditional reference nets: generate --class/--guidance,
fit-prior --class, compress --class, project --class / --classes, and their error paths."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from conftest import REFERENCE_NETS, invoke_cli
from PIL import Image

from latentkit.latent.prior_cache import cached_prior
from latentkit import load_generator
from latentkit.latent.compress import compress
from latentkit.latent.guide import guide
from latentkit.io import load_latents, to_uint8
from latentkit.latent.prior import GaussianPrior
from latentkit.latent.sampling import one_hot, z_from_seed

CONDITIONAL = {  # name -> c_dim
    "sg2ada_cond_map2_res32.pkl": 10,
    "sg3r_cond_res32.pkl": 5,
    "sgxl_cond_t_res16.pkl": 10,
}
UNCOND = str(REFERENCE_NETS / "sg2ada_uncond_map8_res32.pkl")
SG2C = str(REFERENCE_NETS / "sg2ada_cond_map2_res32.pkl")


def run(*args):
    return invoke_cli(args, catch_exceptions=True)


def _png(path):
    return np.asarray(Image.open(path))


@pytest.fixture(scope="module", params=sorted(CONDITIONAL))
def net(request):
    path = REFERENCE_NETS / request.param
    return str(path), load_generator(path)


# ------------------------------------------------------------------------------------------------
# generate


def test_generate_class_and_guidance(net, tmp_path):
    path, G = net
    plain, g1, g2 = (tmp_path / d for d in ("plain", "g1", "g2"))
    for folder, extra in ((plain, []), (g1, ["--guidance", "1"]), (g2, ["--guidance", "2.5"])):
        result = run("generate", path, "--seeds", "3", "--class", "1", "--outdir", folder, *extra)
        assert result.exit_code == 0, result.output
    assert f"{G.c_dim + 1} mapping calls per image" in result.stderr
    np.testing.assert_array_equal(_png(plain / "seed0003.png"), _png(g1 / "seed0003.png"))
    z, c = z_from_seed(3, G.z_dim), one_hot([1], G.c_dim)
    with torch.no_grad():
        expected = G.synthesis(guide(G, z, c, scale=2.5), noise_mode="const")
        unguided = G(z, c, noise_mode="const")
    np.testing.assert_array_equal(_png(g2 / "seed0003.png"), to_uint8(expected)[0])
    np.testing.assert_array_equal(_png(plain / "seed0003.png"), to_uint8(unguided)[0])


@pytest.mark.parametrize(
    "source, args, match",
    [
        (UNCOND, ["--class", "1"], "unconditional"),
        (UNCOND, ["--guidance", "2"], "unconditional|conditional"),
        (SG2C, ["--class", "10"], r"\[0, 9\]"),
    ],
)
def test_generate_errors(source, args, match, tmp_path):
    result = run("generate", source, "--seeds", "0", "--outdir", tmp_path / "o", *args)
    assert result.exit_code != 0
    assert re.search(match, result.output), result.output


# ------------------------------------------------------------------------------------------------
# fit-prior and compress


def test_fit_prior_per_class(net, tmp_path):
    path, G = net
    out = tmp_path / "p.npz"
    result = run("fit-prior", path, "--samples", "300", "--batch-size", "128", "--class", "1", "--class", "3",
                 "--out", out)
    assert result.exit_code == 0, result.output
    prior = GaussianPrior.load(out)
    assert prior.generator_["classes"] == [1, 3]
    ref = GaussianPrior.from_generator(G, 300, batch_size=128, classes=[1, 3], progress=False)
    torch.testing.assert_close(prior.covariance_, ref.covariance_, rtol=1e-6, atol=1e-8)


def test_fit_prior_class_out_of_range(tmp_path):
    result = run("fit-prior", SG2C, "--samples", "50", "--class", "10", "--out", tmp_path / "x.npz")
    assert result.exit_code == 1 and r"[0, 9]" in result.output
    assert not (tmp_path / "x.npz").exists()


def test_compress_class(net, tmp_path):
    path, G = net
    out = tmp_path / "o"
    result = run("compress", "--network", path, "--seeds", "2,5", "--class", "3", "--samples", "400", "--outdir", out)
    assert result.exit_code == 0, result.output
    prior = cached_prior(G, n_samples=400, classes=[3], progress=False)
    assert prior.generator_["classes"] == [3]
    z = torch.cat([z_from_seed(s, G.z_dim) for s in (2, 5)])
    with torch.no_grad():
        ws = G.mapping(z, one_hot([3, 3], G.c_dim))
    torch.testing.assert_close(load_latents(out / "compressed_w.npz"), compress(ws, prior), rtol=1e-5, atol=1e-6)
    height, width, _ = _png(out / "grid.png").shape  # 2 rows x 3 columns of tiles, with labels
    assert 3 * G.img_resolution < width < 3 * (G.img_resolution + 4) + 300
    assert 2 * G.img_resolution < height < 2 * (G.img_resolution + 4) + 40


@pytest.mark.parametrize(
    "source, args, match",
    [
        (SG2C, ["--seeds", "0"], "--class K"),
        (SG2C, ["--seeds", "0", "--class", "10"], r"\[0, 9\]"),
        (UNCOND, ["--seeds", "0", "--class", "1"], "unconditional"),
    ],
)
def test_compress_errors(source, args, match, tmp_path):
    result = run("compress", "--network", source, "--samples", "100", "--outdir", tmp_path / "o", *args)
    assert result.exit_code == 1, result.output
    assert re.search(match, result.output), result.output


# ------------------------------------------------------------------------------------------------
# project


@pytest.fixture
def image(tmp_path):
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[8:24, 8:24] = (200, 60, 30)
    Image.fromarray(rgb).save(tmp_path / "t.png")
    return tmp_path / "t.png"


def _project(source, image, out, *args):
    return run("project", image, "--network", source, "--perceptual-weights", "random", "--prior", "none",
               "--steps", "2", "--outdir", out, "--device", "cpu", *args)


def test_project_given_class(net, image, tmp_path):
    path, G = net
    out = tmp_path / "out"
    result = _project(path, image, out, "--class", "2")
    assert result.exit_code == 0, result.output
    record = json.loads((out / "t" / "losses.json").read_text())
    assert record["class"] == 2 and record["class_search"] is None and "class_losses" not in record
    with np.load(out / "t" / "projected_w.npz") as npz:
        assert npz["w"].shape == (1, G.num_ws, G.w_dim)
        np.testing.assert_array_equal(npz["c"], np.eye(G.c_dim, dtype=np.float32)[[2]])


def test_project_class_search(net, image, tmp_path):
    path, G = net
    out = tmp_path / "out"
    result = _project(path, image, out, "--classes", "0,1")
    assert result.exit_code == 0, result.output
    assert "class search over 0,1" in result.stderr
    record = json.loads((out / "t" / "losses.json").read_text())
    losses = record["class_losses"]
    assert sorted(losses) == ["0", "1"]
    assert record["class"] == int(min(losses, key=losses.get))
    assert record["final_loss"] == pytest.approx(losses[str(record["class"])], rel=1e-5)
    with np.load(out / "t" / "projected_w.npz") as npz:
        c = npz["c"]
        assert c.shape == (1, G.c_dim) and c[0, record["class"]] == 1 and c.sum() == 1
        ws = torch.from_numpy(npz["w"])
    with np.load(out / "t" / "projected_noise.npz") as npz:
        noise = {k: torch.from_numpy(npz[k]) for k in npz.files}
    with torch.no_grad():  # the saved latents (+ noise) re-render the saved projection
        img = G.synthesis(ws, noise_mode="const", noise=noise or None).clamp(-1, 1)
    diff = np.abs(to_uint8(img)[0].astype(int) - _png(out / "t" / "proj.png").astype(int))
    assert diff.max() <= 1


def test_project_classes_all(image, tmp_path):
    out = tmp_path / "out"
    result = _project(str(REFERENCE_NETS / "sg3r_cond_res32.pkl"), image, out, "--classes", "all")
    assert result.exit_code == 0, result.output
    record = json.loads((out / "t" / "losses.json").read_text())
    assert sorted(record["class_losses"]) == ["0", "1", "2", "3", "4"] and record["class_search"] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    "source, args, match",
    [
        (UNCOND, ["--class", "1"], r"--class needs a class-conditional network.*c_dim=0"),
        (UNCOND, ["--classes", "0,1"], r"--classes needs a class-conditional network"),
        (SG2C, ["--class", "10"], r"--class must be in \[0, 9\].*got 10"),
        (SG2C, ["--classes", "0,12"], r"--classes must lie in \[0, 9\].*got \[12\]"),
        (SG2C, ["--class", "1", "--classes", "0,1"], "either --class K .* or --classes"),
        (SG2C, ["--classes", "a,b"], "expected 'all' or class indices"),
        (SG2C, [], r"class-conditional \(c_dim=10\): pass --class K, or --classes"),
    ],
)
def test_project_class_errors(source, args, match, image, tmp_path):
    out = tmp_path / "out"
    result = _project(source, image, out, *args)
    assert result.exit_code in (1, 2), result.output
    assert re.search(match, " ".join(result.output.split())), result.output
    assert not (out / "t").exists()
