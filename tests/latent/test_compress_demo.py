"""The compression demo behind ``latentkit compress``: extreme seeds, several tau, rendered columns, files."""

from __future__ import annotations

import pytest
import torch

from conftest import make_toy_generator
from latentkit import io
from latentkit.errors import InputError
from latentkit.latent.compress import compress, truncate
from latentkit.latent.compress_demo import compress_demo, pick_extreme_seeds, seed_latents
from latentkit.latent.prior import GaussianPrior


@pytest.fixture(scope="module")
def setup():
    G = make_toy_generator()
    return G, GaussianPrior.from_generator(G, 3000, progress=False)


def test_picks_the_largest_whitened_coefficients_among_the_pool(setup):
    G, prior = setup
    seeds, peaks = pick_extreme_seeds(G, prior, 3, pool=20, batch_size=7)
    every = prior.coefficients(seed_latents(G, range(20))).abs().flatten(1).amax(1)  # [20]
    assert seeds == every.argsort(descending=True)[:3].tolist()
    torch.testing.assert_close(peaks, every[seeds].float(), rtol=1e-4, atol=1e-4)  # mapping batches: round-off
    with pytest.raises(InputError, match="count <= pool"):
        pick_extreme_seeds(G, prior, 5, pool=4)


@pytest.mark.parametrize("taus", [(3.0,), (1.0, 2.0, 3.0)])
def test_columns_are_the_originals_each_tau_and_the_truncation(setup, taus, tmp_path):
    G, prior = setup
    ws = seed_latents(G, [0, 5])
    demo = compress_demo(G, ws, prior, names=["a", "b"], taus=taus, psi=0.7, progress=False)
    assert demo.images.shape == (2, len(taus) + 2, 3, G.img_resolution, G.img_resolution)
    assert demo.columns[0] == "original" and demo.columns[-1] == "truncated psi=0.7"
    for k, tau in enumerate(taus):
        torch.testing.assert_close(demo.comparisons[k].compressed, compress(ws, prior, tau=tau))
        torch.testing.assert_close(demo.images[:, k + 1], G.synthesis(compress(ws, prior, tau=tau)))
    torch.testing.assert_close(demo.images[:, -1], G.synthesis(truncate(ws, G.w_avg, 0.7)))
    written = demo.save(tmp_path, tile=16)
    torch.testing.assert_close(io.load_latents(written["latents"]), compress(ws, prior, tau=taus[-1]))
    assert (tmp_path / "b_compressed.png").is_file() and (tmp_path / "grid.png").is_file()
    assert all((tmp_path / f"a_compressed_tau{t:g}.png").is_file() for t in taus[:-1])
    assert "W vectors had components beyond tau" in demo.summary()


def test_bad_arguments(setup):
    G, prior = setup
    ws = seed_latents(G, [0])
    with pytest.raises(InputError, match="taus"):
        compress_demo(G, ws, prior, names=["a"], taus=(0.0,))
    with pytest.raises(InputError, match="one name per latent"):
        compress_demo(G, ws, prior, names=["a", "b"])
