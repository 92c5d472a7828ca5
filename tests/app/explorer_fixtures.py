"""Fixtures of the explorer's tests: a toy generator, its prior, a projection folder and a ready app."""

from __future__ import annotations

import json

import pytest

from conftest import make_toy_generator


@pytest.fixture(scope="module")
def toy_g():
    return make_toy_generator()


@pytest.fixture(scope="module")
def toy_prior(toy_g):
    from latentkit.latent.prior import GaussianPrior

    return GaussianPrior.from_generator(toy_g, 4000, progress=False)


@pytest.fixture
def projection_folder(tmp_path, toy_g):
    """A folder as ``latentkit project`` writes it: two images and manifest.jsonl."""
    import torch

    from latentkit.io import save_image, save_latents
    from latentkit.latent.sampling import z_from_seed

    out = tmp_path / "proj"
    lines = []
    for k in range(2):
        folder = out / f"img{k}"
        ws = toy_g.mapping(z_from_seed(10 + k, toy_g.z_dim))
        save_latents(folder / "projected_w.npz", ws)
        save_image(folder / "proj.png", toy_g.synthesis(ws).clamp(-1, 1))
        save_image(folder / "target.png", torch.zeros(1, 3, 16, 16))
        lines.append({"input": f"/photos/img{k}.png", "folder": str(folder), "final_loss": 0.5 + k, "lpips": 0.3,
                      "psnr": 20.0 + k, "seconds": 1.0})
    (out / "manifest.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return out


@pytest.fixture
def app_parts(toy_g, toy_prior, projection_folder, tmp_path):
    from latentkit.app.catalog import Catalog
    from latentkit.app.jobs import Projector
    from latentkit.app.state import Explorer
    from latentkit.projection.settings import ProjectionSettings

    catalog = Catalog(toy_g.num_ws, toy_g.w_dim)
    catalog.read(projection_folder)
    explorer = Explorer(toy_g, toy_prior, catalog=catalog, preview=None, n_components=4)
    settings = ProjectionSettings(num_steps=3, perceptual=None, mse_weight=1.0, w_avg_samples=200)  # no VGG: fast
    projector = Projector(toy_g, toy_prior, catalog, tmp_path / "uploads", settings=settings, max_pixels=4_000_000,
                          generator_lock=explorer.generator_lock)
    return explorer, projector


@pytest.fixture
def client(app_parts):
    from starlette.testclient import TestClient

    from latentkit.app.server import create_app

    with TestClient(create_app(*app_parts, max_upload_bytes=2_000_000)) as c:
        yield c
