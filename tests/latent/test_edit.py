"""edit: exact coefficient changes in v, identity at 0, layer ranges, sweeps, rendering, labelled grids."""

from __future__ import annotations

import pytest
import torch
from conftest import synthetic_prior
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from latentkit.errors import InputError, ShapeError
from latentkit.latent.boundaries import fit_direction
from latentkit.latent.directions import pca_directions, prior_directions
from latentkit.latent.edit import edit, edit_sweep, parse_amounts, parse_layers, render_edits
from latentkit.grid import save_labelled_grid
from latentkit.latent.prior import GaussianPrior, v_to_w

W_DIM, NUM_WS = 6, 5
EPS = torch.finfo(torch.float64).eps


@pytest.fixture(scope="module")
def prior() -> GaussianPrior:
    return synthetic_prior(W_DIM)


def latents(prior: GaussianPrior, n: int, seed: int) -> torch.Tensor:
    """W+ latents ``[n, NUM_WS, W_DIM]`` float64 with different rows."""
    return torch.stack([prior.sample(n, seed=seed + i, dtype=torch.float64) for i in range(NUM_WS)], 1)


def tolerance(prior: GaussianPrior, ws: torch.Tensor, amount: float) -> float:
    """float64 round-off of the coefficients: ``|v|`` scale over the smallest standard deviation, times terms."""
    scale = max(1.0, float(prior.transform(ws).abs().max()) + abs(amount) * float(prior.explained_variance_[0].sqrt()))
    return 16 * W_DIM * EPS * scale / float(prior.explained_variance_[-1].sqrt())


@settings(max_examples=60, deadline=None)
@given(k=st.integers(0, W_DIM - 1), amount=st.floats(-5, 5, allow_nan=False), n=st.integers(1, 4))
def test_editing_component_k_changes_its_coefficient_by_exactly_a(prior, k, amount, n):
    dirs = prior_directions(prior)
    ws = latents(prior, n, 7)
    out = edit(ws, dirs[k], amount)
    change = prior.coefficients(out) - prior.coefficients(ws)  # [n, NUM_WS, W_DIM]
    expected = torch.zeros_like(change)
    expected[..., k] = amount
    torch.testing.assert_close(change, expected, rtol=0, atol=tolerance(prior, ws, amount))


def test_amount_zero_is_the_identity(prior):
    dirs = prior_directions(prior)
    for space_dirs in (dirs, pca_directions(prior.sample(100, seed=0))):
        ws = latents(prior, 3, 1).float()
        out = edit(ws, space_dirs[0], 0.0)
        assert torch.equal(out, ws) and out is not ws and out.dtype == torch.float32


@pytest.mark.parametrize("layers, touched", [("0-1", [0, 1]), ("1..3", [1, 2]), ("3-", [3, 4]), ("0,4", [0, 4]),
                                             (range(2, 4), [2, 3]), (slice(None, 2), [0, 1]), (2, [2]), ([4, 1], [1, 4])])
def test_layer_ranges_touch_only_those_layers(prior, layers, touched):
    ws = latents(prior, 2, 3)
    out = edit(ws, prior_directions(prior)[1], 2.5, layers=layers)
    changed = [i for i in range(NUM_WS) if not torch.equal(out[:, i], ws[:, i])]
    assert changed == touched
    assert parse_layers(layers, NUM_WS) == touched


def test_w_space_edit_is_a_translation(prior):
    ws = latents(prior, 2, 5)
    dirs = pca_directions(prior.sample(500, seed=2, dtype=torch.float64), n_components=2)
    out = edit(ws, dirs[1], -1.5, layers="0-2")
    expected = ws.clone()
    expected[:, :3] += -1.5 * dirs.sigmas[1] * dirs.vectors[1]
    # A translation up to the rounding of one product and one sum per element (the order of the factors
    # is the implementation's: a few ulps of the largest magnitude, never more).
    scale = float(ws.abs().max()) + 1.5 * float(dirs.sigmas[1] * dirs.vectors[1].abs().max())
    torch.testing.assert_close(out, expected, rtol=0, atol=4 * EPS * scale)
    torch.testing.assert_close(out[:, 3:], ws[:, 3:], rtol=0, atol=0)
    torch.testing.assert_close(dirs[1].project(out) - dirs[1].project(ws),
                               torch.tensor([-1.5, -1.5, -1.5, 0, 0], dtype=torch.float64).expand(2, -1)[..., None],
                               rtol=0, atol=64 * EPS * float(ws.abs().max()) / float(dirs.sigmas[1]))


def test_conditioned_edit_keeps_the_other_coordinate(prior):
    from latentkit.latent.boundaries import condition

    g = torch.Generator().manual_seed(4)
    x = torch.randn(1000, W_DIM, generator=g, dtype=torch.float64)
    labels = x[:, 0] + x[:, 1] > 0
    attr = fit_direction(v_to_w(x), labels)
    pc0 = prior_directions(prior)[0]
    cond = condition(attr, pc0)
    ws = latents(prior, 2, 9)
    out = edit(ws, cond, 3.0)
    torch.testing.assert_close(pc0.project(out), pc0.project(ws), rtol=0, atol=tolerance(prior, ws, 3.0))
    torch.testing.assert_close(cond.project(out) - cond.project(ws), torch.full((2, NUM_WS, 1), 3.0, dtype=torch.float64),
                               rtol=0, atol=tolerance(prior, ws, 3.0))


def test_edit_is_differentiable(prior):
    ws = latents(prior, 1, 0).requires_grad_(True)
    edit(ws, prior_directions(prior)[0], 1.0, layers="0-1").sum().backward()
    assert ws.grad is not None and bool(torch.isfinite(ws.grad).all())


@pytest.mark.parametrize("n", [1, 3])
def test_sweep_is_input_major_amount_minor(prior, n):
    ws = latents(prior, n, 2)
    d = prior_directions(prior)[2]
    amounts = [-3.0, 0.0, 1.5]
    out = edit_sweep(ws, d, amounts, layers="1-3")
    assert out.shape == (n * 3, NUM_WS, W_DIM)
    for i in range(n):
        for j, a in enumerate(amounts):
            assert torch.equal(out[i * 3 + j], edit(ws[i : i + 1], d, a, layers="1-3")[0])


def test_edit_errors(prior):
    dirs = prior_directions(prior)
    ws = latents(prior, 1, 0)
    with pytest.raises(ShapeError, match=r"ws must have shape"):
        edit(ws[0], dirs[0], 1.0)
    with pytest.raises(InputError, match="exactly one"):
        edit(ws, dirs, 1.0)
    with pytest.raises(InputError, match="found in 'v' space"):
        edit(ws, dirs[0], 1.0, space="w")
    with pytest.raises(InputError, match="space must be"):
        edit(ws, dirs[0], 1.0, space="z")
    with pytest.raises(InputError, match="w_dim"):
        edit(torch.zeros(1, NUM_WS, W_DIM + 1), dirs[0], 1.0)
    with pytest.raises(InputError, match=r"outside 0\.\.4"):
        edit(ws, dirs[0], 1.0, layers="3-9")
    with pytest.raises(InputError, match="cannot parse layers"):
        parse_layers("a-b", NUM_WS)
    with pytest.raises(InputError, match="empty"):
        parse_layers(range(0), NUM_WS)
    with pytest.raises(InputError, match="empty"):
        edit_sweep(ws, dirs[0], [])


def test_parse_amounts():
    assert parse_amounts("-3,-1.5,0,1.5,3") == [-3.0, -1.5, 0.0, 1.5, 3.0]
    with pytest.raises(InputError, match="cannot parse amounts"):
        parse_amounts("1,x")
    with pytest.raises(InputError, match="finite"):
        parse_amounts("nan")


def test_render_edits_and_labelled_grid(toy_generator, tmp_path):
    G = toy_generator
    ws = G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(0)))
    prior = GaussianPrior.from_generator(G, 2000, progress=False)
    result = render_edits(G, ws, prior_directions(prior)[0], [-2, 0, 2], layers="0-1", batch_size=4, progress=False)
    assert result.ws.shape == (6, G.num_ws, G.w_dim) and result.images.shape == (6, 3, 16, 16)
    assert result.layers == [0, 1] and result.amounts == [-2.0, 0.0, 2.0]
    torch.testing.assert_close(result.images[1], G.synthesis(ws[:1])[0], rtol=0, atol=0)
    path = save_labelled_grid(tmp_path / "grid.png", result.images, cols=["-2", "0", "+2"],
                              rows=["a", "b"], title="pc0, layers 0-1", tile=32)
    with Image.open(path) as im:
        assert im.width > 3 * 16 and im.height > 2 * 16  # 16 px tiles (never upscaled) plus labels and title
