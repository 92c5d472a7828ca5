"""``examples/wrap_dcgan.py``: its (random-weight) DCGAN wraps and renders; the whole script is slow."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

import latentkit

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("latentkit_wrap_example", ROOT / "examples" / "wrap_dcgan.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_example_dcgan_wraps(example):
    G = latentkit.wrap(example.DCGAN().eval(), z_dim=example.Z_DIM, img_resolution=example.RESOLUTION)
    img = G(torch.randn(2, example.Z_DIM, generator=torch.Generator().manual_seed(0)))
    assert img.shape == (2, 3, 64, 64) and img.abs().max() <= 1
    assert float((img[0] - img[1]).abs().mean()) > 0.05  # random weights, but not a constant image
    assert "RANDOM" in example.DCGAN.__doc__


@pytest.mark.slow
def test_the_example_runs(example, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["wrap_dcgan.py", "--outdir", str(tmp_path), "--steps", "3"])
    example.main()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert "NOT pretrained" in summary["lpips"]
    assert (tmp_path / "interpolation_z.png").is_file() and (tmp_path / "projection_z.png").is_file()
