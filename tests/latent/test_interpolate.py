"""Interpolation in W, v and Z: exact endpoints, v = w where no sign changes, rendering, video."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from latentkit.errors import InputError, ShapeError
from latentkit.latent.interpolate import interpolate, render_interpolation, save_video, slerp
from latentkit.latent.prior import GaussianPrior

SLOPE, GAIN = 0.2, math.sqrt(2)


def _ws(n: int, seed: int, shape=(4, 8)) -> torch.Tensor:
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def prior() -> GaussianPrior:
    return GaussianPrior().fit(_ws(500, 99, shape=(8,)))


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("space", ["w", "v"])
@pytest.mark.parametrize("shape", [(4, 8), (8,)])
def test_endpoints_exact_and_shape(n, space, shape, prior):
    a, b = _ws(n, 0, shape), _ws(n, 1, shape)
    path = interpolate(a, b, 5, space=space, prior=prior)
    assert path.shape == (5, n, *shape)
    assert torch.equal(path[0], a) and torch.equal(path[-1], b)


@pytest.mark.parametrize("n", [1, 4])
def test_z_slerp_endpoints_and_sphere(n):
    a, b = _ws(n, 2, (16,)), _ws(n, 3, (16,))
    path = interpolate(a, b, 7, space="z")
    assert path.shape == (7, n, 16)
    assert torch.equal(path[0], a) and torch.equal(path[-1], b)
    unit = interpolate(a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True), 7, space="z")
    torch.testing.assert_close(unit.norm(dim=-1), torch.ones(7, n))
    # Equal angular steps: the angle between consecutive points is constant.
    cos = (unit[1:] * unit[:-1]).sum(-1)
    torch.testing.assert_close(cos, cos[:1].expand_as(cos), atol=1e-5, rtol=0)


def test_slerp_orthogonal_midpoint_and_parallel_vectors():
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    mid = slerp(a, b, torch.tensor([[0.5]]))
    torch.testing.assert_close(mid, torch.tensor([[1.0, 1.0]]) / math.sqrt(2))
    same = slerp(a, 3 * a, torch.tensor([[0.5]]))  # parallel: falls back to a linear path, no NaN
    torch.testing.assert_close(same, torch.tensor([[2.0, 0.0]]))


def test_w_lerp_is_per_layer_linear():
    a, b = _ws(2, 4), _ws(2, 5)
    path = interpolate(a, b, 3, space="w")
    torch.testing.assert_close(path[1], (a + b) / 2)


def test_v_lerp_equals_w_lerp_without_sign_changes(prior):
    a, b = _ws(3, 6), _ws(3, 7)
    same_sign = (a >= 0) == (b >= 0)
    v_path = interpolate(a, b, 9, space="v", prior=prior)
    w_path = interpolate(a, b, 9, space="w")
    mask = same_sign.expand_as(v_path)
    torch.testing.assert_close(v_path[mask], w_path[mask], atol=1e-6, rtol=1e-6)
    # Where a coordinate crosses zero the v path differs from the W path: its positive part is reached
    # through the v lerp of w/gain and w/(slope*gain).
    crossing = ~same_sign
    assert bool(crossing.any())
    assert float((v_path[4][crossing] - w_path[4][crossing]).abs().max()) > 1e-3


def test_v_lerp_matches_documented_transform(prior):
    a, b = _ws(2, 8), _ws(2, 9)

    def to_v(w):
        return torch.where(w >= 0, w / GAIN, w / (SLOPE * GAIN))

    def to_w(v):
        return torch.where(v >= 0, v * GAIN, v * SLOPE * GAIN)

    t = torch.linspace(0, 1, 6).reshape(-1, 1, 1, 1)
    expected = to_w(torch.lerp(to_v(a)[None], to_v(b)[None], t))
    torch.testing.assert_close(interpolate(a, b, 6, space="v", prior=prior), expected, atol=1e-6, rtol=1e-6)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=2, max_size=2), st.integers(2, 9))
def test_v_path_coordinates_are_monotone(ends, steps):
    # v lerp moves every coordinate monotonically from a to b (the activation is increasing).
    fitted = GaussianPrior().fit(_ws(50, 1, shape=(1,)))
    a, b = torch.tensor([[ends[0]]]), torch.tensor([[ends[1]]])
    path = interpolate(a, b, steps, space="v", prior=fitted)[:, 0, 0]
    diffs = path[1:] - path[:-1]
    assert bool((diffs * (ends[1] - ends[0]) >= -1e-6).all())


def test_errors(prior):
    a = _ws(2, 0)
    with pytest.raises(InputError, match="space must be one of"):
        interpolate(a, a, 4, space="u")
    with pytest.raises(InputError, match="steps must be an integer >= 2"):
        interpolate(a, a, 1)
    with pytest.raises(ShapeError, match="same shape"):
        interpolate(a, a[:1], 4)
    with pytest.raises(InputError, match="pass prior="):
        interpolate(a, a, 4, space="v")
    with pytest.raises(ShapeError, match=r"\[N, z_dim\]"):
        interpolate(a, a, 4, space="z")
    with pytest.raises(ShapeError, match="float tensor"):
        interpolate(np.zeros((2, 8)), a, 4)
    with pytest.raises(ShapeError, match=r"\[N, num_ws, w_dim\] or \[N, w_dim\]"):
        interpolate(torch.zeros(8), torch.zeros(8), 4)
    with pytest.raises(ShapeError, match="prior's w_dim"):
        interpolate(_ws(2, 0, (4, 5)), _ws(2, 1, (4, 5)), 4, space="v", prior=prior)


# --------------------------------------------------------------------------------------------------
# Rendering and video.


def test_render_interpolation(toy_generator):
    G = toy_generator
    ws_a = G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(0)))
    ws_b = G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(1)))
    frames = render_interpolation(G, ws_a, ws_b, 4, batch_size=3)
    assert frames.shape == (4, 2, 3, G.img_resolution, G.img_resolution)
    torch.testing.assert_close(frames[0], G.synthesis(ws_a), atol=0, rtol=0)
    torch.testing.assert_close(frames[-1], G.synthesis(ws_b), atol=0, rtol=0)
    torch.testing.assert_close(render_interpolation(G, ws_a, ws_b, 4, batch_size=8), frames)
    # A W vector [N, w_dim] is broadcast to every layer.
    from_w = render_interpolation(G, ws_a[:, 0], ws_b[:, 0], 4)
    torch.testing.assert_close(from_w, frames)
    z = torch.randn(2, 2, G.z_dim, generator=torch.Generator().manual_seed(0))
    from_z = render_interpolation(G, z[0], z[1], 3, space="z")
    torch.testing.assert_close(from_z[0], G(z[0]), atol=1e-6, rtol=0)


def test_render_z_on_conditional_generator_raises(toy_conditional_generator):
    z = torch.randn(1, 8)
    with pytest.raises(InputError, match="class-conditional"):
        render_interpolation(toy_conditional_generator, z, z, 3, space="z")


def test_save_video_gif(tmp_path):
    iio = pytest.importorskip("imageio.v3")
    frames = torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    path = save_video(tmp_path / "path.gif", frames, fps=10)
    assert iio.imread(path, index=None).shape[:3] == (5, 16, 16)
    assert not list(tmp_path.glob(".*tmp*"))


def test_save_video_mp4(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    frames = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    path = save_video(tmp_path / "path.mp4", frames, fps=6)
    assert path.stat().st_size > 0


def test_save_video_unknown_format(tmp_path):
    pytest.importorskip("imageio.v3")
    with pytest.raises(InputError, match="must end in one of .mp4"):
        save_video(tmp_path / "path.tiff", torch.zeros(2, 3, 8, 8))


# --------------------------------------------------------------------------------------------------
# pair_latents: which latents of two files are interpolated between


def test_pair_latents_keeps_equal_counts_and_broadcasts_one():
    from latentkit.latent.interpolate import pair_latents

    eight, three, one = torch.randn(8, 4, 6), torch.randn(3, 4, 6), torch.randn(1, 4, 6)
    a, b = pair_latents(eight, eight.flip(0))
    assert torch.equal(a, eight) and a.shape == b.shape
    a, b = pair_latents(one, three)
    assert a.shape == b.shape == (3, 4, 6) and torch.equal(a[2], one[0])
    a, b = pair_latents(eight, three, row_a=5, row_b=2)
    assert torch.equal(a, eight[5:6]) and torch.equal(b, three[2:3])
    a, b = pair_latents(torch.randn(2, 1, 9), torch.randn(2, 1, 9), space="z")
    assert a.shape == b.shape == (2, 9)


@pytest.mark.parametrize("kwargs, match", [
    (dict(), "A holds 8 latents and B 3"),
    (dict(row_a=8), "A holds 8 latents"),
    (dict(row_b=3), "B holds 3 latents"),
])
def test_pair_latents_errors(kwargs, match):
    from latentkit.latent.interpolate import pair_latents

    with pytest.raises(InputError, match=match):
        pair_latents(torch.randn(8, 4, 6), torch.randn(3, 4, 6), **kwargs)
