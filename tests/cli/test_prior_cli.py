"""``latentkit fit-prior`` and ``latentkit compress`` with CliRunner (toy generators and a reference net)."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import invoke_cli

import latentkit.cli.prior as cli_prior
import latentkit.load
from latentkit.latent.prior_cache import cached_prior
from latentkit import io
from latentkit.cli import main
from latentkit.latent.compress import DEFAULT_PSI, DEFAULT_TAU, compress
from latentkit.latent.prior import DEFAULT_CACHED_SAMPLES, GaussianPrior
from latentkit.latent.sampling import z_from_seed

REFERENCE = Path(__file__).parents[1] / "data" / "reference-nets"


run = invoke_cli


@pytest.fixture
def use_generator(monkeypatch):
    """Make the commands load the given generator whatever the source."""

    def install(G):
        loaded = []

        def fake(network, device=None):
            loaded.append(network)
            return G

        monkeypatch.setattr(latentkit.load, "load_generator", fake)
        return loaded

    return install


def test_cli_defaults_match_the_api():
    from latentkit.grid import DEFAULT_TILE
    from latentkit.latent.diagnostics import diagnose_generator

    params = inspect.signature(GaussianPrior.from_generator).parameters
    fit = {p.name: p.default for p in cli_prior.fit_prior.params}
    compress_ = {p.name: p.default for p in cli_prior.compress.params}
    assert fit["n_samples"] == params["n_samples"].default
    assert fit["batch_size"] == params["batch_size"].default
    assert compress_["n_samples"] == DEFAULT_CACHED_SAMPLES
    from latentkit.latent.compress_demo import DEFAULT_DEMO_TAUS, DEFAULT_POOL

    assert compress_["compare_psi"] == DEFAULT_PSI
    assert tuple(cli_prior._parse_taus(compress_["tau_text"])) == DEFAULT_DEMO_TAUS and DEFAULT_DEMO_TAUS[-1] == DEFAULT_TAU
    assert compress_["pool"] == DEFAULT_POOL
    assert fit["holdout"] == inspect.signature(diagnose_generator).parameters["n_samples"].default
    assert compress_["tile"] == DEFAULT_TILE


# ------------------------------------------------------------------------------------------------
# fit-prior.


def test_fit_prior_writes_prior_and_plot(toy_generator, use_generator, tmp_path):
    use_generator(toy_generator)
    out, plot = tmp_path / "p.npz", tmp_path / "diag.png"
    result = run(["fit-prior", "toy", "--samples", "1500", "--batch-size", "400", "--out", str(out),
                  "--plot", str(plot), "--holdout", "300"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["prior"] == str(out) and summary["n_samples"] == 1500
    assert summary["diagnostics"]["n_samples"] == 300 and 0 <= summary["diagnostics"]["ks_statistic"] <= 1
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ref = GaussianPrior.from_generator(toy_generator, 1500, progress=False)
    torch.testing.assert_close(GaussianPrior.load(out).covariance_, ref.covariance_, rtol=1e-6, atol=1e-8)


def test_fit_prior_per_class(toy_conditional_generator, use_generator, tmp_path):
    use_generator(toy_conditional_generator)
    result = run(["fit-prior", "toy", "--samples", "500", "--class", "2", "--out", str(tmp_path / "c2.npz")])
    assert result.exit_code == 0, result.output
    assert GaussianPrior.load(tmp_path / "c2.npz").generator_["classes"] == [2]


def test_fit_prior_bad_class_is_one_line_error(toy_conditional_generator, use_generator, tmp_path):
    use_generator(toy_conditional_generator)
    result = CliRunner().invoke(main, ["fit-prior", "toy", "--samples", "50", "--class", "7",
                                       "--out", str(tmp_path / "x.npz")])
    assert result.exit_code == 1 and "classes= must lie in [0, 2]" in result.output
    assert not (tmp_path / "x.npz").exists()


# ------------------------------------------------------------------------------------------------
# compress.


def test_compress_seeds_end_to_end(toy_generator, use_generator, tmp_path):
    use_generator(toy_generator)
    outdir = tmp_path / "out"
    result = run(["compress", "--tau", "1.5", "--network", "toy", "--seeds", "0-2", "--samples", "800",
                  "--outdir", str(outdir), "--compare-psi", "0.5"])
    assert result.exit_code == 0, result.output
    ws = toy_generator.mapping(torch.cat([z_from_seed(s, toy_generator.z_dim) for s in range(3)]))
    prior = cached_prior(toy_generator, n_samples=800, progress=False)  # the file the command wrote
    saved = io.load_latents(outdir / "compressed_w.npz")
    torch.testing.assert_close(saved, compress(ws, prior, tau=1.5))
    assert saved.shape == (3, toy_generator.num_ws, toy_generator.w_dim)
    for name in ("seed0000", "seed0001", "seed0002"):
        for kind in ("original", "compressed", "truncated"):
            assert (outdir / f"{name}_{kind}.png").is_file()
    truncated_img = toy_generator.synthesis(toy_generator.mapping(z_from_seed(1, 8), truncation_psi=0.5))
    assert np.array_equal(np.asarray(io.to_uint8(truncated_img)[0]),
                          io.to_uint8(io.load_image(outdir / "seed0001_truncated.png"))[0])
    from PIL import Image

    width, height = Image.open(outdir / "grid.png").size  # 3 x 3 tiles of 16 px, with labels beside and above
    assert 3 * 16 < width < 3 * 20 + 300 and 3 * 16 < height < 3 * 20 + 40
    assert json.loads(result.stdout)["images"] == 9


def test_compress_latents_with_prior_file(toy_generator, use_generator, tmp_path):
    use_generator(toy_generator)
    prior = GaussianPrior.from_generator(toy_generator, 1000, progress=False)
    prior.save(tmp_path / "prior.npz")
    w = toy_generator.map_latent(torch.randn(2, 8) * 3, torch.zeros(2, 0))  # [2, w_dim]: broadcast to W+
    np.savez(tmp_path / "mine.npz", w=w.numpy())
    io.save_latents(tmp_path / "plus.npz", w[:1, None].expand(-1, 4, -1))
    result = run(["compress", "--network", "toy", "--prior", str(tmp_path / "prior.npz"),
                  "--latents", str(tmp_path / "mine.npz"), "--latents", str(tmp_path / "plus.npz"),
                  "--outdir", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    saved = io.load_latents(tmp_path / "o" / "compressed_w.npz")
    expected = compress(torch.cat([w, w[:1]])[:, None].expand(-1, 4, -1), prior, tau=DEFAULT_TAU)
    torch.testing.assert_close(saved, expected)
    assert (tmp_path / "o" / "mine-01_compressed.png").is_file() and (tmp_path / "o" / "plus-00_truncated.png").is_file()
    assert not list((tmp_path / "cache").glob("priors/*.npz"))  # --prior given: nothing fitted


def test_compress_with_nothing_but_tau_uses_announced_defaults(toy_generator, monkeypatch, tmp_path):
    import latentkit.load

    monkeypatch.setattr(latentkit.load, "default_network", lambda: "toy-default")
    monkeypatch.setattr(latentkit.load, "load_generator", lambda source, device=None: toy_generator)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["compress", "--tau", "3", "--samples", "500"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    for announced in ("'toy-default'", "the 8 of the first 64 seeds with the largest whitened coefficients",
                      "out/compress"):
        assert announced in result.stderr
    assert io.load_latents(tmp_path / "out" / "compress" / "compressed_w.npz").shape[0] == 8
    summary = json.loads(result.stdout)  # the most extreme of 64 seeds, most extreme first
    assert summary["max_coefficient"] == sorted(summary["max_coefficient"], reverse=True) and summary["taus"] == [3.0]
    assert "W vectors had components beyond tau" in result.stderr


def test_compress_conditional_class(toy_conditional_generator, use_generator, tmp_path):
    G = toy_conditional_generator
    use_generator(G)
    result = run(["compress", "--network", "toy", "--seeds", "4", "--class", "1", "--samples", "600",
                  "--outdir", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    per_class = cached_prior(G, n_samples=600, classes=[1], progress=False)
    ws = G.mapping(z_from_seed(4, G.z_dim), torch.eye(3)[[1]])
    torch.testing.assert_close(io.load_latents(tmp_path / "o" / "compressed_w.npz"), compress(ws, per_class))


@pytest.mark.parametrize("args, match", [
    (["--seeds", "0"], "--class K"),  # conditional net, no class
    (["--seeds", "0", "--class", "5"], r"class must be in \[0, 2\]"),
    (["--seeds", "0-x", "--class", "0"], "cannot parse seeds"),
    (["--seeds", "0", "--class", "0", "--prior", "missing.npz"], "prior file not found"),
])
def test_compress_errors_conditional(toy_conditional_generator, use_generator, tmp_path, args, match):
    use_generator(toy_conditional_generator)
    result = CliRunner().invoke(main, ["compress", "--samples", "100", "--outdir", str(tmp_path / "o"), *args])
    assert result.exit_code == 1, result.output
    assert re.search(match, result.stderr)
    assert len(result.stderr.strip().splitlines()) <= 2  # one-line error (plus possibly an announcement)


def test_compress_errors_unconditional(toy_generator, use_generator, tmp_path):
    use_generator(toy_generator)
    other = GaussianPrior().fit(torch.randn(50, 5))
    other.save(tmp_path / "p5.npz")
    result = CliRunner().invoke(main, ["compress", "--seeds", "0", "--prior", str(tmp_path / "p5.npz")])
    assert result.exit_code == 1 and "w_dim 5, the network has 8" in result.stderr
    result = CliRunner().invoke(main, ["compress", "--seeds", "0", "--class", "1"])
    assert result.exit_code == 1 and "unconditional" in result.stderr
    io.save_latents(tmp_path / "bad.npz", torch.zeros(1, 3, 8))
    result = CliRunner().invoke(main, ["compress", "--latents", str(tmp_path / "bad.npz"), "--samples", "50"])
    assert result.exit_code == 1 and "ws must have shape" in result.stderr
    result = CliRunner().invoke(main, ["compress", "--seeds", "0", "--latents", str(tmp_path / "bad.npz")])
    assert result.exit_code == 2 and "either --seeds or --latents" in result.stderr
    result = CliRunner().invoke(main, ["compress", "--tau", "0"])  # rejected before anything loads
    assert result.exit_code == 2 and "--tau" in result.stderr


# ------------------------------------------------------------------------------------------------
# A real (tiny) NVIDIA checkpoint through the real loader.


def test_end_to_end_on_reference_net(tmp_path):
    pytest.importorskip("latentkit.load")
    pkl = REFERENCE / "sg2ada_uncond_map8_res32.pkl"
    result = run(["fit-prior", str(pkl), "--samples", "3000", "--out", str(tmp_path / "prior.npz"),
                  "--device", "cpu"])
    assert result.exit_code == 0, result.output
    prior = GaussianPrior.load(tmp_path / "prior.npz")
    assert prior.w_dim == 64 and prior.generator_["sha256"] and prior.generator_["architecture"] == "stylegan2"
    result = run(["compress", "--network", str(pkl), "--prior", str(tmp_path / "prior.npz"), "--seeds", "0-1",
                  "--outdir", str(tmp_path / "o"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    saved = io.load_latents(tmp_path / "o" / "compressed_w.npz")
    assert saved.shape == (2, 8, 64) and torch.isfinite(saved).all()
    assert (tmp_path / "o" / "grid.png").is_file()
