"""Shared fixtures: no network, a private cache, single-threaded torch, a toy generator."""

from __future__ import annotations

import math
import os
import socket
from pathlib import Path

import pytest
import torch
from hypothesis import settings

DATA = Path(__file__).parent / "data"
REFERENCE_NETS = DATA / "reference-nets"

torch.set_num_threads(1)

# Property tests draw the same examples on every run and machine (a failure is reproducible, not luck);
# HYPOTHESIS_PROFILE=explore draws new ones each run to search for counter-examples.
settings.register_profile("default", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def invoke_cli(args, *, catch_exceptions: bool = False):
    """Run ``latentkit ARGS`` in this process with Click's CliRunner (each argument passed through ``str``).

    ``catch_exceptions=False`` (the default) lets an unexpected exception fail the test with its traceback;
    errors the CLI reports itself still come back as a result with a non-zero ``exit_code``.
    """
    from click.testing import CliRunner

    from latentkit.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=catch_exceptions)


def reference_arrays(name: str) -> dict:
    """The reference outputs ``tests/data/reference-nets/<name>.npz``, as numpy arrays."""
    import numpy as np

    with np.load(REFERENCE_NETS / f"{name}.npz", allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def assert_matches_reference(ours: torch.Tensor, ref, what: str) -> None:
    """The reference nets' criterion (their README): max |ours - ref| <= 1e-5 * max(1, max |ref|)."""
    import numpy as np

    tol = 1e-5 * max(1.0, float(np.abs(ref).max()))
    assert tuple(ours.shape) == ref.shape, f"{what}: shape {tuple(ours.shape)} != {ref.shape}"
    err = float(np.abs(ours.detach().cpu().numpy() - ref).max())
    assert err <= tol, f"{what}: max abs error {err:.3g} > tolerance {tol:.3g}"


def synthetic_prior(w_dim: int = 6, n: int = 4000, seed: int = 0):
    """A GaussianPrior fitted on ``n`` W vectors whose v is a known, well-conditioned linear mix of Gaussians
    (float64), for tests of code that needs a prior but no generator."""
    from latentkit.latent.prior import GaussianPrior, v_to_w

    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(w_dim, w_dim, generator=g, dtype=torch.float64) + 2 * torch.eye(w_dim, dtype=torch.float64)
    v = torch.randn(n, w_dim, generator=g, dtype=torch.float64) @ mix - 0.2
    return GaussianPrior().fit(v_to_w(v))


def roundoff_tolerance(reference: torch.Tensor, terms: int) -> float:
    """Absolute tolerance for float32 results that may differ only in the order of their sums (CPU kernels,
    e.g. oneDNN's, are chosen by batch shape): Higham's worst-case bound ``terms * eps * scale`` for sums of
    ``terms`` products, with ``scale = max(1, max |reference|)``. Derived from float32, not measured on one CPU."""
    return terms * torch.finfo(torch.float32).eps * max(1.0, float(reference.detach().abs().max()))


@pytest.fixture(autouse=True)
def _offline_and_private_cache(monkeypatch, tmp_path):
    """Block sockets (tests must never download) and point every cache at tmp_path."""

    def guard(*args, **kwargs):
        raise OSError("network access is blocked in latentkit's tests")

    monkeypatch.setattr(socket.socket, "connect", guard)
    monkeypatch.setattr(socket, "create_connection", guard)
    monkeypatch.setenv("LATENTKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))

def make_toy_generator(*, z_dim: int = 8, w_dim: int = 8, num_ws: int = 4, resolution: int = 16,
                       c_dim: int = 0, seed: int = 0):
    """A tiny but honest Generator: an 8-layer lrelu(0.2)*sqrt(2) mapping network and a small
    differentiable synthesis (per-layer affine styles on a learned constant). For tests of code that
    only needs the Generator interface; the real architectures are tested against reference outputs."""
    from latentkit.nets.generator import Generator

    class _Toy(Generator):
        architecture = "toy"

        def __init__(self):
            super().__init__()
            g = torch.Generator().manual_seed(seed)
            self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
            self.img_resolution, self.img_channels = resolution, 3
            dims = [z_dim + (w_dim if c_dim else 0)] + [w_dim] * 8
            self.fc = torch.nn.ParameterList(
                [torch.nn.Parameter(torch.randn(o, i, generator=g) / math.sqrt(i)) for i, o in zip(dims[:-1], dims[1:])]
            )
            self.bias = torch.nn.ParameterList([torch.nn.Parameter(0.1 * torch.randn(o, generator=g)) for o in dims[1:]])
            self.embed = torch.nn.Parameter(torch.randn(w_dim, max(c_dim, 1), generator=g))
            self.styles = torch.nn.Parameter(torch.randn(num_ws, w_dim, 3, generator=g) / math.sqrt(w_dim))
            self.const = torch.nn.Parameter(torch.randn(1, 3, resolution, resolution, generator=g))
            self.register_buffer("w_avg", torch.zeros(w_dim))
            self.register_buffer("noise0", torch.randn(1, 1, resolution, resolution, generator=g))

        def map_latent(self, z, c):
            x = z * (z.square().mean(1, keepdim=True) + 1e-8).rsqrt()
            if self.c_dim:
                e = c @ self.embed.T
                x = torch.cat([x, e * (e.square().mean(1, keepdim=True) + 1e-8).rsqrt()], 1)
            for weight, bias in zip(self.fc, self.bias):
                x = torch.nn.functional.leaky_relu(x @ weight.T + bias, 0.2) * math.sqrt(2)
            return x

        def const_noise(self):
            return {"noise0": self.noise0}

        def synthesis(self, ws, noise_mode="const", noise=None):
            self.check_ws(ws)
            scale = torch.einsum("nlw,lwc->nc", ws, self.styles)  # [N, 3]
            img = self.const * (1 + 0.1 * scale[:, :, None, None]).tanh()
            if noise is not None:
                img = img + 0.1 * noise["noise0"]
            elif noise_mode == "const":
                img = img + 0.1 * self.noise0
            elif noise_mode == "random":
                img = img + 0.1 * torch.randn_like(img[:, :1])
            return img.tanh()

    toy = _Toy().eval().requires_grad_(False)
    with torch.no_grad():
        toy.w_avg.copy_(toy.map_latent(torch.randn(2000, z_dim, generator=torch.Generator().manual_seed(1)),
                                       torch.zeros(2000, c_dim) if not c_dim else
                                       torch.eye(c_dim)[torch.arange(2000) % c_dim]).mean(0))
    return toy

@pytest.fixture
def toy_generator():
    """An unconditional toy Generator (z_dim = w_dim = 8, num_ws = 4, 16x16)."""
    return make_toy_generator()

@pytest.fixture
def toy_conditional_generator():
    """A conditional toy Generator (c_dim = 3)."""
    return make_toy_generator(c_dim=3)


# Peak RSS of a test subprocess, in KiB: VmHWM belongs to the process image, so unlike getrusage's
# ru_maxrss it does not carry over the (large) pytest parent's peak through fork and exec.
PEAK_RSS_KIB = (
    "def peak_rss_kib():\n"
    "    import resource\n"
    "    try:\n"
    "        for line in open('/proc/self/status'):\n"
    "            if line.startswith('VmHWM:'):\n"
    "                return int(line.split()[1])\n"
    "    except OSError:\n"
    "        pass\n"
    "    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
)
