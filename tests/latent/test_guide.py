"""Latent guidance: exact at s = 1, linear in s, the documented classes, deterministic, batch-independent."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentkit import guide
from latentkit.errors import InputError, ShapeError
from latentkit.latent.guide import GuidanceResult, guided_latents, marginal_classes
from latentkit.latent.sampling import one_hot

from conftest import REFERENCE_NETS, make_toy_generator, roundoff_tolerance

CONDITIONAL_NETS = ["sg2ada_cond_map2_res32.pkl", "sg3r_cond_res32.pkl", "sgxl_cond_t_res16.pkl"]


@pytest.fixture(scope="module")
def toy10():
    return make_toy_generator(c_dim=10, seed=3)


def _z(n, z_dim, seed=0):
    return torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))


def _manual_marginal(G, z, classes, psi=1.0):
    return torch.stack([G.mapping(z, one_hot([k] * len(z), G.c_dim), truncation_psi=psi) for k in classes]).mean(0)


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("psi", [1.0, 0.7])
def test_scale_one_is_the_unguided_sample_exactly(toy_conditional_generator, n, psi):
    G = toy_conditional_generator
    z = _z(n, G.z_dim)
    labels = one_hot(torch.arange(n) % G.c_dim, G.c_dim)
    ws = guide(G, z, labels, scale=1.0, truncation_psi=psi)
    assert ws.shape == (n, G.num_ws, G.w_dim)
    assert torch.equal(ws, G.mapping(z, labels, truncation_psi=psi))


def test_scale_zero_is_the_marginal_over_all_classes(toy_conditional_generator):
    G = toy_conditional_generator
    z = _z(4, G.z_dim, seed=1)
    res = guided_latents(G, z, 2, scale=0.0)
    assert isinstance(res, GuidanceResult)
    assert res.classes == (0, 1, 2) and res.mapping_calls_per_sample == 4
    torch.testing.assert_close(res.ws, _manual_marginal(G, z, range(3)), rtol=0, atol=1e-6)
    assert torch.equal(res.ws, res.ws_marginal)
    # the marginal really differs from the conditional sample (the test would be vacuous otherwise)
    assert (res.ws_marginal - res.ws_conditional).abs().max() > 1e-2


def test_linear_in_scale(toy10):
    z = _z(3, toy10.z_dim, seed=2)
    base = guided_latents(toy10, z, [1, 5, 9], scale=0.0)
    direction = base.ws_conditional - base.ws_marginal
    for s in (-0.5, 0.5, 1.5, 2.0, 4.0):
        ws = guide(toy10, z, [1, 5, 9], scale=s)
        torch.testing.assert_close(ws, base.ws_marginal + s * direction, rtol=0, atol=1e-5)


def test_explicit_classes_are_exactly_the_ones_used(toy10):
    z = _z(2, toy10.z_dim, seed=4)
    res = guided_latents(toy10, z, 4, scale=0.0, classes=[7, 2, 7, 3])
    assert res.classes == (2, 3, 7) and res.mapping_calls_per_sample == 4
    torch.testing.assert_close(res.ws_marginal, _manual_marginal(toy10, z, [2, 3, 7]), rtol=0, atol=roundoff_tolerance(res.ws_marginal, 64))
    other = _manual_marginal(toy10, z, [2, 3, 8])
    assert (res.ws_marginal - other).abs().max() > 1e-3


def test_random_subset_is_documented_and_deterministic(toy10):
    z = _z(2, toy10.z_dim, seed=5)
    a = guided_latents(toy10, z, 0, scale=2.0, num_classes_sample=4, seed=11)
    b = guided_latents(toy10, z, 0, scale=2.0, num_classes_sample=4, seed=11)
    expected = tuple(sorted(torch.randperm(10, generator=torch.Generator().manual_seed(11))[:4].tolist()))
    assert a.classes == expected == marginal_classes(10, num_classes_sample=4, seed=11)
    assert a.mapping_calls_per_sample == 5
    assert torch.equal(a.ws, b.ws)
    torch.testing.assert_close(a.ws_marginal, _manual_marginal(toy10, z, expected), rtol=0, atol=roundoff_tolerance(a.ws_marginal, 64))
    draws = {marginal_classes(10, num_classes_sample=4, seed=s) for s in range(20)}
    assert len(draws) > 5


def test_batch_size_independent(toy10):
    z = _z(5, toy10.z_dim, seed=6)
    classes = [0, 3, 3, 9, 1]
    together = guide(toy10, z, classes, scale=2.5)
    alone = torch.cat([guide(toy10, z[i : i + 1], classes[i], scale=2.5) for i in range(5)])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-5)


def test_label_forms_agree(toy_conditional_generator):
    G = toy_conditional_generator
    z = _z(2, G.z_dim, seed=7)
    by_int = guide(G, z, 1, scale=2.0)
    by_list = guide(G, z, [1, 1], scale=2.0)
    by_onehot = guide(G, z, one_hot([1, 1], G.c_dim), scale=2.0)
    assert torch.equal(by_int, by_list) and torch.equal(by_int, by_onehot)


def test_errors(toy_generator, toy_conditional_generator):
    G = toy_conditional_generator
    z = _z(2, G.z_dim)
    with pytest.raises(InputError, match="needs a class-conditional generator"):
        guide(toy_generator, _z(2, toy_generator.z_dim), 0, scale=2.0)
    with pytest.raises(InputError, match="either classes or num_classes_sample"):
        guide(G, z, 0, scale=2.0, classes=[0, 1], num_classes_sample=2)
    with pytest.raises(InputError, match=r"must be in \[0, 2\], got \[5\]"):
        guide(G, z, 0, scale=2.0, classes=[0, 5])
    with pytest.raises(InputError, match="is empty"):
        guide(G, z, 0, scale=2.0, classes=[])
    with pytest.raises(InputError, match=r"num_classes_sample must be in \[1, 3\]"):
        guide(G, z, 0, scale=2.0, num_classes_sample=4)
    with pytest.raises(InputError, match="finite"):
        guide(G, z, 0, scale=float("nan"))
    with pytest.raises(InputError, match=r"class must be in \[0, 2\]"):
        guide(G, z, 3, scale=2.0)
    with pytest.raises(InputError, match="got 3 classes"):
        guide(G, z, [0, 1, 2], scale=2.0)
    with pytest.raises(ShapeError, match="c must have shape"):
        guide(G, z, torch.zeros(2, 4), scale=2.0)
    with pytest.raises(ShapeError, match="z must have shape"):
        guide(G, torch.zeros(2, G.z_dim + 1), 0, scale=2.0)


def _load_or_skip(name):
    from latentkit.load import load_generator

    try:
        return load_generator(REFERENCE_NETS / name)
    except ImportError as err:  # the architecture builder has not landed yet
        pytest.skip(f"builder missing: {err}")


@pytest.mark.parametrize("name", CONDITIONAL_NETS)
def test_reference_nets(name):
    G = _load_or_skip(name)
    ref = np.load(REFERENCE_NETS / name.replace(".pkl", ".npz"))
    z, c = torch.from_numpy(ref["z"]), torch.from_numpy(ref["c"])
    for psi, key in ((1.0, "ws_psi1"), (0.7, "ws_psi07")):
        res = guided_latents(G, z, c, scale=1.0, truncation_psi=psi)
        assert torch.equal(res.ws, G.mapping(z, c, truncation_psi=psi))
        tol = 1e-5 * max(1.0, float(np.abs(ref[key]).max()))
        np.testing.assert_allclose(res.ws.numpy(), ref[key], rtol=0, atol=tol)
    base = guided_latents(G, z, c, scale=0.0)
    assert base.classes == tuple(range(G.c_dim)) and base.mapping_calls_per_sample == G.c_dim + 1
    torch.testing.assert_close(base.ws_marginal, _manual_marginal(G, z, range(G.c_dim)), rtol=0, atol=1e-5)
    direction = base.ws_conditional - base.ws_marginal
    for s in (0.5, 2.0, 3.0):
        torch.testing.assert_close(guide(G, z, c, scale=s), base.ws_marginal + s * direction, rtol=0, atol=1e-4)
    # Guidance moves latents towards their class: the distance to the conditional latent of the same z
    # shrinks relative to the marginal as s grows past 1 in the sense that w_g - w_marg = s * direction.
    far = guide(G, z, c, scale=2.0)
    assert ((far - base.ws_marginal).norm() / direction.norm()).item() == pytest.approx(2.0, rel=1e-4)


@pytest.mark.parametrize("name", CONDITIONAL_NETS)
def test_reference_nets_marginal_uses_exactly_the_documented_classes(name):
    G = _load_or_skip(name)
    z = _z(3, G.z_dim, seed=9)
    explicit = guided_latents(G, z, [0, 1, 2], scale=0.0, classes=[3, 1, 3], truncation_psi=0.7)
    assert explicit.classes == (1, 3) and explicit.mapping_calls_per_sample == 3
    torch.testing.assert_close(explicit.ws, _manual_marginal(G, z, [1, 3], psi=0.7), rtol=0, atol=1e-5)
    assert (explicit.ws - _manual_marginal(G, z, [1, 4], psi=0.7)).abs().max() > 1e-4  # not vacuous
    drawn = guided_latents(G, z, 2, scale=1.0, num_classes_sample=3, seed=4)
    assert drawn.classes == marginal_classes(G.c_dim, num_classes_sample=3, seed=4) and len(drawn.classes) == 3
    torch.testing.assert_close(drawn.ws_marginal, _manual_marginal(G, z, drawn.classes), rtol=0, atol=1e-5)
    assert torch.equal(drawn.ws, G.mapping(z, one_hot([2, 2, 2], G.c_dim)))  # s = 1: the subset does not matter
    for s in (-1.0, 0.25, 4.0):  # linear in s, extrapolation included
        expected = drawn.ws_marginal + s * (drawn.ws_conditional - drawn.ws_marginal)
        torch.testing.assert_close(guide(G, z, 2, scale=s, num_classes_sample=3, seed=4), expected, rtol=0, atol=1e-4)
